"""Where a page's first view spends the browser's time (not part of the test suite).

    KDVIZ_DATA=... .venv/bin/python benchmarks/browser_trace.py temperature            # long main-thread tasks
    KDVIZ_DATA=... .venv/bin/python benchmarks/browser_trace.py relations --charts     # and each chart's draw

A fresh server is started the README's way and left to finish its start-up warm-up (as the *warmed
up* column of ``app_speed.py``); then chromium opens the page in a fresh profile with its tracing on,
until the first chart is on screen and a second after. Printed: the renderer's main-thread tasks over
25 ms, on the page's clock (ms since navigation), each with its largest parts (a module evaluated,
React's work, Plotly's drawing in microtasks, layout), and how busy that thread was in all. With
``--charts``, once the page has settled, every Plotly chart on it is drawn again into a new element
of the same width, five times, and the times are printed: what each chart costs the browser once
Plotly is loaded, and, for a Scattergl trace, the same data drawn as plain SVG.

With ``--first-draw N`` (a page without a chart in its first view: ``train``): what app/preload.py's
off-screen warm-up saves. N times each way, alternately, in a fresh browser profile, the page opened
and let settle, with its warm-up run or kept from running (the browser's idle callbacks hidden from
the page); then one 3-trace figure on a log axis drawn in it, timed: Plotly's first chart in that page.

With ``--live`` (the ``train`` page): a live run of the classroom preset instead of a first visit: the
page opened, the demo's settings loaded, then traced from the click on Start until the browser shows
"finished": the renderer's main-thread tasks on the click's clock, and the run's seconds of training.
With ``--live-cpu N``: N such runs untraced, chromium's CPU seconds over the same span, by process kind.

Server and browser run on the same cores, as in ``app_speed.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from app_speed import FIRST_CHART_JS, Fresh, page_paths, warmed_up

from load_test import CHROMIUM, CHROMIUM_ARGS, cpu_seconds, descendants

CATEGORIES = ["devtools.timeline", "v8.execute", "disabled-by-default-devtools.timeline", "loading"]
# every chart redrawn five times into a new element of its width; a Scattergl chart also as SVG
CHART_COSTS_JS = """async () => {
  const out = [];
  for (const [chart, p] of [...document.querySelectorAll('.js-plotly-plot')].entries()) {
    const variants = {drawn: p.data};
    if (p.data.some(t => t.type === 'scattergl')) variants.svg = p.data.map(t => t.type === 'scattergl' ? {...t, type: 'scatter'} : t);
    for (const [kind, data] of Object.entries(variants)) {
      const d = document.createElement('div'); d.style.width = p.clientWidth + 'px'; document.body.appendChild(d);
      const ms = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now(); await window.Plotly.newPlot(d, data, p.layout); ms.push(performance.now() - t);
        window.Plotly.purge(d);
      }
      d.remove();
      out.push({chart, kind, traces: data.map(t => t.type), ms: ms.map(Math.round)});
    }
  }
  return out; }"""

# one figure like the Train page's live curves (three lines of 235 steps on a log axis), drawn once
FIRST_DRAW_JS = """async () => { const xs = [...Array(235).keys()];
  const data = [0, 1, 2].map(i => ({type: 'scatter', mode: 'lines', x: xs, y: xs.map(x => Math.exp(-x / 50) + 0.01 * i + 0.1)}));
  const d = document.createElement('div'); document.body.appendChild(d);
  const t = performance.now(); await window.Plotly.newPlot(d, data, {yaxis: {type: 'log'}, width: 1000, height: 380});
  const ms = performance.now() - t; window.Plotly.purge(d); d.remove(); return ms; }"""


def first_draws(browser, url: str, times: int, timeout: float) -> dict[str, list[float]]:
    """Plotly's first chart in the page at ``url`` (one without a chart of its own), ms: after the
    page's off-screen warm-up, and with the warm-up kept from running (the browser's idle callbacks
    hidden from the page), ``times`` each, alternately."""
    out: dict[str, list[float]] = {"after the warm-up": [], "without": []}
    for i in range(times):
        for kind in (list(out) if i % 2 == 0 else list(out)[::-1]):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            if kind == "without":  # the warm-up waits for an idle callback: without one it never runs
                page.add_init_script("window.requestIdleCallback = undefined;")
            page.goto(url, timeout=timeout * 1000)
            page.wait_for_function("() => window.Plotly && window.Plotly.newPlot", timeout=timeout * 1000)
            if kind != "without":
                page.wait_for_function("() => document.documentElement.dataset.plotlyWarm === 'done'",
                                       timeout=timeout * 1000)
            page.wait_for_timeout(1500)  # the page settles
            out[kind].append(page.evaluate(FIRST_DRAW_JS))
            context.close()
    return out


def demo_page(browser, fresh, timeout: float):
    """The Train page with the preset's settings loaded, Plotly loaded and warmed up: ready for Start."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{fresh.server.url}/train", timeout=timeout * 1000)
    page.get_by_role("button", name="Load the 5-minute demo settings").click(timeout=timeout * 1000)
    page.wait_for_timeout(4000)  # the rerun with the demo's settings, Plotly loaded and warmed up
    return page


