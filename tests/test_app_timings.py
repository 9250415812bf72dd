"""app/timings.py: a page run's lines (its length and its first chart's time) and the count of runs in
progress that the server's warm-up waits on."""
from __future__ import annotations

import json
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

import timings


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_page_run_records_its_first_chart_once_and_counts_while_it_runs(tmp_path, monkeypatch):
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv("KDVIZ_APP_TIMINGS", str(path))
    assert timings.pages_running() == 0
    with timings.page_run("temperature"):
        assert timings.pages_running() == 1
        timings.chart_sent()
        timings.chart_sent()  # a second chart of the same run: not recorded
    timings.chart_sent()  # outside a page run (a fragment's rerun): not recorded
    assert timings.pages_running() == 0
    parts = [line["part"] for line in _lines(path)]
    assert parts == ["first-chart:temperature", "page:temperature"]
    first, run = _lines(path)
    assert 0 <= first["seconds"] <= run["seconds"]


def test_a_run_that_stops_early_is_recorded_and_no_longer_counted(tmp_path, monkeypatch):
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv("KDVIZ_APP_TIMINGS", str(path))
    with pytest.raises(RuntimeError):  # st.stop() and st.rerun() end a run by raising
        with timings.page_run("home"):
            raise RuntimeError
    assert timings.pages_running() == 0
    assert [line["part"] for line in _lines(path)] == ["page:home"]


def test_runs_in_other_threads_are_counted_and_their_first_charts_kept_apart(tmp_path, monkeypatch):
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv("KDVIZ_APP_TIMINGS", str(path))
    inside, leave = threading.Barrier(3), threading.Event()

    def session(page: str) -> None:
        with timings.page_run(page):
            timings.chart_sent()
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=session, args=(p,)) for p in ("fsp", "attention")]
    for t in threads:
        t.start()
    inside.wait()
    assert timings.pages_running() == 2
    leave.set()
    for t in threads:
        t.join()
    assert timings.pages_running() == 0
    assert sorted(line["part"] for line in _lines(path) if line["part"].startswith("first-chart:")) == [
        "first-chart:attention", "first-chart:fsp"]


def test_idle_for_is_zero_while_a_page_or_a_fragment_runs_and_counts_up_after(monkeypatch):
    monkeypatch.delenv("KDVIZ_APP_TIMINGS", raising=False)
    with timings.page_run("temperature"):
        during_page = timings.idle_for()
    after = timings.idle_for()
    assert during_page == 0.0
    assert 0.0 < after < 1.0  # the run just ended: the warm-up's heavy steps still wait
    time.sleep(0.05)
    assert timings.idle_for() > after

    # a fragment's rerun counts too (run by Streamlit, as in the app)
    script = AppTest.from_string(
        "import streamlit as st\n"
        "import timings\n"
        "@timings.fragment('test.idle')\n"
        "def part():\n"
        "    st.write(f'idle {timings.idle_for()}')\n"
        "part()\n")
    script.run()
    assert not script.exception
    assert script.markdown[0].value == "idle 0.0"
    assert 0.0 < timings.idle_for() < 1.0


def test_a_background_build_waits_until_no_page_has_run_for_a_while(monkeypatch):
    """common.prebuild's figures are built once the server has been idle for PREBUILD_IDLE_S, not while
    the page that asked for them (or any other) still runs and its browser draws it."""
    import plotly.graph_objects as go

    import common

    monkeypatch.delenv("KDVIZ_APP_TIMINGS", raising=False)
    monkeypatch.setattr(common, "PREBUILD_IDLE_S", 0.3)
    built: list[float] = []

    def build():
        built.append(time.monotonic())
        return go.Figure()

    with timings.page_run("temperature"):
        common.prebuild(("test-idle", time.time()), [("test-idle", (time.time(),), build)], presenter=False)
        time.sleep(0.5)
        assert built == []  # a page is running: nothing built yet
    ended = time.monotonic()
    common.wait_for_prebuilds(timeout=10)
    assert len(built) == 1 and built[0] - ended >= 0.3


def test_paint_first_pauses_in_a_fragments_rerun_only(monkeypatch):
    """common.paint_first holds the rest of a fragment back in the fragment's own reruns (a slider
    inside it moved), so the browser draws what came before on its own; a page's run goes on at once.
    (AppTest reruns a whole script for a widget inside a fragment, so the fragment's case is set by hand.)"""
    import types

    import common

    slept: list[float] = []
    fake_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fake_time.sleep = slept.append
    monkeypatch.setattr(common, "time", fake_time)
    script = AppTest.from_string(
        "import streamlit as st\n"
        "import common\n"
        "@st.fragment\n"
        "def part():\n"
        "    st.slider('T', 1, 10, key='T')\n"
        "    common.paint_first()\n"
        "    st.write('after')\n"
        "part()\n")
    script.run()
    script.slider(key="T").set_value(3).run()  # AppTest reruns the whole script
    assert not script.exception and script.markdown[0].value == "after"
    assert slept == []  # runs of the whole page go on at once
    monkeypatch.setattr(common, "fragment_rerun", lambda: True)  # as in the browser: the fragment alone
    common.paint_first()
    assert slept == [common.PAINT_FIRST_S]
