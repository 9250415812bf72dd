"""The Temperature page in a real browser: moving the T slider reruns only the part of the page that
depends on T (a fragment), never the page's top; "play" moves the slider through fragment runs.

The server writes one line per full page run and per fragment run (``KDVIZ_APP_TIMINGS``, see
app/timings.py); the test reads them. No timing is asserted. Needs Debian's chromium and the
playwright pip package, like tests/test_browser.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_browser import bars, browser, running_app  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser
SLIDER = "[data-testid='stSlider'] input[type='range']"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A server started as in the README, writing its run timings to a file; yields (url, timings file)."""
    folder = tmp_path_factory.mktemp("fragment-app")
    timings = folder / "timings.jsonl"
    with running_app(folder, KDVIZ_APP_TIMINGS=str(timings)) as url:
        yield url, timings


def runs(timings: Path) -> list[str]:
    """The page and fragment runs recorded so far, in order (the server's warm-up line left out)."""
    parts = [json.loads(line)["part"] for line in timings.read_text().splitlines()] if timings.exists() else []
    return [p for p in parts if p.startswith(("page:", "fragment:"))]


def shown_T(page) -> float:
    """The temperature the slider shows."""
    return float(page.locator("[data-testid='stSliderThumbValue']").first.inner_text())


def wait_until(condition, timeout: float = 60, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_the_slider_reruns_only_its_fragment_and_play_moves_it(app, browser):  # noqa: F811
    url, timings = app
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/temperature")
    page.wait_for_selector(SLIDER, timeout=120_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    wait_until(lambda: "page:temperature" in runs(timings), what="the page's first run")
    first = runs(timings)
    assert first.count("page:temperature") == 1 and "fragment:temperature.T" in first  # drawn with the page

    before = bars(page)
    thumb = page.locator(SLIDER).first
    thumb.focus()
    thumb.press("ArrowRight")
    wait_until(lambda: bars(page) != before, what="the bars to answer the slider")
    wait_until(lambda: len(runs(timings)) > len(first), what="the fragment's run to be recorded")
    time.sleep(1.0)  # anything else the move caused would be recorded by now
    moved = runs(timings)[len(first):]
    assert moved == ["fragment:temperature.T"]  # the fragment alone: the page's top did not run
    assert max(bars(page)) < max(before)  # one step hotter: softer
    assert shown_T(page) == 1.2 and "T=1.2" in page.url  # the page's state is still mirrored into the URL

    # play: one full run to start the timer, then fragment runs, each one grid step
    page.get_by_role("button", name="play T").click()
    wait_until(lambda: shown_T(page) >= 1.8, timeout=90, what="play to move the slider two steps")
    page.get_by_role("button", name="pause").click()
    wait_until(lambda: page.get_by_role("button", name="play T").count() > 0, what="pause")
    # a run is recorded when it ends, after what it drew reached the browser (later on a busy machine): so the
    # play segment is read once the pause's full run is recorded, as what ran between the two full runs
    def since_move() -> list[str]:
        return runs(timings)[len(first) + len(moved):]

    wait_until(lambda: since_move().count("page:temperature") >= 2, what="the pause's page run to be recorded")
    time.sleep(1.0)  # anything else the pause caused would be recorded by now
    after = since_move()
    full = [i for i, part in enumerate(after) if part == "page:temperature"]
    assert after[:full[0]] == ["fragment:temperature.T"], after  # the play click's own run, then one full run
    ticks = after[full[0] + 1:full[1]]
    # the two steps to 1.8 were fragment runs of the timer (the pause click's own run is one more)
    assert ticks.count("fragment:temperature.T") == len(ticks) >= 2 + 1, after
    # pause stops the timer: no run at all for three of its 0.9 s periods (a tick that raced the click
    # on a busy machine may have made the pause's page run twice, which draws the same)
    settled = len(runs(timings))
    time.sleep(3.0)
    assert len(runs(timings)) == settled, runs(timings)[settled:]
    page.close()


# every animation (CSS transition or animation) on an element inside the live view, sampled every 50 ms; not
# the placeholder an element shows while it mounts for the first time (the curves, once there are losses)
LIVE_ANIMATIONS_JS = """() => { window.__liveAnimations = []; const tick = () => {
  for (const a of document.getAnimations()) { const t = a.effect && a.effect.target;
    if (t && t.closest && t.closest('.st-key-live_view') && t.dataset.testid !== 'stSkeleton')
      window.__liveAnimations.push((a.transitionProperty || a.animationName) + ' on ' + (t.dataset.testid || t.tagName)); }
  window.__liveTick = setTimeout(tick, 50); }; tick(); }"""


def test_a_live_runs_redraws_leave_the_browser_idle_between_them(app, browser):  # noqa: F811
    """While a run trains, the browser should spend nothing beyond drawing the new numbers: the live view's
    element code was loaded in idle time before Start (no script fetched once the run starts), and its
    redraws start no fade or slide (Streamlit's stale fade and the progress bar's slide are off there).
    Without either change this fails: the Progress and Metric chunks are fetched at Start, and every
    redraw starts an opacity transition on each element of the view and a transform on the bar."""
    url, timings = app
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/train?mode=teacher&dataset=digits&student=mlp-30&epochs=200&batch=32")
    page.get_by_role("button", name="Start").wait_for(timeout=120_000)
    page.wait_for_function("() => document.documentElement.dataset.chunksWarm === 'done'", timeout=60_000)
    scripts = []
    page.on("request", lambda r: scripts.append(r.url) if "/static/js/" in r.url else None)
    redraws = runs(timings).count("fragment:train.live")
    page.get_by_role("button", name="Start").click()
    page.locator(".st-key-live_view [data-testid='stProgress']").wait_for(timeout=60_000)
    wait_until(lambda: runs(timings).count("fragment:train.live") >= redraws + 1, timeout=120,
               what="the live view's first redraw")
    page.evaluate(LIVE_ANIMATIONS_JS)  # from here on: redraws only (its first view mounts behind placeholders)
    wait_until(lambda: runs(timings).count("fragment:train.live") >= redraws + 4, timeout=120,
               what="three more redraws of the live view")
    time.sleep(0.5)
    animations = page.evaluate("() => { clearTimeout(window.__liveTick); return window.__liveAnimations; }")
    # each chart in the live view: its place among the view's elements and whether Streamlit had marked it stale
    curves = page.evaluate("""() => Array.from(document.querySelectorAll('.st-key-live_view .js-plotly-plot'), p => {
        const box = p.closest('[data-testid="stElementContainer"]');
        const row = box ? Array.from(box.parentElement.children) : [];
        return {at: row.indexOf(box), stale: box && box.dataset.stale,
                row: row.map(c => (c.firstElementChild && c.firstElementChild.dataset.testid || c.className.split(' ')[0])
                                  + (c.dataset.stale === 'true' ? ' (stale)' : ''))}; })""")
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("stopped early").wait_for(timeout=60_000)
    # the curves were drawn, and redrawn, in the live view, in one place. A redraw in progress may still hold the
    # previous chart, marked stale, beside the new one (seen in 3 of about 40 runs, the stale copy one place
    # below the new one, though every element before it keeps its place; its cause is not found): not counted
    assert [c["stale"] for c in curves].count("false") == 1, json.dumps(curves)
    assert scripts == [], scripts  # Progress, Metric, Html, DownloadButton came before Start
    assert animations == [], sorted(set(animations))
    page.close()