def start_and_finish(page, tmp: Path, timeout: float) -> dict:
    """Press Start, wait until the page shows "finished"; the run's record."""
    page.get_by_role("button", name="Start").click(timeout=timeout * 1000)
    page.get_by_text(re.compile(r"finished: test accuracy")).wait_for(timeout=300_000)
    records = [json.loads(p.read_text()) for p in (tmp / "trace" / "runs").glob("*/record.json")]  # Fresh's folder
    return max(records, key=lambda r: r["created"])


def chromium_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's chromium processes, by kind (browser, renderer, gpu-process,
    utility, ...; a process that has ended is no longer counted)."""
    out: dict[str, float] = {}
    for pid in descendants(os.getpid()):
        try:
            if "chrom" not in Path(f"/proc/{pid}/comm").read_text():
                continue
            args = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").split()
        except OSError:
            continue
        kind = next((a.split("=", 1)[1] for a in args if a.startswith("--type=")), "browser")
        out[kind] = out.get(kind, 0.0) + cpu_seconds([pid])
    return out


def live_cpu(browser, fresh, tmp: Path, runs: int, timeout: float) -> int:
    """The preset live on the Train page ``runs`` times: chromium's CPU from the click on Start until
    the page shows "finished", by process kind, and each run's seconds of training."""
    totals = []
    for i in range(runs):
        page = demo_page(browser, fresh, timeout)
        before = chromium_cpu()
        record = start_and_finish(page, tmp, timeout)
        used = {k: v - before.get(k, 0.0) for k, v in chromium_cpu().items()}
        totals.append(sum(used.values()))
        print(f"live run {i}: {record['train_time_s']:.2f} s of training; chromium CPU {totals[-1]:.2f} s ("
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(used.items(), key=lambda x: -x[1]) if v >= 0.005) + ")")
        page.context.close()
    print(f"chromium CPU per live run, Start to finished: median {statistics.median(totals):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in totals)})")
    return 0


def live_run(browser, fresh, tmp: Path, timeout: float) -> int:
    """Trace the preset's live run on the Train page from the click on Start to "finished"."""
    page = demo_page(browser, fresh, timeout)
    browser.start_tracing(page=page, path=str(tmp / "live.json"), categories=CATEGORIES)
    record = start_and_finish(page, tmp, timeout)
    browser.stop_tracing()
    tasks, busy = main_thread_tasks(json.loads((tmp / "live.json").read_text()), 15.0)
    print(f"live run of the preset: {record['train_time_s']:.2f} s of training; renderer main thread busy "
          f"{busy:.0f} ms from the click on Start until \"finished\" (the trace's clock starts near the click)")
    for t in tasks:
        print(f"  at {t['at_ms']:6d} ms  {t['ms']:5d} ms  " + " | ".join(t["parts"]))
    return 0


