"""How fast the app answers in a real browser (not part of the test suite).

    KDVIZ_DATA=... .venv/bin/python benchmarks/app_speed.py            # prints the tables
    KDVIZ_DATA=... .venv/bin/python benchmarks/app_speed.py --write    # and replaces its section of BENCHMARKS.md

1. **First chart on a fresh server, per page**: for every page listed in app/navigation.py a fresh
   server is started the README's way (``python -m streamlit run app/streamlit_app.py``, on a free
   port of 127.0.0.1, an empty runs folder), chromium (headless, Debian's, through Playwright) opens
   that page first, and the time from navigation start until the first Plotly chart is on screen is
   read from the page's own clock. *Cold*: ``KDVIZ_CACHE`` is a new empty folder (data sets decoded,
   teacher logits computed); *warm*: the same folder a second time, on another fresh server;
   *returning*: warm, in a browser that has opened the page twice before, on an earlier server at the
   same address (its HTTP cache holds Streamlit's JavaScript, which Streamlit marks immutable for a year,
   and chromium's code cache the scripts compiled): what a lecturer sees who restarts the server and
   opens the link again, where the others are a first visit ever.
2. **Temperature slider**: on a fresh server (warm cache) the Temperature page is opened and the T
   slider moved ``--moves`` times with the keyboard (one grid step each); each move is timed in the
   browser from the key press until the bars chart shows the new numbers. The server's part is read
   from the app's own timings (``KDVIZ_APP_TIMINGS``, :mod:`app.timings`): the run time of the
   fragment that redraws the charts, and whether a full page run happened at all.

With ``--ab-one-by-one ROUNDS`` (instead of the above): app/preload.py's one-by-one first draws against
the same page with them switched off in the browser (an init script marks Plotly's object as done before
the page's own script can wrap it), ROUNDS rounds in alternating order, each page on fresh servers with a
warm cache, opened the moment the server answers and once warmed up; printed: medians, new / old.

After the tables it prints the issue's checks (issue 13: the first chart of every page within 3 s with
a warm cache, 5 s cold; the slider's bars within 250 ms, its server work within 100 ms), met or MISSED,
naming the pages over a target.

Every server and the browser run on the same cores; the machine line says which and how busy.
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

import torch

from load_test import CHROMIUM, CHROMIUM_ARGS, Server, cpu_seconds, descendants, free_port
from sections import replace_section
from speed import MACHINE_KINDS, machine, machine_kind, verdict

REPO = Path(__file__).resolve().parent.parent
# The first chart on screen: a Plotly plot drawn with a height. Returns the page clock (ms since navigation).
FIRST_CHART_JS = ("() => { for (const p of document.querySelectorAll('.js-plotly-plot .main-svg')) "
                  "{ if (p.getBoundingClientRect().height > 0) return performance.now(); } return false; }")
# Where the time went, on the page's clock (ms since navigation): the app's JavaScript (index chunk) and
# Plotly's chunk fetched (start, end), and the clock's origin (unix ms) to place the server's timings on it.
BREAKDOWN_JS = """() => { const r = performance.getEntriesByType('resource');
  const pick = (re) => { const e = r.find(x => re.test(x.name)); return e ? [e.startTime, e.responseEnd] : null; };
  return {origin: performance.timeOrigin, app_js: pick(/\\/index\\.[^/]*\\.js$/), plotly_js: pick(/\\/PlotlyChart\\.[^/]*\\.js$/)}; }"""
RUNNING_JS = "() => !!document.querySelector('[data-testid=\"stStatusWidget\"]')"
BARS_JS = "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data ? JSON.stringify(p.data[1].y) : null; }"
# Watches the page's charts from the page itself (every animation frame), so the time of a redraw is not
# the poll's: when the bars (the first chart) change, and when the last of the charts whose data, shapes,
# annotations or title changed did so, within 1.5 s of the bars (how many: ``__kd_changed``); then
# ``__kd_settled``.
CHART_SIGNATURE = ("(p) => p && p.data ? JSON.stringify([p.data, p.layout && p.layout.shapes, "
                   "p.layout && p.layout.annotations, p.layout && p.layout.title]) : null")
WATCH_JS = """(before) => { window.__kd_redrawn = null; window.__kd_pressed = null; window.__kd_settled = false;
  window.__kd_last = null; window.__kd_changed = 0;
  const sign = """ + CHART_SIGNATURE + """;
  const charts = () => Array.from(document.querySelectorAll('.js-plotly-plot'));
  const old = charts().map(sign); const changed = new Set();
  document.addEventListener('keydown', () => { window.__kd_pressed = performance.now(); }, {capture: true, once: true});
  const look = () => { const p = document.querySelector('.js-plotly-plot');
    const now = p && p.data ? JSON.stringify(p.data[1].y) : null;
    const t = performance.now();
    if (window.__kd_redrawn === null && now && now !== before) window.__kd_redrawn = t;
    if (window.__kd_pressed !== null) charts().forEach((c, i) => { const s = sign(c);
      if (s !== null && s !== old[i]) { old[i] = s; changed.add(i); window.__kd_last = t; } });
    window.__kd_changed = changed.size;
    if (window.__kd_redrawn !== null && t - window.__kd_redrawn > 1500) { window.__kd_settled = true; return; }
    requestAnimationFrame(look); };
  requestAnimationFrame(look); }"""


def page_paths() -> dict[str, str]:
    """Every page listed in app/navigation.py: url path -> title (home is "")."""
    source = (REPO / "app" / "navigation.py").read_text()
    pages = {"": "Home"}
    for title, path in re.findall(r'st\.Page\([^)]*title="([^"]+)"[^)]*url_path="([^"]+)"', source):
        pages[path] = title
    return pages


def read_timings(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Fresh:
    """A fresh server with its own runs folder and timings file, and the cache folder given."""

    def __init__(self, tmp: Path, cache: Path, name: str, port: int | None = None):
        folder = tmp / name
        folder.mkdir(parents=True)
        self.timings = folder / "timings.jsonl"
        self.started = time.perf_counter()
        self.server = Server(folder / "runs", folder / "streamlit.log",
                             env={"KDVIZ_CACHE": str(cache), "KDVIZ_APP_TIMINGS": str(self.timings)}, port=port)

    def __enter__(self) -> Fresh:
        self.server.wait_ready()
        self.ready_s = time.perf_counter() - self.started  # from the process's start until it answers
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()


NO_CHART = "no chart on the page's first view"  # a page whose first view has none (Train before a run, Compare)


def first_chart(browser, url: str, timings: Path, timeout: float, context=None) -> dict:
    """Open ``url`` in a new tab (a fresh browser profile: nothing cached; or a tab of ``context``, left
    open); seconds from navigation until the first chart is on screen, and the server's full run of the
    page. A page whose first view has no chart (e.g. Train before a run) says so once its run has ended."""
    own = context is None
    context = browser.new_context(viewport={"width": 1400, "height": 1000}) if own else context
    page = context.new_page()
    row: dict = {"first_chart_s": None}
    try:
        page.goto(url, wait_until="commit", timeout=timeout * 1000)
        deadline, ended = time.time() + timeout, None
        while time.time() < deadline:
            at = page.evaluate(FIRST_CHART_JS)
            if at:
                row["first_chart_s"] = at / 1000
                break
            # no chart yet: has the page's script run ended (a run recorded, nothing running in the page) without
            # sending one? (One it sent can take chromium seconds to draw on a slow CPU: that is waited for.)
            seen = read_timings(timings)
            done = (any(t["part"].startswith("page:") for t in seen) and not any(t["part"].startswith("first-chart:") for t in seen)
                    and not page.evaluate(RUNNING_JS))
            ended = (ended or time.time()) if done else None
            if ended is not None and time.time() - ended > 3:
                row["error"] = NO_CHART
                break
            time.sleep(0.02)
        else:
            row["error"] = f"no chart within {timeout:g} s"
        deadline = time.time() + timeout
        while time.time() < deadline and not any(t["part"].startswith("page:") for t in read_timings(timings)):
            time.sleep(0.1)
        runs = [t for t in read_timings(timings) if t["part"].startswith("page:")]
        row["server_run_s"] = runs[0]["seconds"] if runs else None
        if row["first_chart_s"] is not None and runs:
            row.update(breakdown(page.evaluate(BREAKDOWN_JS), runs[0], read_timings(timings)))
    except Exception as error:  # noqa: BLE001 - a page that fails to load is a result
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    finally:
        (context if own else page).close()
    return row


def breakdown(clock: dict, run: dict, timings: list[dict]) -> dict:
    """The first chart's way, in seconds on the page's clock: the app's JavaScript loaded, the server's
    page run started and sent its first chart (app/timings.py), Plotly's chunk fetched."""
    origin = clock["origin"] / 1000
    start = run["t"] - run["seconds"] - origin
    sent = [t["seconds"] for t in timings if t["part"] == f"first-chart:{run['part'].split(':', 1)[1]}"]
    out = {"app_js_s": clock["app_js"][1] / 1000 if clock["app_js"] else None, "run_start_s": start,
           "chart_sent_s": start + sent[0] if sent else None}
    if clock["plotly_js"]:
        out["plotly_fetch_s"] = (clock["plotly_js"][0] / 1000, clock["plotly_js"][1] / 1000)
    return out


