"""The app in a real browser: start it as the README says, move the temperature slider,
see the bars change, check every page at 1400×1000 for broken words and overlapping labels, and
save a screenshot of every page to test-artifacts/.

Needs Debian's chromium (/usr/bin/chromium) and the playwright pip package (no
``playwright install``); skipped with the reason when either is missing.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
OWN_PAGES = {"", "temperature", "train", "compare"}  # part 1's pages: must show no error box

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("the playwright pip package is not installed", allow_module_level=True)

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
import app_speed  # noqa: E402 - benchmarks/app_speed.py: its A/B's switch is tested below
from test_app_first_view import FIRST_VIEWS  # noqa: E402 - each page's default charts

import load_test  # noqa: E402 - benchmarks/load_test.py: its protocol-level session drives a crowd below
from conftest import REAL_MNIST  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_paths() -> dict[str, str]:
    """Every page listed in app/navigation.py: url path -> title (home is "")."""
    source = (REPO / "app" / "navigation.py").read_text()
    pages = {"": "home"}
    for title, path in re.findall(r'st\.Page\([^)]*title="([^"]+)"[^)]*url_path="([^"]+)"', source):
        pages[path] = title
    return pages


SERVERS: dict[str, tuple[subprocess.Popen, Path]] = {}  # url -> the server's process and its log


def server_threads(url: str) -> str:
    """The end of the server's log after asking it for every thread's stack (app/streamlit_app.py
    registers faulthandler on SIGUSR1): what a page that never finishes is waiting for."""
    origin = "/".join(url.split("/", 3)[:3])  # http://127.0.0.1:PORT
    process, log = SERVERS.get(origin, (None, None))
    if process is None or process.poll() is not None:
        return "(the server is not running)"
    process.send_signal(signal.SIGUSR1)
    time.sleep(1.0)
    return log.read_text(errors="replace")[-6000:]


@contextmanager
def running_app(folder: Path, **env):
    """`python -m streamlit run app/streamlit_app.py --server.headless true --server.port N`, as in the
    README, on 127.0.0.1 with its runs (and log) in ``folder`` and ``env`` added; yields the URL once
    the server answers, and stops it at the end."""
    port = free_port()
    python = REPO / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), "-m", "streamlit", "run", "app/streamlit_app.py",
               "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]
    log = open(folder / "streamlit.log", "w+")
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "KDVIZ_RUNS": str(folder / "runs"), **env},
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    SERVERS[url] = (process, folder / "streamlit.log")
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().decode() == "ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                log.seek(0)
                pytest.fail(f"streamlit did not start:\n{log.read()[-3000:]}")
            time.sleep(0.05)  # a page opened "at once" is asked for within 0.05 s of the server's first answer
        yield url
    finally:
        SERVERS.pop(url, None)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app as the README starts it, with an empty runs folder."""
    with running_app(tmp_path_factory.mktemp("browser")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def settle(page, timeout: float = 40) -> None:
    """Wait until the script has finished running (no status widget for a moment)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout * 1000)
    deadline, quiet = time.time() + timeout, 0
    while time.time() < deadline and quiet < 3:
        running = page.query_selector("[data-testid='stStatusWidget']")
        spinner = page.query_selector("[data-testid='stSpinner']")
        quiet = 0 if (running or spinner) else quiet + 1
        time.sleep(0.4)


def settled(page, timeout: float = 240) -> None:
    """Wait until the script run has ended; a page that is still running when the checks start would
    pass them vacuously, so that is a failure, not a skip."""
    settle(page, timeout)
    deadline = time.time() + timeout
    while page.query_selector("[data-testid='stStatusWidget']") and time.time() < deadline:
        time.sleep(0.5)
    if page.query_selector("[data-testid='stStatusWidget']"):
        status = page.locator("[data-testid='stStatusWidget']").first.inner_text(timeout=2000)
        raise AssertionError(f"{page.url} still running after {timeout} s (status: {status!r}); the server's "
                             f"threads and log:\n{server_threads(page.url)}")


def bars(page, timeout: float = 30) -> list[float] | None:
    """The softmax(z/T) bars of the first Plotly chart, read from the DOM; while a redraw has the
    chart out of the page (a fragment's rerun replaces it), waits up to ``timeout`` s for it."""
    deadline = time.time() + timeout
    while True:
        values = page.evaluate("() => { const p = document.querySelector('.js-plotly-plot');"
                               " return p && p.data ? Array.from(p.data[1].y) : null; }")
        if values is not None or time.time() > deadline:
            return values
        time.sleep(0.1)


# Run in the page: what a lecturer would see as broken. Returns a list of short descriptions.
PROBLEMS_JS = r"""
() => {
  const out = [];
  const main = document.querySelector('[data-testid="stMain"]');
  const roots = [main, document.querySelector('[data-testid="stSidebar"]')].filter(Boolean);
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const name = el => (el.getAttribute('data-testid') || el.tagName.toLowerCase());
  // 0. an error box instead of the page
  for (const e of document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]'))
    out.push(`error box: ${e.innerText.slice(0, 160)}`);
  // 1. a word split over two lines ("what the tea|cher", "teache|r's")
  for (const root of roots) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const parent = node.parentElement;
      if (!parent || parent.closest('svg, .katex, code, pre, [data-testid="stDataFrame"], [data-testid="stSidebarNav"] span[aria-hidden]')) continue;
      if (!visible(parent)) continue;
      const re = /[^\s\-–—\/·,;:]{3,}/g;
      let m;
      while ((m = re.exec(node.data))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top / 4)));
        if (tops.size > 1) out.push(`word broken over two lines: "${m[0]}" in ${name(parent)}`);
      }
    }
  }
  // 2. text wider than its box
  const boxes = '[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"], [data-testid="stWidgetLabel"], '
    + '[data-testid="stMetricValue"], [data-testid="stMetricLabel"], [data-testid="stImageCaption"], .stButton button, '
    + '[data-testid="stPageLink"]';
  for (const root of roots) for (const el of root.querySelectorAll(boxes)) {
    if (!visible(el) || el.closest('[data-testid="stExpander"] details:not([open])')) continue;
    if (el.querySelector('.katex-display')) continue;  // checked on their own below
    if (el.scrollWidth > el.clientWidth + 2) out.push(`text wider than its box (${el.scrollWidth} > ${el.clientWidth} px) in ${name(el)}: "${el.innerText.slice(0, 40)}"`);
  }
  for (const root of roots) for (const f of root.querySelectorAll('.katex-display')) {
    if (visible(f) && f.scrollWidth > f.clientWidth + 2) out.push(`formula wider than the page (${f.scrollWidth} > ${f.clientWidth} px)`);
  }
  // 3. a chart wider than the page (clipped)
  const right = main.getBoundingClientRect().right;
  for (const svg of document.querySelectorAll('.js-plotly-plot .main-svg')) {
    const r = svg.getBoundingClientRect();
    if (r.right > right + 2) out.push(`chart clipped at the right edge (${Math.round(r.right)} > ${Math.round(right)})`);
  }
  // 4. labels drawn over each other inside a chart
  const overlap = (a, b) => {
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    return w > 2 && h > 2;
  };
  const rects = (plot, sel) => Array.from(plot.querySelectorAll(sel)).filter(e => visible(e) && (e.textContent || '').trim() !== '' || e.matches('.legend .bg, .updatemenu-button, .slider-rail'))
    .map(e => ({el: e, r: e.getBoundingClientRect(), t: (e.textContent || e.getAttribute('class') || '').trim().slice(0, 30)}))
    .filter(x => x.r.width > 0 && x.r.height > 0);
  document.querySelectorAll('.js-plotly-plot').forEach((plot, k) => {
    const key = (plot.closest('[class*="st-key-"]') || {className: ''}).className.match(/st-key-([\w-]+)/);
    const where = `chart ${key ? key[1] : k}`;
    const groups = {
      legend: rects(plot, '.legend .bg'),
      xtitle: rects(plot, '[class*="g-x"][class*="title"] text'),
      ytitle: rects(plot, '[class*="g-y"][class*="title"] text'),
      title: rects(plot, '.g-gtitle text'),
      note: rects(plot, '.annotation-text-g text'),
      button: rects(plot, '.updatemenu-button'),
      slider: rects(plot, '.slider-group text, .slider-rail'),
      xtick: rects(plot, '.xtick text'),
      ytick: rects(plot, '.ytick text'),
    };
    const pairs = [['legend', 'xtitle'], ['legend', 'ytitle'], ['legend', 'title'], ['legend', 'note'], ['legend', 'xtick'],
                   ['legend', 'button'], ['legend', 'slider'], ['button', 'slider'], ['button', 'xtitle'], ['button', 'xtick'],
                   ['slider', 'xtitle'], ['slider', 'xtick'], ['title', 'note'], ['note', 'note'], ['xtitle', 'xtick'],
                   ['ytitle', 'ytick'], ['xtick', 'xtick'], ['ytick', 'ytick'], ['xtitle', 'note'], ['ytitle', 'note']];
    const edge = plot.querySelector('.main-svg').getBoundingClientRect();
    for (const t of plot.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (r.width > 0 && t.textContent.trim() && (r.right > edge.right + 1 || r.left < edge.left - 1 || r.top < edge.top - 1 || r.bottom > edge.bottom + 1))
        out.push(`${where}: text cut off at the chart's edge: "${t.textContent.trim().slice(0, 30)}"`);
    }
    const names = Array.from(plot.querySelectorAll('.legend .traces .legendtext')).map(e => e.textContent.trim()).filter(Boolean);
    for (const n of new Set(names.filter((n, i) => names.indexOf(n) !== i))) out.push(`${where}: legend entry "${n}" twice`);
    for (const [a, b] of pairs) for (const x of groups[a]) for (const y of groups[b]) {
      if (x.el === y.el || (a === b && x.el.compareDocumentPosition(y.el) & Node.DOCUMENT_POSITION_PRECEDING)) continue;
      if (overlap(x.r, y.r)) out.push(`${where}: ${a} "${x.t}" overlaps ${b} "${y.t}"`);
    }
  });
  return Array.from(new Set(out));
}
"""


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 80, 7000))})
    time.sleep(0.5)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    return path


