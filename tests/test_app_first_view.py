"""A page's first view drawn before torch is imported (Home, Temperature, and the inside pages whose
default view is shipped), and the server's warm-up
going after it (app/warmup.py): on a fresh server torch's import is most of the wait for a first
chart, so these pages send their first chart from shipped numbers first and the warm-up waits for it."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import pytest

import timings
import warmup
from conftest import APP, REAL_MNIST

# In a fresh interpreter: record, at each chart the page sends, whether torch has been imported yet.
PROBE = """
import json, sys
sys.path[:0] = [{app!r}, {repo!r}]
import timings
seen = []
sent = timings.chart_sent
def chart_sent():
    seen.append('torch' in sys.modules)
    sent()
timings.chart_sent = chart_sent
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({page!r}, default_timeout=120).run()
print(json.dumps({{"torch_at_charts": seen, "torch_at_end": 'torch' in sys.modules,
                  "exceptions": [e.value for e in at.exception],
                  "charts": [e.proto.id for e in at.get("plotly_chart")]}}))
"""


def first_view(page: str) -> dict:
    """``page``: its URL path (the file name with ``_`` for ``-``)."""
    code = PROBE.format(app=str(APP), repo=str(APP.parent), page=str(APP / "views" / f"{page.replace('-', '_')}.py"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=APP.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", warmup.TORCH_FREE_FIRST_VIEWS)
def test_a_torch_free_first_view_sends_its_first_chart_before_torch_is_imported(page):
    """Every page the warm-up waits for (warmup.TORCH_FREE_FIRST_VIEWS) must earn it."""
    if page in ("factors", "relations") and not REAL_MNIST:
        pytest.skip("their shipped default views are of the real MNIST test split (a made-up one is computed live)")
    seen = first_view(page)
    assert not seen["exceptions"], seen["exceptions"]
    assert seen["charts"] and seen["torch_at_charts"][0] is False  # the first chart: shipped files and numpy
    first, charts, torch_later = FIRST_VIEWS[page]
    assert first in seen["charts"][0]  # the page's own first chart, not a stand-in
    assert len(seen["charts"]) == charts  # and every chart of the page's default view
    assert seen["torch_at_end"] is torch_later


# Per page: its first chart's key, its charts at first visit, and whether the rest of the page imports torch:
# Home (the machine), Temperature (the T² figure, the matrix), Experiments (the quick presets) and Factor
# space (the numbers under its maps) do; the other inside pages' whole default view
# with the shipped students is shipped (the three networks' numbers), so they need no torch at all.
FIRST_VIEWS = {"home": ("home_picture", 1, True), "temperature": ("bars", 4, True),
               "experiments": ("full_missing-class_bars", 2, True), "attention": ("att_maps", 2, False),
               "fsp": ("fsp_maps", 3, False), "factors": ("ft_tsne", 1, True), "relations": ("rel_maps", 4, False),
               "confusion": ("conf_maps", 3, False), "soft-targets": ("st_image", 3, False)}


def test_every_torch_free_first_view_is_checked():
    assert set(FIRST_VIEWS) == set(warmup.TORCH_FREE_FIRST_VIEWS)


# --------------------------------------------------------------------------- the warm-up's wait
def test_page_names_from_url_paths():
    assert [warmup.page_name(p) for p in ("/", "", "/temperature", "/temperature/", "/kd/fsp")] == \
        ["home", "home", "temperature", "temperature", "fsp"]


def _fresh(monkeypatch, charted: threading.Event):
    monkeypatch.setattr(warmup, "_page_asked", threading.Event())
    monkeypatch.setattr(warmup, "_first_page", [])
    monkeypatch.setattr(timings, "_CHARTED", charted)
    monkeypatch.setattr(warmup, "FIRST_REQUEST_S", 0.2)
    monkeypatch.setattr(warmup, "FIRST_VIEW_MAX_S", 30.0)  # far above every wait below: reaching it fails a check


def _through_middleware(path: str, accept: bytes = b"text/html,*/*") -> None:
    async def app(scope, receive, send):
        return None

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"accept", accept)]}
    asyncio.run(warmup.FirstPage(app)(scope, None, None))


def test_the_first_page_asked_for_is_noted_and_only_html_counts(monkeypatch):
    _fresh(monkeypatch, threading.Event())
    _through_middleware("/static/js/index.js", accept=b"*/*")  # a script, not a page
    assert not warmup._page_asked.is_set()
    _through_middleware("/temperature")
    _through_middleware("/")  # a second page: the first one counts
    assert warmup._first_page == ["temperature"]


def test_the_warm_up_waits_for_a_torch_free_first_view_and_for_nothing_else(monkeypatch):
    # Home asked for: the warm-up waits until a page has sent its first chart
    charted = threading.Event()
    _fresh(monkeypatch, charted)
    _through_middleware("/")
    threading.Timer(0.6, charted.set).start()
    held = warmup.hold_for_first_view()
    assert 0.5 <= held < 15 and charted.is_set()  # woken by the chart, not by the 30 s cap
    # another page asked for: no wait for a chart (it needs torch itself, so the warm-up's head start helps it)
    _fresh(monkeypatch, threading.Event())
    _through_middleware("/train")
    assert warmup.hold_for_first_view() < 15
    # no visitor yet: a short wait for one (FIRST_REQUEST_S), then the warm-up goes on
    _fresh(monkeypatch, threading.Event())
    assert 0.2 <= warmup.hold_for_first_view() < 15


def test_the_collector_is_off_while_torch_is_imported_and_what_the_warm_up_loads_is_frozen(monkeypatch):
    """app/warmup.py: no cyclic collection during the heavy imports (restored after, also after an error and when it
    was off before), and what the warm-up's steps loaded is frozen at its end, so later full passes skip it."""
    import gc

    with warmup.no_collections():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), warmup.no_collections():
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with warmup.no_collections():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()

    import inside_common
    import resources

    loaded = []
    monkeypatch.setattr(warmup, "hold_for_first_view", lambda: 0.0)
    monkeypatch.setattr(timings, "idle_for", lambda: 1e9)
    monkeypatch.setattr(timings, "pages_running", lambda: 0)
    monkeypatch.setattr(warmup, "warm_teachers", lambda default: loaded.append({"teacher": [default]}))
    for module, name in ((warmup, "_figure_machinery"), (warmup, "_live_runs_process"), (resources, "available_datasets")):
        monkeypatch.setattr(module, name, lambda: None)
    monkeypatch.setattr(inside_common, "warm_factor_space", lambda name: None)
    monkeypatch.setattr(inside_common, "warm_default_views", lambda methods: None)
    assert gc.get_freeze_count() == 0
    try:
        warmup._warm()
        assert len(loaded) == 2 and gc.isenabled() and gc.get_freeze_count() > 0
        assert not any(o is loaded[0] for o in gc.get_objects())  # frozen: no generation holds it any more
    finally:
        gc.unfreeze()
    assert any(o is loaded[0] for o in gc.get_objects())