def warmed_up(timings: Path, server_pid: int, timeout: float) -> float | None:
    """Seconds the server's start-up warm-up took (app/warmup.py), once it has finished and the server's
    processes have gone quiet (the fork server that live runs start from, which the warm-up starts last,
    imports torch for some seconds after the warm-up's own line)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = [t["seconds"] for t in read_timings(timings) if t["part"] == "warmup"]
        if done:
            break
        time.sleep(0.2)
    else:
        return None
    while time.time() < deadline:  # quiet: under 0.1 s of CPU in a second, over the server's process tree
        used = cpu_seconds(descendants(server_pid))
        time.sleep(1.0)
        if cpu_seconds(descendants(server_pid)) - used < 0.1:
            break
    return done[0]


# empty cache / cache filled / cache filled and the warm-up finished / cache filled, a browser that has been there
KINDS = ("cold", "warm", "warmed up", "returning")


def returning(browser, tmp: Path, cache: Path, path: str, timeout: float) -> dict:
    """The page opened the moment a fresh server answers (warm cache), in a browser that opened it twice
    on an earlier server at the same address: its HTTP cache and code cache hold Streamlit's JavaScript."""
    port = free_port()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        with Fresh(tmp, cache, f"earlier-{path or 'home'}", port=port) as earlier:
            for _ in range(2):
                first_chart(browser, f"{earlier.server.url}/{path}", earlier.timings, timeout, context)
        with Fresh(tmp, cache, f"returning-{path or 'home'}", port=port) as fresh:
            row = first_chart(browser, f"{fresh.server.url}/{path}", fresh.timings, timeout, context)
            row["ready_s"] = fresh.ready_s
    finally:
        context.close()
    return row


