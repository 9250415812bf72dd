"""Load test: a classroom of browser sessions against one kdviz server (not part of the test suite).

Starts the app the README's way, bound to 127.0.0.1 only,
``.venv/bin/python -m streamlit run app/streamlit_app.py --server.headless true --server.port PORT``,
then opens N sessions (default 30) in Debian's chromium through Playwright, all at
once (a classroom opening a shared link). Each session:

1. opens the Temperature page and waits for the chart ("page answered");
2. moves the temperature slider and times the answer: from the last key press until
   the chart shows the new distribution (the bars' numbers change in the page);
3. opens two other pages (Compare, then Home) and times each until its script has run;
4. one session in three (``--train-every``) then opens Train (live) with a short run
   in the link (a teacher on the 8x8 digits, 1 epoch), presses Start and waits until
   the page says the run finished.

Everything is bounded: N sessions, ``--session-timeout`` seconds each, one browser.
The server's memory (resident set of its process tree) is sampled every 0.2 s.
The result is printed as JSON and, with ``--write``, replaces the "Load test"
block of BENCHMARKS.md between its markers (with the command and the CPU).

    .venv/bin/python benchmarks/load_test.py --sessions 30 --write
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from sections import replace_section

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SECTION = "## Load test: a classroom of browser sessions"
START, END = "<!-- load-test:start -->", "<!-- load-test:end -->"  # its block in BENCHMARKS.md


# --------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes (and of their waited-for children)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (from /proc)."""
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