def main_thread_tasks(trace: dict, longer_than_ms: float = 25.0) -> tuple[list[dict], float]:
    """The busiest renderer main thread's tasks over ``longer_than_ms``: start (ms since navigation),
    duration and largest parts; and that thread's busy time in all (ms)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    complete = [e for e in events if e.get("ph") == "X"]
    tasks_of = {k: [e for e in complete if (e["pid"], e["tid"]) == k and e["name"] == "RunTask"]
                for k, name in names.items() if name == "CrRendererMain"}
    key = max(tasks_of, key=lambda k: sum(e["dur"] for e in tasks_of[k]))
    starts = [e["ts"] for e in events if e.get("name") == "navigationStart"]
    origin = min(starts) if starts else min(e["ts"] for e in tasks_of[key])
    inner = [e for e in complete if (e["pid"], e["tid"]) == key and e["name"] != "RunTask"]
    out = []
    for task in sorted(tasks_of[key], key=lambda e: e["ts"]):
        if task["dur"] < longer_than_ms * 1000:
            continue
        end = task["ts"] + task["dur"]
        parts = sorted((e for e in inner if task["ts"] <= e["ts"] and e["ts"] + e.get("dur", 0) <= end
                        and e.get("dur", 0) > 5000), key=lambda e: -e["dur"])
        out.append({"at_ms": round((task["ts"] - origin) / 1000), "ms": round(task["dur"] / 1000),
                    "parts": [f"{e['name']} {e['dur'] / 1000:.0f}" for e in parts[:4]]})
    return out, sum(e["dur"] for e in tasks_of[key]) / 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="a page's url path ('' is Home)")
    parser.add_argument("--charts", action="store_true", help="also time each chart's draw once the page settled")
    parser.add_argument("--at-once", action="store_true", help="open the page as soon as the server answers, "
                        "during its warm-up (app_speed.py's *warm* case)")
    parser.add_argument("--first-draw", type=int, metavar="N", default=0,
                        help="instead: Plotly's first chart in the page after its warm-up against none, N times each")
    parser.add_argument("--live", action="store_true", help="instead: trace a live run of the preset, from Start "
                        "to finished (the train page)")
    parser.add_argument("--live-cpu", type=int, metavar="N", default=0,
                        help="instead: N live runs of the preset, chromium's CPU from Start to finished (the train page)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the page (default 60)")
    args = parser.parse_args(argv)
    if (args.live or args.live_cpu) and args.page != "train":
        parser.error("--live and --live-cpu are about the Train page's live run: give the page 'train'")
    if args.page not in page_paths():
        parser.error(f"unknown page {args.page!r}; pages: {list(page_paths())}")
    if not Path(CHROMIUM).exists():
        print(f"browser_trace: {CHROMIUM} not found (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kdviz-trace-") as tmp, sync_playwright() as pw:
        tmp = Path(tmp)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        cache = Path(os.environ.get("KDVIZ_CACHE") or Path.home() / ".cache" / "kdviz")  # as app_speed's warm runs
        try:
            with Fresh(tmp, cache, "trace") as fresh:
                if args.first_draw:
                    draws = first_draws(browser, f"{fresh.server.url}/{args.page}", args.first_draw, args.timeout)
                    for kind, ms in draws.items():
                        print(f"Plotly's first chart, {kind}: median {sorted(ms)[len(ms) // 2]:.0f} ms "
                              f"(" + ", ".join(f"{m:.0f}" for m in ms) + ")")
                    return 0
                if args.live:
                    return live_run(browser, fresh, tmp, args.timeout)
                if args.live_cpu:
                    return live_cpu(browser, fresh, tmp, args.live_cpu, args.timeout)
                warm = None if args.at_once else warmed_up(fresh.timings, fresh.server.process.pid, 300)
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                browser.start_tracing(page=page, path=str(tmp / "trace.json"), categories=CATEGORIES)
                page.goto(f"{fresh.server.url}/{args.page}", wait_until="commit", timeout=args.timeout * 1000)
                page.wait_for_function(FIRST_CHART_JS, timeout=args.timeout * 1000, polling=20)
                first = page.evaluate(FIRST_CHART_JS)
                time.sleep(1.0)
                browser.stop_tracing()
                costs = None
                if args.charts:
                    time.sleep(2.0)  # the rest of the page settles
                    costs = page.evaluate(CHART_COSTS_JS)
        finally:
            browser.close()
        tasks, busy = main_thread_tasks(json.loads((tmp / "trace.json").read_text()))
    opened = "as soon as the server answered" if args.at_once else f"after the warm-up ({warm} s)"
    print(f"page /{args.page}: opened {opened}; first chart on screen at {first:.0f} ms; "
          f"renderer main thread busy {busy:.0f} ms in the trace")
    for t in tasks:
        print(f"  at {t['at_ms']:6d} ms  {t['ms']:5d} ms  " + " | ".join(t["parts"]))
    for c in costs or []:
        print(f"  chart {c['chart']} ({c['kind']}, {'/'.join(c['traces'])}): newPlot ms {c['ms']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