def errors(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('[data-testid=\"stException\"], "
                         "[data-testid=\"stAlertContentError\"]')).map(e => e.innerText.slice(0, 300))")


def test_temperature_slider_moves_the_bars_and_every_page_renders(server, browser):
    for old in ARTIFACTS.glob("failed-*.png"):
        old.unlink()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # A deep link is the very first visit: a shared link must open the page on a fresh server.
    page.goto(f"{server}/temperature")
    settle(page, 60)
    try:
        page.wait_for_selector("[data-testid='stSlider'] input[type='range']", timeout=90_000)
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)
    except Exception:
        screenshot(page, "failed-temperature")
        raise
    before = bars(page)
    assert sum(before) == pytest.approx(1, abs=1e-3)
    thumb = page.locator("[data-testid='stSlider'] input[type='range']").first
    thumb.focus()
    for _ in range(8):  # eight grid steps to the right: T from 1 to 5
        thumb.press("ArrowRight")
    deadline = time.time() + 30
    after = before
    while time.time() < deadline and after == before:
        time.sleep(0.5)
        try:
            after = bars(page)
        except Exception:  # noqa: BLE001 - the chart is being redrawn
            pass
    assert after != before, "moving the temperature slider did not change the bars"
    assert max(after) < max(before)  # a higher temperature is softer
    assert "T=" in page.url or "T%3D" in page.url  # the page's state is in the URL

    failures, layout = {}, {}
    for path, title in page_paths().items():
        page.goto(f"{server}/{path}")
        settled(page)
        page.wait_for_timeout(800)  # let Plotly finish its layout
        name = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        problems = page.evaluate(PROBLEMS_JS)  # broken words, overflowing text, overlapping labels (issue 16)
        if problems:
            layout[title] = problems
        shot = screenshot(page, f"page-{name}")
        assert shot.stat().st_size > 10_000
        if path in OWN_PAGES and errors(page):
            failures[title] = errors(page)
        if path == "train":  # no chart in its first view: Plotly's first-use cost is paid off screen, then removed
            page.wait_for_function("() => document.documentElement.dataset.plotlyWarm === 'done'", timeout=30_000)
            assert page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length + document.body"
                                 ".querySelectorAll(':scope > div[style*=\"-10000px\"]').length") == 0
    (ARTIFACTS / "pages.json").write_text(json.dumps(page_paths(), indent=1))
    assert not failures, failures
    assert not layout, json.dumps(layout, indent=1, ensure_ascii=False)
    page.close()