class Server:
    """The app in a subprocess on 127.0.0.1, with a memory sampler."""

    def __init__(self, runs_dir: Path, log: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        python = REPO / ".venv" / "bin" / "python"
        self.command = [str(python if python.exists() else sys.executable), "-m", "streamlit", "run",
                        "app/streamlit_app.py", "--server.headless", "true", "--server.port", str(self.port),
                        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
        env = {**os.environ, "KDVIZ_RUNS": str(runs_dir), **(env or {})}
        self.log = open(log, "w+")
        self.process = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.peak = self.idle = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read().decode() == "ok":
                    self.idle = tree_rss_bytes(self.process.pid)
                    self._sampler.start()
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        self.log.seek(0)
        raise RuntimeError(f"streamlit did not start:\n{self.log.read()[-3000:]}")

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss_bytes(self.process.pid))

    def close(self) -> None:
        self._stop.set()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --------------------------------------------------------------------------- one session
BARS_JS = "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data ? Array.from(p.data[1].y) : null; }"
BUSY_JS = ("() => !!(document.querySelector('[data-testid=\"stStatusWidget\"]') "
           "|| document.querySelector('[data-testid=\"stSpinner\"]'))")


async def settled(page, timeout: float) -> float:
    """Seconds until the page's script has run (the app is there, nothing running for 3 checks)."""
    start = time.perf_counter()
    await page.wait_for_selector("[data-testid='stApp']", timeout=timeout * 1000)
    quiet, answered = 0, None
    while time.perf_counter() - start < timeout:
        busy = await page.evaluate(BUSY_JS)
        if busy:
            quiet, answered = 0, None
        else:
            answered = answered or time.perf_counter() - start
            quiet += 1
            if quiet >= 3:
                return answered
        await asyncio.sleep(0.2)
    raise TimeoutError("page did not settle")


async def session(index: int, context, url: str, train: bool, timeout: float) -> dict:
    """One Streamlit session: its own page (tab), so its own websocket and session state."""
    out: dict = {"session": index, "train": train}
    page = await context.new_page()
    page.set_default_timeout(timeout * 1000)
    try:
        start = time.perf_counter()
        await page.goto(f"{url}/temperature", timeout=timeout * 1000)
        await page.wait_for_selector(".js-plotly-plot", timeout=timeout * 1000)
        await page.wait_for_selector("[data-testid='stSlider'] input[type='range']", timeout=timeout * 1000)
        out["first_chart_s"] = time.perf_counter() - start
        thumb = page.locator("[data-testid='stSlider'] input[type='range']").first
        await thumb.focus()
        out["slider_moves_s"] = []
        for _ in range(2):  # two moves of one grid step each, each timed until the chart shows it
            before = await page.evaluate(BARS_JS)
            pressed = time.perf_counter()
            await thumb.press("ArrowRight")
            while True:
                after = await page.evaluate(BARS_JS)
                if after and after != before:
                    break
                if time.perf_counter() - pressed > timeout:
                    raise TimeoutError("the chart did not answer the slider")
                await asyncio.sleep(0.05)
            out["slider_moves_s"].append(time.perf_counter() - pressed)
        out["slider_s"] = max(out["slider_moves_s"])
        out["pages_s"] = []
        for path in ("compare", ""):
            t = time.perf_counter()
            await page.goto(f"{url}/{path}", timeout=timeout * 1000)
            await settled(page, timeout)
            out["pages_s"].append(time.perf_counter() - t)
        if train:
            t = time.perf_counter()
            await page.goto(f"{url}/train?mode=teacher&dataset=digits&student=mlp-30&epochs=1&batch=64",
                            timeout=timeout * 1000)
            await page.get_by_role("button", name="Start").click(timeout=timeout * 1000)
            await page.get_by_text(re.compile(r"finished: test accuracy")).wait_for(timeout=timeout * 1000)
            out["run_s"] = time.perf_counter() - t
            out["run_completed"] = True
        out["ok"] = True
    except Exception as error:  # noqa: BLE001 - a failed session is a result, not a crash
        out["ok"] = False
        out["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    finally:
        await page.close()
    return out


async def classroom(url: str, server_pid: int, sessions: int, train_every: int, timeout: float,
                    stagger: float) -> tuple[list[dict], float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # One browser profile, one tab per session: the tabs share the HTTP cache (the app's
        # JavaScript is fetched once, as in a classroom where it would be cached per machine), while
        # each tab is its own Streamlit session (own websocket, own session state).
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            # the teacher opens the link first (as in class): shared caches warm, not counted
            warm = await session(-1, context, url, False, timeout)

            async def one(i):
                await asyncio.sleep(i * stagger)
                try:
                    return await asyncio.wait_for(session(i, context, url, train_every > 0 and i % train_every == 0,
                                                          timeout), timeout * 3)
                except asyncio.TimeoutError:
                    return {"session": i, "ok": False, "error": "session over its time bound"}
            results = [warm, *await asyncio.gather(*(one(i) for i in range(sessions)))]
            server_pids = set(descendants(server_pid))
            browser_cpu = cpu_seconds(p for p in descendants(os.getpid()) if p not in server_pids and p != os.getpid())
            return results, browser_cpu
        finally:
            await context.close()
            await browser.close()


# --------------------------------------------------------------------------- report
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        name = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
        flags = re.search(r"flags\s*:\s*(.+)", text).group(1).split()
        extra = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
        return f"{name} ({', '.join(extra) or 'no native bf16'}), {os.cpu_count()} cores"
    except (OSError, AttributeError):
        return platform.processor() or "unknown CPU"


def summarise(results: list[dict], server: Server, runs_dir: Path, wall: float, args) -> dict:
    warm, results = results[0], results[1:]
    slider = sorted(t for r in results for t in r.get("slider_moves_s", []) if "slider_s" in r)
    first = sorted(r["first_chart_s"] for r in results if "first_chart_s" in r)
    pages = sorted(t for r in results for t in r.get("pages_s", []))
    records = [json.loads(p.read_text()) for p in runs_dir.glob("*/record.json")]
    return {
        "sessions": args.sessions,
        "answered": sum(1 for r in results if "slider_s" in r),
        "completed": sum(1 for r in results if r.get("ok")),
        "slider_median_s": round(statistics.median(slider), 2) if slider else None,
        "slider_slowest_s": round(slider[-1], 2) if slider else None,
        "first_chart_median_s": round(statistics.median(first), 2) if first else None,
        "first_chart_slowest_s": round(first[-1], 2) if first else None,
        "page_median_s": round(statistics.median(pages), 2) if pages else None,
        "page_slowest_s": round(pages[-1], 2) if pages else None,
        "runs_started": sum(1 for r in results if r.get("train")),
        "runs_completed": sum(1 for r in results if r.get("run_completed")),
        "records_saved": sum(1 for r in records if r.get("status", "finished") == "finished"),
        "warm_up_first_chart_s": round(warm.get("first_chart_s", float("nan")), 2),
        "server_idle_mb": round(server.idle / 2**20),
        "server_peak_mb": round(server.peak / 2**20),
        "wall_s": round(wall, 1),
        "errors": sorted({r["error"] for r in results if r.get("error")}),
        "cpu": cpu_name(),
        "load_before": os.getloadavg()[0],
    }


def server_side(timings: Path) -> dict:
    """The server's own time for each slider answer: the Temperature page's T fragment reruns
    (one per slider move), from the lines the app writes with ``KDVIZ_APP_TIMINGS``."""
    lines = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    fragment = sorted(r["seconds"] for r in lines if r["part"] == "fragment:temperature.T")
    return {"fragment_runs": len(fragment),
            "fragment_median_ms": round(1000 * statistics.median(fragment)) if fragment else None,
            "fragment_slowest_ms": round(1000 * fragment[-1]) if fragment else None}


def markdown(s: dict, command: str) -> str:
    errors = "".join(f"\n  - `{e}`" for e in s["errors"]) or " none"
    return f"""{SECTION}

Command: `{command}` (the server: `{s['server_command']}`). CPU: {s['cpu']}, shared with other jobs
(1-minute load average {s['load_before']:.1f} when it started). One chromium (Debian's, via Playwright) holds
all {s['sessions']} sessions (one tab each, on the same 2 cores as the server), opened {s['stagger']} s apart
after one warm-up session (the teacher opening the link first; its first chart took {s['warm_up_first_chart_s']} s);
each opens Temperature, moves the slider, opens Compare and Home; one in {s['train_every']} then starts a
1-epoch teacher run on the 8x8 digits from Train (live).

| measured | value |
|---|---|
| sessions answered (chart drawn, slider answered) | {s['answered']} of {s['sessions']} |
| sessions that finished every step | {s['completed']} of {s['sessions']} |
| slider answer (each one-step move), median / slowest | {s['slider_median_s']} s / {s['slider_slowest_s']} s |
| the server's part of it: the T fragment's rerun ({s.get('fragment_runs')} runs), median / slowest | \
{s.get('fragment_median_ms')} ms / {s.get('fragment_slowest_ms')} ms |
| first chart on a fresh session, median / slowest | {s['first_chart_median_s']} s / {s['first_chart_slowest_s']} s |
| other pages, median / slowest | {s['page_median_s']} s / {s['page_slowest_s']} s |
| training runs completed (records saved) | {s['runs_completed']} of {s['runs_started']} ({s['records_saved']} records) |
| server memory, idle / peak (resident, process tree) | {s['server_idle_mb']} MB / {s['server_peak_mb']} MB |
| wall time | {s['wall_s']} s |
| CPU time used during the test: server / chromium and Playwright | {s['server_cpu_s']} s / {s['browser_cpu_s']} s |

Errors:{errors}

Each slider answer is timed in the browser, from the key press (one grid step) until the chart's numbers
change, so it includes the server's rerun, the websocket and chromium's redraw, all on the same 2 shared cores.
The server's part is the rerun of the Temperature page's T fragment, as the app itself times it (KDVIZ_APP_TIMINGS);
the rest of an answer is waiting for a core that the 30 tabs' chromium keeps busy (its CPU time above).
"""


def write_section(text: str) -> None:
    """Replace this script's block of BENCHMARKS.md (between its markers) with ``text``."""
    replace_section(REPO / "BENCHMARKS.md", START, END, f"{START}\n{text.rstrip()}\n{END}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--train-every", type=int, default=3, help="every k-th session starts a run (0: none)")
    parser.add_argument("--session-timeout", type=float, default=240.0, help="seconds per step of a session")
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between session starts")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = parser.parse_args()
    if not 1 <= args.sessions <= 100:
        parser.error("--sessions must be in [1, 100]")
    if not Path(CHROMIUM).exists():
        print(f"load_test: {CHROMIUM} not found (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kdviz-load-") as tmp:
        runs_dir = Path(tmp) / "runs"
        timings = Path(tmp) / "timings.jsonl"  # the server's own run times (app/timings.py)
        server = Server(runs_dir, Path(tmp) / "streamlit.log", env={"KDVIZ_APP_TIMINGS": str(timings)})
        try:
            server.wait_ready()
            start = time.perf_counter()
            server_cpu = cpu_seconds(descendants(server.process.pid))
            results, browser_cpu = asyncio.run(classroom(server.url, server.process.pid, args.sessions,
                                                         args.train_every, args.session_timeout, args.stagger))
            wall = time.perf_counter() - start
            server_cpu = cpu_seconds(descendants(server.process.pid)) - server_cpu
            time.sleep(1.0)
        finally:
            server.close()
        summary = summarise(results, server, runs_dir, wall, args)
        summary.update(server_side(timings))
        summary.update(server_cpu_s=round(server_cpu, 1), browser_cpu_s=round(browser_cpu, 1))
        summary.update(server_command=" ".join(["python", *server.command[1:]]).replace(str(server.port), "PORT"),
                       stagger=args.stagger, train_every=args.train_every)
    print(json.dumps({"summary": summary, "sessions": results}, indent=1), flush=True)
    if args.write:
        env = " ".join(f"{k}={os.environ[k]}" for k in ("KDVIZ_DATA", "KDVIZ_CACHE") if os.environ.get(k))
        command = (f"{env + ' ' if env else ''}.venv/bin/python benchmarks/load_test.py --sessions {args.sessions} "
                   f"--train-every {args.train_every} --session-timeout {args.session_timeout:g} --write")
        write_section(markdown(summary, command))
    return 0 if summary["answered"] == args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
