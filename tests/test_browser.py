"""The app in a real browser: start it as the README says, move the temperature slider,
see the bars change, and save a screenshot of every page to test-artifacts/.

Needs Debian's chromium (/usr/bin/chromium) and the playwright pip package (no
``playwright install``); skipped with the reason when either is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_paths() -> dict[str, str]:
    """Every page listed in app/streamlit_app.py: url path -> title (home is "")."""
    source = (REPO / "app" / "streamlit_app.py").read_text()
    pages = {"": "home"}
    for title, path in re.findall(r'st\.Page\([^)]*title="([^"]+)"[^)]*url_path="([^"]+)"', source):
        pages[path] = title
    return pages


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m streamlit run app/streamlit_app.py --server.headless true --server.port N`, as in the README."""
    port = free_port()
    python = REPO / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), "-m", "streamlit", "run", "app/streamlit_app.py",
               "--server.headless", "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "KDVIZ_RUNS": str(tmp_path_factory.mktemp("browser-runs"))}
    log = open(tmp_path_factory.mktemp("browser-log") / "streamlit.log", "w+")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
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
        time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


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


def bars(page) -> list[float]:
    """The softmax(z/T) bars of the first Plotly chart, read from the DOM."""
    return page.evaluate("() => Array.from(document.querySelector('.js-plotly-plot').data[1].y)")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(900, min(int(height) + 80, 7000))})
    time.sleep(0.5)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    return path


def errors(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('[data-testid=\"stException\"], "
                         "[data-testid=\"stAlertContentError\"]')).map(e => e.innerText.slice(0, 300))")


def test_temperature_slider_moves_the_bars_and_every_page_renders(server, browser):
    for old in ARTIFACTS.glob("failed-*.png"):
        old.unlink()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
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

    failures = {}
    for path, title in page_paths().items():
        page.goto(f"{server}/{path}")
        settle(page)
        name = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        shot = screenshot(page, f"page-{name}")
        assert shot.stat().st_size > 10_000
        if path in OWN_PAGES and errors(page):
            failures[title] = errors(page)
    (ARTIFACTS / "pages.json").write_text(json.dumps(page_paths(), indent=1))
    assert not failures, failures
    page.close()
