"""Load test: a classroom of browser sessions against one kdviz server (not part of the test suite).

Starts the app the README's way, bound to 127.0.0.1 only,
``.venv/bin/python -m streamlit run app/streamlit_app.py --server.headless true --server.port PORT``,
then opens N sessions (default 30) in Debian's chromium through Playwright, ``--stagger`` s apart
(a classroom opening a shared link), after one warm-up session (the teacher opening it first). Each:

1. opens the Temperature page and waits for the chart ("page answered");
2. moves the temperature slider twice, one grid step each, and times each answer inside the page:
   from the key press reaching the page until the chart shows the new distribution (the bars'
   numbers change);
3. opens two other pages (Compare, then Home) from the sidebar's links, as a student does (the same
   session switches page), each timed until its script has run;
4. one session in three (``--train-every``) then opens a link to Train (live) with a short run in it
   (a teacher on the 8x8 digits, 1 epoch), presses Start and waits until the page says it finished.

Every session stays connected until the last one is done, so the server holds all N at once (its
own count, from Streamlit's ``/_stcore/metrics``, is reported). Everything is bounded: N sessions,
``--session-timeout`` seconds per step, one browser. The server's memory (its process tree's
proportional set size: shared pages counted once) is sampled every 0.2 s; the server's own time per slider answer (the Temperature page's T
fragment) and the CPU time of that rerun's thread come from the app's ``KDVIZ_APP_TIMINGS`` lines.

On a 2-core machine the N tabs run on the server's cores, and their drawing, not the server, is most
of the CPU. What the test does to keep the client's share honest but small, each measured (BENCHMARKS.md):

- one browser context holds every tab (``--tab-per-context`` gives each its own): the app's JavaScript
  (Plotly's 4.7 MB bundle among it) comes from one (in-memory) HTTP cache after the first tab, as on a
  student's own machine after the first visit; each tab is still its own renderer and its own
  Streamlit session (its own websocket and session state; the server's session count says so);
- pages ask for reduced motion (``--motion`` does not): Streamlit's running indicator stops animating;
- the other pages are opened from the sidebar, not by loading a new document: a new document would
  parse and start the whole app again and open a new session (as the earlier version of this test did);
- every wait runs inside the page on the page's own timers (one Playwright call per wait), not as a
  Playwright call every 50-200 ms per tab.

``--light-sessions`` is a second, clearly separate mode: all sessions but one are protocol-level
clients (:class:`ProtocolSession`: Streamlit's websocket protocol, ``streamlit.proto`` BackMsg and
ForwardMsg, drawing nothing) doing the same steps, and the middle session is one real chromium tab,
the student whose answers are measured (``--browser-moves`` slider moves). It measures what a student
sees when each student's browser runs on their own computer, as in a classroom; the all-browser mode
stays the default. The result is printed as JSON and, with ``--write``, replaces this script's block
of BENCHMARKS.md between its markers (one block per mode, with the command and the CPU).

    .venv/bin/python benchmarks/load_test.py --sessions 30 --write
    .venv/bin/python benchmarks/load_test.py --sessions 30 --light-sessions --write
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
LIGHT_SECTION = "### The same classroom with one browser: what a student sees (`--light-sessions`)"
LIGHT_START, LIGHT_END = "<!-- load-test-light:start -->", "<!-- load-test-light:end -->"


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


def process_memory_bytes(pid: int) -> int:
    """One process's memory: its proportional set size (each shared page divided among the processes
    that share it, so a fork server and the run processes forked from it do not count torch's pages
    once each), or, where /proc has no smaps_rollup, its resident set."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_bytes(pid: int) -> int:
    """Memory of ``pid`` and all its descendants (:func:`process_memory_bytes` each)."""
    return sum(process_memory_bytes(p) for p in descendants(pid))