# The page's frame count when each chart first appears (Plotly marks a chart's element ``js-plotly-plot``
# as its first draw begins), counted from the page's first script on.
CHART_FRAMES_JS = """
window.__kdFrame = 0; window.__kdChartFrames = [];
const tick = () => { window.__kdFrame += 1; requestAnimationFrame(tick); }; requestAnimationFrame(tick);
const seen = new WeakSet();
new MutationObserver(() => { for (const chart of document.querySelectorAll('.js-plotly-plot')) {
  if (!seen.has(chart)) { seen.add(chart); window.__kdChartFrames.push(window.__kdFrame); } } })
  .observe(document, {childList: true, subtree: true, attributes: true, attributeFilter: ['class']});
"""


def test_a_pages_charts_are_first_drawn_one_frame_apart(server, browser):
    """app/preload.py: a page's charts reach the browser together, and each chart's first draw waits for
    the one before it and a frame, so the first is on screen before the others are drawn (without it,
    Plotly drew all of them in one task, the first shown only with the last)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(CHART_FRAMES_JS)
    page = context.new_page()
    try:
        page.goto(f"{server}/fsp")
        settled(page)
        page.wait_for_function("() => window.__kdChartFrames.length >= 3", timeout=60_000)
        frames = page.evaluate("() => window.__kdChartFrames")
        assert len(frames) == page.locator(".js-plotly-plot").count() >= 3
        assert frames == sorted(set(frames)), f"charts first drawn in frames {frames}: some in the same one"
    finally:
        context.close()


def test_the_one_by_one_ab_switches_the_first_draws_off_in_the_old_arm(server, browser):
    """``benchmarks/app_speed.py --ab-one-by-one``: its "old" arm (a browser whose pages get
    ``ONE_BY_ONE_OFF_JS``) must draw with Plotly's own ``react``, and its "new" arm with app/preload.py's
    wrapper; an A/B whose switch did nothing would compare the patch with itself."""
    wrapped = {}
    for arm, way in (("new", browser), ("old", app_speed.WithoutOneByOne(browser))):
        context = way.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            page.goto(f"{server}/fsp")
            settled(page)
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
            wrapped[arm] = page.evaluate("() => window.Plotly.react.toString().includes('last.then(frame)')")
        finally:
            context.close()
    assert wrapped == {"new": True, "old": False}


def test_a_torch_free_first_view_opened_at_once_goes_before_the_warm_up(tmp_path, browser):
    """A fresh server, a page opened the moment it answers (app/warmup.py): for Home and Attention maps, whose
    first charts need no torch, the warm-up starts its imports only once the page's first chart is sent (the
    other case, a page that needs torch, is tests/test_app_first_view.py's). Read from the server's own
    timings (KDVIZ_APP_TIMINGS)."""
    for path, page_name in (("", "home"), ("attention", "attention")):
        folder = tmp_path / page_name
        folder.mkdir()
        log = folder / "timings.jsonl"
        page = browser.new_page()  # ready before the server starts: the page is asked for as it answers
        try:
            with running_app(folder, KDVIZ_APP_TIMINGS=str(log)) as url:
                page.goto(f"{url}/{path}")
                page.wait_for_selector(".js-plotly-plot", timeout=90_000)
        finally:
            page.close()
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        held = next(line for line in lines if line["part"] == "warmup:first view")
        chart = next(line for line in lines if line["part"] == f"first-chart:{page_name}")
        assert held["t"] >= chart["t"], (held, chart)  # the first chart went out before the warm-up began


def test_a_crowd_on_a_fresh_server_gets_every_page_whole(tmp_path):
    """A classroom reconnecting to a restarted server: on a fresh server with an empty cache, every page is
    opened by two sessions at the same moment (Streamlit's own protocol, no drawing: benchmarks/load_test.py's
    ProtocolSession), while the warm-up starts beside them. Every answer must be whole: no error on any page
    (the lazy imports of torch and the inside pages' networks, the teachers' logits and the data cached by
    several threads at once, pandas complete before any figure), and every default chart of the pages that
    draw one, as tests/test_app_first_view.py counts them for one visitor alone."""
    pages = list(page_paths())

    async def visit(url: str, page: str) -> tuple[str, int, str | None]:
        async with load_test.ProtocolSession(url, 240) as session:
            await session.run(page)
            error = session.elements.get("exception")
            return page, session.charts, error and error[0].exception.message

    async def crowd(url: str):
        return await asyncio.gather(*[visit(url, page) for page in pages for _ in range(2)])

    (tmp_path / "cache").mkdir()
    with running_app(tmp_path, KDVIZ_CACHE=str(tmp_path / "cache")) as url, ThreadPoolExecutor(1) as thread:
        answers = thread.submit(asyncio.run, crowd(url)).result()  # its own loop: Playwright's runs in this thread
    assert len(answers) == 2 * len(pages) and {a[0] for a in answers} == set(pages)
    assert not [a for a in answers if a[2]], [a for a in answers if a[2]]
    for page, charts, _ in answers:
        expected = FIRST_VIEWS.get(page or "home", (None, 0, None))[1]
        if page in ("factors", "relations") and not REAL_MNIST:  # computed live on a made-up split
            assert charts >= 1, page
        else:
            assert charts == expected, (page, charts, expected)
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