def measure_pages(browser, tmp: Path, pages: dict[str, str], timeout: float, kinds: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for path, title in pages.items():
        cache = tmp / f"cache-{path or 'home'}"
        rows = {}
        for kind in kinds:
            if "cold" not in kinds:  # the cache folder given (already filled)
                cache = Path(os.environ.get("KDVIZ_CACHE") or Path.home() / ".cache" / "kdviz")
            if kind == "returning":
                rows[kind] = row = returning(browser, tmp, cache, path, timeout)
            else:
                with Fresh(tmp, cache, f"{kind.replace(' ', '-')}-{path or 'home'}") as fresh:
                    warm_s = warmed_up(fresh.timings, fresh.server.process.pid, 300) if kind == "warmed up" else None
                    row = first_chart(browser, f"{fresh.server.url}/{path}", fresh.timings, timeout)
                    row["warmup_s"], row["ready_s"] = warm_s, fresh.ready_s
                rows[kind] = row
            print(f"{title:28s} {kind}: first chart {row['first_chart_s']} s, page run {row.get('server_run_s')} s"
                  f"{'  ' + row['error'] if row.get('error') else ''}  "
                  + json.dumps({k: v for k, v in row.items() if k.endswith('_s') and k != 'first_chart_s'}),
                  file=sys.stderr, flush=True)
        out[title] = rows
    return out


def measure_slider(browser, tmp: Path, moves: int, timeout: float) -> dict:
    cache = Path(os.environ.get("KDVIZ_CACHE") or Path.home() / ".cache" / "kdviz")
    with Fresh(tmp, cache, "slider") as fresh:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{fresh.server.url}/temperature", timeout=timeout * 1000)
        page.wait_for_function(FIRST_CHART_JS, timeout=timeout * 1000)
        thumb = page.locator("[data-testid='stSlider'] input[type='range']").first
        thumb.wait_for(timeout=timeout * 1000)
        time.sleep(2.0)  # let the rest of the page (the dark-knowledge matrix) finish
        thumb.focus()
        server = fresh.server.process.pid
        answers, everything, charts_changed, cpu, fresh_T, key = [], [], [], [], [], "ArrowRight"
        before_runs = len(read_timings(fresh.timings))
        seen = set()
        for i in range(moves):
            value, low, high = thumb.evaluate("e => [Number(e.value), Number(e.min), Number(e.max)]")
            seen.add(value)
            key = "ArrowLeft" if value >= high else ("ArrowRight" if value <= low else key)
            fresh_T.append(value + (1 if key == "ArrowRight" else -1) not in seen)  # first time at that T?
            bars = page.evaluate(BARS_JS)
            page.evaluate(WATCH_JS, bars)
            used = cpu_seconds(descendants(server))
            thumb.press(key)
            page.wait_for_function("() => window.__kd_settled", polling="raf", timeout=timeout * 1000)
            pressed, redrawn, last, changed = page.evaluate(
                "() => [window.__kd_pressed, window.__kd_redrawn, window.__kd_last, window.__kd_changed]")
            answers.append((redrawn - pressed) / 1000)
            everything.append((last - pressed) / 1000)
            charts_changed.append(changed)
            cpu.append(cpu_seconds(descendants(server)) - used)
        time.sleep(0.5)
        context.close()
        runs = read_timings(fresh.timings)[before_runs:]
    fragment = [t["seconds"] for t in runs if t["part"] == "fragment:temperature.T"]
    new = [a for a, f in zip(answers, fresh_T) if f]
    again = [a for a, f in zip(answers, fresh_T) if not f]
    frag_new = [t for t, f in zip(fragment, fresh_T) if f] if len(fragment) == len(answers) else []
    frag_again = [t for t, f in zip(fragment, fresh_T) if not f] if len(fragment) == len(answers) else []
    median = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {"moves": moves, "answers_s": answers, "median_s": statistics.median(answers), "max_s": max(answers),
            "all_median_s": statistics.median(everything), "all_max_s": max(everything),
            "charts_changed": statistics.median(charts_changed),
            "new_T_median_s": median(new), "seen_T_median_s": median(again), "new_moves": len(new),
            "fragment_new_T_median_s": median(frag_new), "fragment_seen_T_median_s": median(frag_again),
            "fragment_runs": len(fragment), "page_runs": sum(1 for t in runs if t["part"].startswith("page:")),
            "fragment_median_s": statistics.median(fragment) if fragment else None,
            "fragment_max_s": max(fragment) if fragment else None,
            "server_cpu_median_s": statistics.median(cpu)}


# Issue 13's targets ("What I will check"): the first chart of every page of a fresh server within 3 s with a
# warm disk cache (each of the cases that have one) and 5 s with a cold one; a slider move redrawn within 250 ms
# in the browser, with at most 100 ms of server work.
FIRST_CHART_TARGET_S = {"cold": 5.0, "warm": 3.0, "warmed up": 3.0, "returning": 3.0}
SLIDER_TARGET_S, FRAGMENT_TARGET_S = 0.25, 0.10


def issue_checks(pages: dict, slider: dict | None) -> list[str]:
    """One line per target above that this run measured: the figures, the target and whether it is met
    (for the first charts: the pages over it, and those that failed to show one). A page whose first
    view has no chart by design (Train, Compare) is left out of the first-chart lines."""
    lines = []
    if slider:
        lines.append(f"- slider, key press to bars redrawn, median: {1000 * slider['median_s']:.1f} ms (target ≤ "
                     f"{1000 * SLIDER_TARGET_S:.0f} ms): " + verdict(slider["median_s"] <= SLIDER_TARGET_S))
        if slider.get("fragment_median_s") is not None:
            lines.append(f"- slider, the server's fragment rerun, median: {1000 * slider['fragment_median_s']:.1f} ms "
                         f"(target ≤ {1000 * FRAGMENT_TARGET_S:.0f} ms): "
                         + verdict(slider["fragment_median_s"] <= FRAGMENT_TARGET_S))
    for case, target in FIRST_CHART_TARGET_S.items():
        rows = {title: by_case[case] for title, by_case in pages.items() if case in by_case}
        timed = {title: r["first_chart_s"] for title, r in rows.items() if r.get("first_chart_s") is not None}
        failed = [title for title, r in rows.items() if r.get("first_chart_s") is None and r.get("error") != NO_CHART]
        if not timed and not failed:
            continue
        over = [f"{title} {seconds:.2f} s" for title, seconds in timed.items() if seconds > target]
        low, high = (min(timed.values()), max(timed.values())) if timed else (None, None)
        spread = ("no page" if not timed else f"{low:.2f} s on 1 page" if len(timed) == 1 else
                  f"{low:.2f}-{high:.2f} s on {len(timed)} pages")
        misses = over + [f"{title}: {rows[title].get('error', 'no chart')}" for title in failed]
        lines.append(f"- first chart, {case}: {spread} (target ≤ {target:g} s on every page): {verdict(not misses)}"
                     + (f" ({'; '.join(misses)})" if misses else ""))
    return lines


def fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ms(seconds) -> str:
    return "—" if seconds is None else f"{1000 * seconds:.0f} ms"


def markers(kind: str) -> tuple[str, str]:
    """The section's markers on a kind of machine (:func:`speed.machine_kind`): each kind keeps its own
    block, a CPU without native bf16's right after the main one."""
    return f"<!-- app-speed{kind}:start -->", f"<!-- app-speed{kind}:end -->"


def markdown(pages: dict, slider: dict, about: str, command: str, load_after: float, kind: str = "") -> str:
    ups = [r["warmed up"]["warmup_s"] for r in pages.values() if r.get("warmed up", {}).get("warmup_s")]
    warmup = f"it took a median {statistics.median(ups):.1f} s" if ups else "not measured"
    start, end = markers(kind)
    lines = [start, f"## App speed in a browser (`benchmarks/app_speed.py`){MACHINE_KINDS[kind]}", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}). Machine: {about}; {load_after:.1f} when it ended. "
             "Server and headless chromium on the same cores.", "",
             "First chart on a fresh server: a new `streamlit run app/streamlit_app.py` per page and case, the page "
             "opened first in a fresh browser profile, seconds from navigation start until the first Plotly chart is "
             "on screen (the page's clock); in brackets the server's full run of the page. *Cold*: an empty "
             "`KDVIZ_CACHE` (data decoded, teacher logits computed), page opened as soon as the server answers; "
             "*warm*: the same cache folder again; *warmed up*: warm, and the page opened once the server's start-up "
             "warm-up (app/warmup.py: torch, kdviz, the shipped teachers' outputs, Plotly's machinery and the inside "
             "pages' default views loaded in a background thread, then the live runs' fork server started) has "
             f"finished and the server's processes are quiet ({warmup}); *returning*: warm, opened as soon as the "
             "server answers, in a browser profile that opened the page twice before on an earlier server at the same "
             "address (its HTTP cache holds Streamlit's JavaScript, marked immutable, and chromium's code cache the "
             "scripts compiled): a lecturer who restarts the server and opens the link again.", "",
             "| page | cold (s) | warm (s) | warmed up (s) | returning (s) |", "|---|---:|---:|---:|---:|"]
    for title, rows in pages.items():
        cells = []
        for kind in KINDS:
            r = rows.get(kind)
            cells.append("—" if r is None else (f"{fmt(r.get('first_chart_s'))} ({fmt(r.get('server_run_s'))})"
                                                 if r.get("first_chart_s") is not None
                                                 else f"no chart ({fmt(r.get('server_run_s'))})"))
        lines.append(f"| {title} | {' | '.join(cells)} |")
    lines += ["", "Where the first chart's time goes, warm (opened the moment the server answers), warmed up and "
              "returning, in "
              "seconds on the page's clock (from navigation start): the app's JavaScript loaded (its index chunk), the "
              "server's page run started (the browser connected and asked for it) and sent its first chart "
              "(app/timings.py), Plotly's chunk fetched (from – to; app/preload.py starts it with the page), and the "
              "chart on screen (Plotly evaluated and drawn); last, seconds from the server's start until it answered "
              "(before navigation starts).", "",
              "| page | case | app JS | run started | first chart sent | Plotly chunk | on screen | server answered |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for title, rows in pages.items():
        for case in ("warm", "warmed up", "returning"):
            r = rows.get(case) or {}
            if r.get("first_chart_s") is None:
                continue
            fetch = r.get("plotly_fetch_s")
            lines.append(f"| {title} | {case} | {fmt(r.get('app_js_s'))} | {fmt(r.get('run_start_s'))} | "
                         f"{fmt(r.get('chart_sent_s'))} | {f'{fetch[0]:.2f}–{fetch[1]:.2f}' if fetch else '—'} | "
                         f"{fmt(r.get('first_chart_s'))} | {fmt(r.get('ready_s'))} |")
    lines += ["", f"Temperature slider, {slider['moves']} moves of one grid step (keyboard), warm server:", "",
              "| measured | median | slowest |", "|---|---:|---:|",
              f"| key press → bars redrawn, in the browser | {1000 * slider['median_s']:.0f} ms | "
              f"{1000 * slider['max_s']:.0f} ms |",
              f"| key press → every chart that follows T redrawn ({slider['charts_changed']:.0f} charts), in the browser | "
              f"{1000 * slider['all_median_s']:.0f} ms | {1000 * slider['all_max_s']:.0f} ms |",
              f"| server: the charts' fragment rerun | {ms(slider['fragment_median_s'])} | {ms(slider['fragment_max_s'])} |",
              f"| server: CPU time per move (process tree) | {1000 * slider['server_cpu_median_s']:.0f} ms | |", "",
              f"Of these, {slider['new_moves']} moves went to a temperature not drawn before on this server (its charts "
              f"built, then shared): browser {ms(slider['new_T_median_s'])}, fragment {ms(slider['fragment_new_T_median_s'])} "
              f"(medians); {slider['moves'] - slider['new_moves']} to one already drawn: browser "
              f"{ms(slider['seen_T_median_s'])}, fragment {ms(slider['fragment_seen_T_median_s'])}.", "",
              f"Full page runs during the moves: {slider['page_runs']} (fragment runs: {slider['fragment_runs']}); "
              "only the part of the page that depends on T reruns.", end]
    return "\n".join(lines)


# Switches app/preload.py's one-by-one first draws off: the guard it checks is then true on every object.
ONE_BY_ONE_OFF_JS = 'Object.defineProperty(Object.prototype, "kdOneByOne", {value: true, configurable: true});'


class WithoutOneByOne:
    """A browser whose new contexts open pages with the one-by-one first draws switched off."""

    def __init__(self, browser):
        self.browser = browser

    def new_context(self, **options):
        context = self.browser.new_context(**options)
        context.add_init_script(ONE_BY_ONE_OFF_JS)
        return context


def ab_one_by_one(browser, tmp: Path, pages: dict[str, str], rounds: int, timeout: float) -> str:
    """First chart with the one-by-one first draws (new) and without (old), ``rounds`` rounds alternating
    which goes first; a markdown table of the medians per page and case, new / old."""
    kinds = ("warm", "warmed up")
    seen: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in range(rounds):
        for variant in (("new", "old") if r % 2 == 0 else ("old", "new")):
            way = browser if variant == "new" else WithoutOneByOne(browser)
            for title, rows in measure_pages(way, tmp / f"ab-{r}-{variant}", pages, timeout, kinds).items():
                for kind, row in rows.items():
                    if row.get("first_chart_s") is not None:
                        seen.setdefault((title, kind), {"new": [], "old": []})[variant].append(row["first_chart_s"])
    lines = ["| page | case | new (s) | old (s) | each visit, new / old |", "|---|---|---:|---:|---|"]
    for (title, kind), got in seen.items():
        if got["new"] and got["old"]:
            lines.append(f"| {title} | {kind} | {statistics.median(got['new']):.2f} | {statistics.median(got['old']):.2f} | "
                         f"{' '.join(f'{v:.2f}' for v in got['new'])} / {' '.join(f'{v:.2f}' for v in got['old'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=20, help="slider moves (default 20)")
    parser.add_argument("--pages", nargs="*", help="url paths of the pages to open (default: all; '' is home)")
    parser.add_argument("--no-cold", action="store_true", help="only the warm cache")
    parser.add_argument("--only-warmed-up", action="store_true", help="only the warmed-up case (a quicker look)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per page (default 60)")
    parser.add_argument("--write", action="store_true", help="replace the app-speed section of BENCHMARKS.md")
    parser.add_argument("--ab-one-by-one", type=int, metavar="ROUNDS",
                        help="instead: first charts with and without app/preload.py's one-by-one first draws")
    args = parser.parse_args(argv)
    if not 1 <= args.moves <= 200:
        parser.error("--moves must be in [1, 200]")
    if args.ab_one_by_one is not None and not 1 <= args.ab_one_by_one <= 10:
        parser.error("--ab-one-by-one must be in [1, 10] rounds")
    if args.ab_one_by_one is not None and args.write:
        parser.error("--ab-one-by-one prints its table; it writes no section of BENCHMARKS.md")
    if not Path(CHROMIUM).exists():
        print(f"app_speed: {CHROMIUM} not found (apt-get install chromium)", file=sys.stderr)
        return 2
    pages = page_paths()
    if args.pages is not None:
        unknown = [p for p in args.pages if p not in pages]
        if unknown:
            parser.error(f"unknown page(s) {unknown}; pages: {list(pages)}")
        pages = {p: pages[p] for p in args.pages}
    about = machine(torch.device("cpu"))
    print(about, file=sys.stderr)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kdviz-app-speed-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        if args.ab_one_by_one is not None:
            try:
                print(ab_one_by_one(browser, Path(tmp), pages, args.ab_one_by_one, args.timeout))
            finally:
                browser.close()
            return 0
        try:
            slider = measure_slider(browser, Path(tmp), args.moves, args.timeout)
            print(f"slider: {json.dumps(slider)}", file=sys.stderr, flush=True)
            kinds = ("warmed up",) if args.only_warmed_up else KINDS[1:] if args.no_cold else KINDS
            first = measure_pages(browser, Path(tmp), pages, args.timeout, kinds)
        finally:
            browser.close()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("KDVIZ_DATA",) if os.environ.get(k)).replace(f"{REPO}/", "")
    command = (f"{env + ' ' if env else ''}.venv/bin/python benchmarks/app_speed.py --moves {args.moves}"
               f"{' --no-cold' if args.no_cold else ''}{' --write' if args.write else ''}")
    kind = machine_kind(torch.device("cpu"))
    text = markdown(first, slider, about, command, os.getloadavg()[0], kind)
    print(text)
    print("\nThe issue's checks on this machine (issue 13):\n" + "\n".join(issue_checks(first, slider)))
    if args.write:
        replace_section(REPO / "BENCHMARKS.md", *markers(kind), text, after=markers("")[1])
        print(f"wrote the app-speed{kind} section of BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