class Server:
    """The app in a subprocess on 127.0.0.1, with a sampler of its memory (every 0.2 s) and of the
    number of sessions it holds (Streamlit's ``/_stcore/metrics``, every second)."""

    def __init__(self, runs_dir: Path, log: Path, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        python = REPO / ".venv" / "bin" / "python"
        self.command = [str(python if python.exists() else sys.executable), "-m", "streamlit", "run",
                        "app/streamlit_app.py", "--server.headless", "true", "--server.port", str(self.port),
                        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
        env = {**os.environ, "KDVIZ_RUNS": str(runs_dir), **(env or {})}
        self.log = open(log, "w+")
        self.process = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.peak = self.idle = self.peak_sessions = 0
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
            time.sleep(0.1)
        self.log.seek(0)
        raise RuntimeError(f"streamlit did not start:\n{self.log.read()[-3000:]}")

    def active_sessions(self) -> int | None:
        """The sessions the server holds now, as Streamlit counts them."""
        try:
            text = urllib.request.urlopen(f"{self.url}/_stcore/metrics?families=active_sessions", timeout=5).read()
        except OSError:
            return None
        found = re.search(r"^active_sessions(?:\{[^}]*\})?\s+(\d+)", text.decode(), re.MULTILINE)
        return int(found.group(1)) if found else None

    def _sample(self) -> None:
        ticks = 0
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss_bytes(self.process.pid))
            ticks += 1
            if ticks % 5 == 0:
                self.peak_sessions = max(self.peak_sessions, self.active_sessions() or 0)

    def close(self) -> None:
        self._stop.set()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --------------------------------------------------------------------------- one session
# Every wait runs inside the page (one call per wait, the page's own timers), not as a Playwright call
# every 50-200 ms from here: 30 tabs polled that way kept Playwright's driver and the tabs busy.
WATCH_SLIDER_JS = """() => {
  const bars = () => { const p = document.querySelector('.js-plotly-plot');
                       return p && p.data && p.data[1] ? JSON.stringify(Array.from(p.data[1].y)) : null; };
  const w = window.__kdvizSlider = {before: bars(), down: null, done: null};
  document.addEventListener('keydown', () => { if (w.down === null) w.down = performance.now(); },
                            {capture: true, once: true});
  const tick = () => { const now = bars();
    if (w.down !== null && now && now !== w.before) w.done = performance.now(); else setTimeout(tick, 25); };
  tick();
}"""
SLIDER_ANSWERED_JS = "() => window.__kdvizSlider.done !== null"
SLIDER_SECONDS_JS = "() => (window.__kdvizSlider.done - window.__kdvizSlider.down) / 1000"
# The page's script has run: Streamlit marks its root with the script's state ("initial", "running",
# "notRunning", ...); answered = the first time it is "notRunning" after a run and stays so for 0.6 s
# (a page may rerun itself once, e.g. to write its URL). Seconds from the navigation's start.
SETTLED_JS = """() => new Promise(resolve => {
  let quiet = 0, answered = null;
  const tick = () => { const app = document.querySelector('[data-testid="stApp"]');
    const state = app && app.getAttribute('data-test-script-state');
    if (state === 'notRunning') { answered = answered ?? performance.now(); if (++quiet >= 3) return resolve(answered / 1000); }
    else { quiet = 0; answered = null; }
    setTimeout(tick, 200); };
  tick(); })"""
# A page opened from the sidebar's links, as a student does: the same session switches page (no new
# document, no new websocket). Answered once the address names the page, the page's script has run
# (its state changed since the click, or the page's title is the new page's: under load the app may draw
# "running" and "finished" in one go, so the state alone can miss a run) and its state is "notRunning"
# for 0.3 s. Seconds from the click's arrival in the page.
WATCH_SWITCH_JS = """(path) => {
  const state = () => { const app = document.querySelector('[data-testid="stApp"]');
                        return app && app.getAttribute('data-test-script-state'); };
  const title = () => { const h = document.querySelector('[data-testid="stMain"] h1'); return h && h.textContent; };
  const w = window.__kdvizSwitch = {start: performance.now(), before: title(), ran: false, answered: null,
                                    seconds: null};
  // the app's root may be drawn anew on a page switch: watch the whole document for the attribute
  const observer = new MutationObserver(() => { if (state() !== 'notRunning') w.ran = true; });
  observer.observe(document.documentElement, {attributes: true, subtree: true, childList: true,
                                              attributeFilter: ['data-test-script-state']});
  document.addEventListener('click', () => { w.start = performance.now(); }, {capture: true, once: true});
  let quiet = 0;
  const tick = () => {
    const there = location.pathname.replace(/\\/$/, '').endsWith(path);
    const now = title();
    if (state() !== 'notRunning' || (now && now !== w.before)) w.ran = true;
    if (w.ran && there && state() === 'notRunning') {
      w.answered = w.answered ?? performance.now();
      if (++quiet >= 3) { w.seconds = (w.answered - w.start) / 1000; observer.disconnect(); return; }
    } else { quiet = 0; w.answered = null; }
    setTimeout(tick, 100); };
  tick();
}"""
SWITCHED_JS = "() => window.__kdvizSwitch.seconds !== null"
PAGE_STATE_JS = """() => { const app = document.querySelector('[data-testid="stApp"]');
  return {path: location.pathname, script: app && app.getAttribute('data-test-script-state'),
          connection: app && app.getAttribute('data-test-connection-state'),
          switch: window.__kdvizSwitch ? {ran: window.__kdvizSwitch.ran} : null}; }"""
METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


class TabCost:
    """The tab's main-thread time (Chrome DevTools' Performance metrics, seconds), step by step: where
    a tab's CPU goes (all tasks; of them JavaScript, layout, style)."""

    def __init__(self, cdp):
        self.cdp, self.last, self.steps = cdp, None, {}

    async def read(self) -> dict:
        got = (await self.cdp.send("Performance.getMetrics"))["metrics"]
        return {m["name"]: m["value"] for m in got if m["name"] in METRICS}

    async def mark(self, step: str) -> None:
        now = await self.read()
        last = self.last or dict.fromkeys(METRICS, 0.0)
        # a navigation may start the counters again: then the new value is the step's own
        self.steps[step] = {k: round(now[k] - last[k] if now[k] >= last[k] else now[k], 3) for k in METRICS}
        self.last = now


def progress(index: int, step: str) -> None:
    """One line on stderr per step of a session (where a stuck session stopped)."""
    print(f"[{time.strftime('%H:%M:%S')}] session {index}: {step}", file=sys.stderr, flush=True)


async def session(index: int, context, url: str, train: bool, timeout: float, tabs: list | None = None,
                  moves: int = 2) -> dict:
    """One Streamlit session: its own page (tab), so its own websocket and session state. With ``tabs``
    the tab is left open there (its session connected, for the caller to close), else closed. The
    slider moves ``moves`` times one grid step: up five, down five, and so on."""
    out: dict = {"session": index, "train": train}
    page = await context.new_page()
    if tabs is not None:
        tabs.append(page)
    page.set_default_timeout(timeout * 1000)
    ms = timeout * 1000
    try:
        cdp = await context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        cost = TabCost(cdp)
        await cost.mark("start")
        start = time.perf_counter()
        await page.goto(f"{url}/temperature", timeout=ms)
        await page.wait_for_selector(".js-plotly-plot", timeout=ms)
        await page.wait_for_selector("[data-testid='stSlider'] input[type='range']", timeout=ms)
        out["first_chart_s"] = time.perf_counter() - start
        progress(index, "first chart")
        await page.evaluate(SETTLED_JS)  # the whole first run drawn before the slider moves
        await cost.mark("temperature")
        thumb = page.locator("[data-testid='stSlider'] input[type='range']").first
        await thumb.focus()
        out["slider_moves_s"] = []
        for move in range(moves):  # moves of one grid step each, each timed in the page until the chart shows it
            await page.evaluate(WATCH_SLIDER_JS)
            await thumb.press("ArrowRight" if move // 5 % 2 == 0 else "ArrowLeft")
            await page.wait_for_function(SLIDER_ANSWERED_JS, polling=100, timeout=ms)
            out["slider_moves_s"].append(await page.evaluate(SLIDER_SECONDS_JS))
        out["slider_s"] = max(out["slider_moves_s"])
        progress(index, "slider answered")
        await page.evaluate(SETTLED_JS)
        await cost.mark("slider")
        out["pages_s"] = []
        nav = page.get_by_test_id("stSidebarNav")
        for name, path in (("Compare", "/compare"), ("Home", "")):
            await page.evaluate(WATCH_SWITCH_JS, path)
            await nav.get_by_role("link", name=name, exact=True).click(timeout=ms)
            await page.wait_for_function(SWITCHED_JS, polling=100, timeout=ms)
            out["pages_s"].append(await page.evaluate("() => window.__kdvizSwitch.seconds"))
            await cost.mark(name.lower())
            progress(index, name)
        if train:
            t = time.perf_counter()
            await page.goto(f"{url}/train?mode=teacher&dataset=digits&student=mlp-30&epochs=1&batch=64", timeout=ms)
            await page.get_by_role("button", name="Start").click(timeout=ms)
            progress(index, "run started")
            await page.get_by_text(re.compile(r"finished: test accuracy")).wait_for(timeout=ms)
            out["run_s"] = time.perf_counter() - t
            out["run_completed"] = True
            await cost.mark("train")
        out["tab_cost_s"] = {k: v for k, v in cost.steps.items() if k != "start"}
        out["ok"] = True
    except Exception as error:  # noqa: BLE001 - a failed session is a result, not a crash
        out["ok"] = False
        out["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        try:  # where the page was: its address, the script's and the connection's state
            out["error_page"] = await asyncio.wait_for(page.evaluate(PAGE_STATE_JS), 10)
        except Exception:  # noqa: BLE001
            pass
    progress(index, "done" if out["ok"] else f"{out['error']} {out.get('error_page', '')}")
    if tabs is None:
        await page.close()
    return out


# --------------------------------------------------------------------------- a session without a browser
class ProtocolSession:
    """One Streamlit session spoken to over its websocket (``/_stcore/stream``) in Streamlit's own
    protocol (``streamlit.proto``: BackMsg up, ForwardMsg down), as the browser's app would, without
    drawing anything: for the ``--light-sessions`` mode, where it stands in for a student's browser
    to load the server. A run is answered when the server sends ``script_finished``."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url, timeout
        self.ws = None
        self.elements: dict[str, object] = {}  # this run's widgets by type (the last of each)
        self.auto_rerun: tuple[float, str] | None = None  # (interval, fragment id) of a fragment on a timer
        self.charts = 0  # Plotly charts in the last run's answer

    async def __aenter__(self):
        import websockets
        self.ws = await websockets.connect(self.url.replace("http", "ws", 1) + "/_stcore/stream",
                                           subprotocols=["streamlit"], origin=self.url, max_size=None)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def run(self, page: str, query: str = "", fragment_id: str = "", widgets=(), auto: bool = False,
                  seen: bytes | None = None) -> tuple[float, bool]:
        """Ask for a run (of ``page``, or of one fragment) and wait for its end. Returns the seconds it
        took and whether any message of it contained ``seen``."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        back = BackMsg()
        rerun = back.rerun_script
        rerun.query_string, rerun.page_name, rerun.fragment_id, rerun.is_auto_rerun = query, page, fragment_id, auto
        rerun.context_info.timezone = "UTC"
        for widget in widgets:
            rerun.widget_states.widgets.append(widget)
        start = time.perf_counter()
        await self.ws.send(back.SerializeToString())
        found, self.charts = False, 0
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), self.timeout)
            found = found or (seen is not None and seen in raw)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                self.elements[element.WhichOneof("type")] = (element, msg.delta.fragment_id)
                self.charts += element.WhichOneof("type") == "plotly_chart"
                if element.WhichOneof("type") == "button":
                    self.elements[f"button:{element.button.label}"] = (element, msg.delta.fragment_id)
            elif kind == "auto_rerun":
                self.auto_rerun = (msg.auto_rerun.interval, msg.auto_rerun.fragment_id)
            elif kind == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return time.perf_counter() - start, found


FINISHED = b"finished: test accuracy"  # what Train (live) says when a run has finished


def slider_state(element, step: int):
    """The select-slider's state ``step`` grid points from its value, as the browser would send it."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    options, value = list(element.slider.options), element.slider.raw_value[0]
    state = WidgetState(id=element.slider.id)
    state.string_array_value.data.append(options[max(0, min(len(options) - 1, options.index(value) + step))])
    return state


async def light_session(index: int, url: str, train: bool, timeout: float, hold: asyncio.Event,
                        finished: asyncio.Future) -> dict:
    """The steps of :func:`session` in Streamlit's protocol (no browser): Temperature, two slider moves
    (each a rerun of the page's T fragment with the slider's new value), Compare, Home, and one in three
    a training run started from Train (live), its live view rerun on the fragment's own timer until the
    run has finished. Times are the server's answers as seen on the websocket (no drawing)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    out: dict = {"session": index, "train": train, "light": True}
    try:
        async with ProtocolSession(url, timeout) as client:
            out["first_chart_s"], _ = await client.run("temperature")
            element, fragment = client.elements["slider"]
            out["slider_moves_s"] = []
            for step in (1, 2):
                seconds, _ = await client.run("temperature", fragment_id=fragment,
                                              widgets=[slider_state(element, step)])
                if not client.charts:
                    raise RuntimeError("the slider's rerun sent no chart")
                out["slider_moves_s"].append(seconds)
            out["slider_s"] = max(out["slider_moves_s"])
            out["pages_s"] = [(await client.run(page))[0] for page in ("compare", "")]
            progress(index, "light session: slider and pages answered")
            if train:
                t = time.perf_counter()
                query = "mode=teacher&dataset=digits&student=mlp-30&epochs=1&batch=64"
                await client.run("train", query=query)
                start, _ = client.elements["button:Start"]
                client.auto_rerun = None
                _, done = await client.run("train", query=query, seen=FINISHED,
                                           widgets=[WidgetState(id=start.button.id, trigger_value=True)])
                while not done:
                    if time.perf_counter() - t > timeout:
                        raise TimeoutError("the run did not finish")
                    interval, fragment = client.auto_rerun or (1.0, "")
                    await asyncio.sleep(interval)
                    try:  # the live view's timer, as the browser runs it (or the whole page, without one)
                        _, done = await asyncio.wait_for(client.run("train", query=query, fragment_id=fragment,
                                                                    auto=bool(fragment), seen=FINISHED), 60)
                    except asyncio.TimeoutError:  # no answer to that rerun: ask for the whole page
                        client.auto_rerun = None
                        _, done = await client.run("train", query=query, seen=FINISHED)
                out["run_s"], out["run_completed"] = time.perf_counter() - t, True
            out["ok"] = True
            progress(index, "light session: done")
            finished.set_result(out)
            await hold.wait()  # connected until every session is done
    except Exception as error:  # noqa: BLE001 - a failed session is a result, not a crash
        out["ok"] = False
        out["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
        progress(index, out["error"])
    if not finished.done():
        finished.set_result(out)
    return out


def process_kind(pid: int) -> str:
    """What a process under this script is: chromium's browser, renderer, GPU or utility process,
    Playwright's driver (node), or other."""
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            words = f.read().replace("\0", " ").split()  # chromium rewrites its command line with spaces
    except OSError:
        return "gone"
    kind = next((w.split("=", 1)[1] for w in words if w.startswith("--type=")), None)
    if kind in ("renderer", "zygote"):  # the zygote holds the time of renderers that have exited
        return "renderers"
    if kind == "gpu-process":
        return "gpu"
    if kind is not None:
        return "browser"  # utility processes: network, storage, audio
    if words and "chrom" in words[0]:
        return "browser"
    if words and "node" in Path(words[0]).name:
        return "playwright driver"
    return "other"


def client_cpu(server_pid: int) -> dict:
    """CPU seconds of this script's descendants (the browser and Playwright), by kind, not the server."""
    server = set(descendants(server_pid))
    by_kind: dict[str, float] = {}
    for pid in descendants(os.getpid()):
        if pid in server or pid == os.getpid():
            continue
        kind = process_kind(pid)
        by_kind[kind] = by_kind.get(kind, 0.0) + cpu_seconds([pid])
    own = os.times()
    by_kind["this script (Playwright's client, protocol clients)"] = own.user + own.system
    return {k: round(v, 1) for k, v in sorted(by_kind.items())}


async def classroom(url: str, server_pid: int, sessions: int, train_every: int, timeout: float,
                    stagger: float, shared_cache: bool = True, reduced_motion: bool = True,
                    light: bool = False, browser_moves: int = 10) -> tuple[list[dict], dict]:
    """The sessions, opened ``stagger`` s apart, all held until the last is done. With ``light``, every
    session but one (the middle one, which moves its slider ``browser_moves`` times) is a
    :class:`ProtocolSession` instead of a browser tab."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        options = {"viewport": {"width": 1280, "height": 900},
                   "reduced_motion": "reduce" if reduced_motion else "no-preference"}
        contexts = [await browser.new_context(**options)]
        try:
            # the teacher opens the link first (as in class): the server's caches warm, not counted
            warm = await session(-1, contexts[0], url, False, timeout)
            tabs: list = []  # every tab stays open (its session connected) until the last session is done
            hold = asyncio.Event()  # the light sessions stay connected until then too
            loop = asyncio.get_running_loop()
            finished = [loop.create_future() for _ in range(sessions)]
            in_browser = sessions // 2 if light else None

            async def one(i):
                await asyncio.sleep(i * stagger)
                train = train_every > 0 and i % train_every == 0
                if light and i != in_browser:
                    return await light_session(i, url, train, timeout, hold, finished[i])
                if shared_cache:
                    context = contexts[0]
                else:
                    context = await browser.new_context(**options)
                    contexts.append(context)
                try:
                    result = await asyncio.wait_for(session(i, context, url, train, timeout, tabs,
                                                            browser_moves if light else 2), timeout * 3)
                except asyncio.TimeoutError:
                    result = {"session": i, "ok": False, "error": "session over its time bound"}
                finished[i].set_result(result)
                return result

            tasks = [asyncio.ensure_future(one(i)) for i in range(sessions)]
            await asyncio.wait(finished, timeout=sessions * stagger + timeout * 4)
            cpu = client_cpu(server_pid)  # before any tab closes
            hold.set()
            for task in tasks:
                if not task.done():
                    task.cancel()
            results = [warm, *[f.result() if f.done() else {"session": i, "ok": False, "error": "no answer in time"}
                               for i, f in enumerate(finished)]]
            await asyncio.gather(*tasks, return_exceptions=True)
            for page in tabs:
                await page.close()
            return results, cpu
        finally:
            for context in contexts:
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


def _median(values, scale: float = 1.0, digits: int = 2):
    values = list(values)
    if not values:
        return None
    value = round(scale * statistics.median(values), digits)
    return int(value) if digits == 0 else value


def summarise(results: list[dict], server: Server, runs_dir: Path, wall: float, args) -> dict:
    warm, results = results[0], results[1:]
    tabs = [r for r in results if not r.get("light")]  # sessions in a browser tab
    light = [r for r in results if r.get("light")]   # --light-sessions: protocol-level sessions
    slider = sorted(t for r in tabs for t in r.get("slider_moves_s", []) if "slider_s" in r)
    first = sorted(r["first_chart_s"] for r in tabs if "first_chart_s" in r)
    pages = sorted(t for r in tabs for t in r.get("pages_s", []))
    light_slider = sorted(t for r in light for t in r.get("slider_moves_s", []) if "slider_s" in r)
    light_first = sorted(r["first_chart_s"] for r in light if "first_chart_s" in r)
    records = [json.loads(p.read_text()) for p in runs_dir.glob("*/record.json")]
    # where one tab's time goes: the warm-up session's tab, alone in the browser (with 30 tabs, tabs of
    # one site share renderer processes, whose counters then mix the tabs)
    tab_cost = {step: {"task_s": round(c["TaskDuration"], 2), "script_s": round(c["ScriptDuration"], 2)}
                for step, c in warm.get("tab_cost_s", {}).items()}
    return {
        "sessions": args.sessions,
        "answered": sum(1 for r in results if "slider_s" in r),
        "completed": sum(1 for r in results if r.get("ok")),
        "slider_median_s": round(statistics.median(slider), 2) if slider else None,
        "slider_slowest_s": round(slider[-1], 2) if slider else None,
        "browser_sessions": len(tabs),
        "slider_moves": len(slider),
        "light_slider_median_s": _median(light_slider),
        "light_slider_slowest_s": round(light_slider[-1], 2) if light_slider else None,
        "light_first_median_s": _median(light_first),
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
        "server_peak_sessions": server.peak_sessions,
        "tab_cost_median": tab_cost,
        "wall_s": round(wall, 1),
        "errors": sorted({r["error"] for r in results if r.get("error")}),
        "cpu": cpu_name(),
        "load_before": os.getloadavg()[0],
    }


def server_side(timings: Path) -> dict:
    """The server's own time for each slider answer: the Temperature page's T fragment reruns
    (one per slider move), from the lines the app writes with ``KDVIZ_APP_TIMINGS``: wall time, and
    the CPU time of the rerun's own thread (the rest of its wall time it waited for a core or the GIL)."""
    lines = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    fragment = sorted((r for r in lines if r["part"] == "fragment:temperature.T"), key=lambda r: r["seconds"])
    slowest = fragment[-1] if fragment else {}
    parts: dict[str, dict] = {}
    for part in sorted({r["part"] for r in lines}):
        runs = [r for r in lines if r["part"] == part]
        cpu = [r["cpu"] for r in runs if "cpu" in r]  # (the warm-up's line has none)
        parts[part] = {"runs": len(runs), "median_s": _median((r["seconds"] for r in runs), 1, 3),
                       "median_cpu_s": _median(cpu, 1, 3), "total_cpu_s": round(sum(cpu), 1) if cpu else None}
    return {"server_parts": parts,
            "fragment_runs": len(fragment),
            "fragment_sessions": len({r.get("session") for r in fragment}),
            "page_sessions": len({r.get("session") for r in lines if r["part"].startswith("page:")}),
            "fragment_median_ms": _median((r["seconds"] for r in fragment), 1000, 0),
            "fragment_slowest_ms": round(1000 * slowest["seconds"]) if fragment else None,
            "fragment_cpu_median_ms": _median((r["cpu"] for r in fragment if "cpu" in r), 1000, 0),
            "fragment_slowest_cpu_ms": round(1000 * slowest.get("cpu", 0.0)) if fragment else None}


def markdown(s: dict, command: str) -> str:
    errors = "".join(f"\n  - `{e}`" for e in s["errors"]) or " none"
    cost = s["tab_cost_median"]
    cost_rows = "".join(f"\n| {step} | {c['task_s']} s | {c['script_s']} s |" for step, c in cost.items()
                        if c["task_s"] is not None)
    client = ", ".join(f"{k} {v} s" for k, v in s["browser_cpu_by_kind"].items())
    parts = "".join(f"\n| {name} | {q['runs']} | {q['median_s']} s | "
                    + (f"{q['median_cpu_s']} s | {q['total_cpu_s']} s |" if q["median_cpu_s"] is not None else "- | - |")
                    for name, q in s.get("server_parts", {}).items())
    if s["light"]:
        who = (f"{s['sessions'] - 1} of the {s['sessions']} sessions are **protocol-level clients** (no browser: each "
               f"speaks Streamlit's websocket protocol, `streamlit.proto` BackMsg/ForwardMsg, and draws nothing), the "
               f"middle one is a real chromium tab, the student whose answers are measured; it moves the slider "
               f"{s['slider_moves']} times (five steps up, five down). Every session opens Temperature, moves the "
               f"slider, opens Compare and Home; one in {s['train_every']} then starts a 1-epoch teacher run on the "
               f"8x8 digits from Train (live) (a protocol client reruns its live view on the fragment's timer as the "
               f"browser would).")
        slider_row = (f"| slider answer in the browser (the one tab, {s['slider_moves']} one-step moves), median / slowest | "
                      f"{s['slider_median_s']} s / {s['slider_slowest_s']} s |\n"
                      f"| slider answer of the protocol clients (server's answer on the websocket, no drawing), "
                      f"median / slowest | {s['light_slider_median_s']} s / {s['light_slider_slowest_s']} s |")
        first_row = (f"| first chart in the browser / first page answered to a protocol client (median) | "
                     f"{s['first_chart_median_s']} s / {s['light_first_median_s']} s |")
        setup = f"the protocol clients and one chromium ({s['client_setup']})"
    else:
        who = (f"One chromium (Debian's, via Playwright) holds all {s['sessions']} sessions, one tab each, "
               f"{s['client_setup']}. Each opens Temperature, moves the slider twice, opens Compare and Home from the "
               f"sidebar (the same session, as a student clicks); one in {s['train_every']} then opens a link to Train "
               f"(live) with a short run in it (a 1-epoch teacher on the 8x8 digits) and presses Start.")
        slider_row = (f"| slider answer in the browser (each one-step move), median / slowest | "
                      f"{s['slider_median_s']} s / {s['slider_slowest_s']} s |")
        first_row = (f"| first chart on a fresh session, median / slowest | {s['first_chart_median_s']} s / "
                     f"{s['first_chart_slowest_s']} s |")
        setup = "chromium and Playwright"
    return f"""{s['section']}

Command: `{command}` (the server: `{s['server_command']}`). CPU: {s['cpu']} (a KVM guest, no AMX),
shared with other jobs (1-minute load average {s['load_before']:.1f} when it started; the two background trainings
paused by /work/notes/quiet.sh). Sessions opened {s['stagger']} s apart after one warm-up session in the browser
(the teacher opening the link first; its first chart took {s['warm_up_first_chart_s']} s), on the same 2 cores as
the server. {who} Every session stays connected until the last is done.

| measured | value |
|---|---|
| sessions answered (chart drawn, slider answered) | {s['answered']} of {s['sessions']} |
| sessions that finished every step | {s['completed']} of {s['sessions']} |
| sessions the server held at once (its own count, peak) | {s['server_peak_sessions']} |
{slider_row}
| the server's part of it: the T fragment's rerun ({s.get('fragment_runs')} runs from {s.get('fragment_sessions')} \
sessions), median / slowest | {s.get('fragment_median_ms')} ms / {s.get('fragment_slowest_ms')} ms |
| of which the rerun's own CPU time, median / in the slowest rerun | {s.get('fragment_cpu_median_ms')} ms / \
{s.get('fragment_slowest_cpu_ms')} ms |
{first_row}
| other pages in the browser, median / slowest | {s['page_median_s']} s / {s['page_slowest_s']} s |
| training runs completed (records saved) | {s['runs_completed']} of {s['runs_started']} ({s['records_saved']} records) |
| server memory, idle / peak (process tree, proportional set size) | {s['server_idle_mb']} MB / {s['server_peak_mb']} MB |
| wall time | {s['wall_s']} s |
| CPU time used during the test: server / {setup} | {s['server_cpu_s']} s / {s['browser_cpu_s']} s |
| the latter by process | {client} |

Where one tab's time goes: the warm-up session's tab, alone in the browser (the main thread of its renderer,
from Chrome DevTools' Performance metrics: all its tasks, and of them JavaScript):

| step | main thread | of it JavaScript |
|---|---:|---:|{cost_rows}

The server's script runs (KDVIZ_APP_TIMINGS: wall time, and CPU time of the run's own thread):

| part | runs | median wall | median CPU | total CPU |
|---|---:|---:|---:|---:|{parts}

Errors:{errors}

Each slider answer in the browser is timed inside the page, from the key press reaching the page (one grid step)
until the chart's numbers change: the server's rerun, the websocket and chromium's redraw, all on the same 2
shared cores. The server's part is the rerun of the Temperature page's T fragment, as the app itself times it
(KDVIZ_APP_TIMINGS), with the CPU time its own thread used: the rest of a rerun's time it waited for a core or
for Python's lock.
"""


def write_section(text: str, light: bool = False) -> None:
    """Replace this script's block of BENCHMARKS.md (between its markers) with ``text``."""
    start, end = (LIGHT_START, LIGHT_END) if light else (START, END)
    replace_section(REPO / "BENCHMARKS.md", start, end, f"{start}\n{text.rstrip()}\n{end}")


def client_setup(args) -> str:
    cache = ("each in a browser context of its own" if args.tab_per_context else
             "all in one browser context (one HTTP cache: the app's JavaScript is fetched once)")
    return f"{cache}, {'no' if args.motion else ''} reduced motion asked".replace(",  reduced", ", reduced")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--train-every", type=int, default=3, help="every k-th session starts a run (0: none)")
    parser.add_argument("--session-timeout", type=float, default=240.0, help="seconds per step of a session")
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between session starts")
    parser.add_argument("--tab-per-context", action="store_true",
                        help="each tab in a browser context of its own (no shared HTTP cache), as before")
    parser.add_argument("--motion", action="store_true", help="do not ask the pages for reduced motion")
    parser.add_argument("--light-sessions", action="store_true",
                        help="all sessions but one are protocol-level clients (no browser); one browser tab measures")
    parser.add_argument("--browser-moves", type=int, default=10,
                        help="with --light-sessions: slider moves of the one browser session")
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
                                                         args.train_every, args.session_timeout, args.stagger,
                                                         shared_cache=not args.tab_per_context,
                                                         reduced_motion=not args.motion,
                                                         light=args.light_sessions, browser_moves=args.browser_moves))
            wall = time.perf_counter() - start
            server_cpu = cpu_seconds(descendants(server.process.pid)) - server_cpu
            time.sleep(1.0)
        finally:
            server.close()
        summary = summarise(results, server, runs_dir, wall, args)
        summary.update(server_side(timings))
        summary.update(server_cpu_s=round(server_cpu, 1), browser_cpu_s=round(sum(browser_cpu.values()), 1),
                       browser_cpu_by_kind=browser_cpu, client_setup=client_setup(args))
        summary.update(server_command=" ".join(["python", *server.command[1:]]).replace(str(server.port), "PORT"),
                       stagger=args.stagger, train_every=args.train_every, light=args.light_sessions,
                       section=LIGHT_SECTION if args.light_sessions else SECTION)
    print(json.dumps({"summary": summary, "sessions": results}, indent=1), flush=True)
    if args.write:
        env = " ".join(f"{k}={os.environ[k]}" for k in ("KDVIZ_DATA", "KDVIZ_CACHE") if os.environ.get(k))
        command = (f"{env + ' ' if env else ''}.venv/bin/python benchmarks/load_test.py --sessions {args.sessions} "
                   f"--train-every {args.train_every} --session-timeout {args.session_timeout:g}"
                   f"{' --tab-per-context' if args.tab_per_context else ''}{' --motion' if args.motion else ''}"
                   f"{' --light-sessions' if args.light_sessions else ''} --write")
        write_section(markdown(summary, command), light=args.light_sessions)
    return 0 if summary["answered"] == args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
