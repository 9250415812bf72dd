"""Warm the server up in the background when it starts: import torch and kdviz and load what the
pages share (the shipped teachers, their probe images and logits, Plotly's and pandas' machinery,
the list of data sets), then compute the inside pages' default views, so the first page a visitor
opens finds them ready; last, start the process that live runs fork from
(:func:`kdviz.sweep.start_child_server`). Everything goes through the pages' own cached loaders
(``resources``, ``common``), so the pages then take the very same objects; a page that asks first simply
computes it itself (the caches let one of the two compute and the other wait).

A page whose first view needs no torch (:data:`TORCH_FREE_FIRST_VIEWS`: every page with a chart; Home,
Temperature, Experiments with its shipped results, and the six inside pages with the shipped students draw
their first chart from the shipped files with numpy) goes first when a visitor opens
it the moment the server answers: the warm-up waits for that page's first chart before it imports anything
(:func:`hold_for_first_view`). Begun at once,
torch's import (2-3 s of a 2-core EPYC's CPU) took Python's lock from everything the server did for that
visitor (its JavaScript served, the page run) and Home's first chart came 1.5-2 s later (BENCHMARKS.md).
Any other page (Train, Compare: no chart at first) is asked for within the same moment and needs torch
anyway, so for it the warm-up starts at once, as before."""
from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import timings

APP = Path(__file__).resolve().parent

DEFAULT = "mnist-cnn"
IDLE_S = 1.0  # a heavy step starts after this long without a page or fragment run
# the pages (URL paths) whose first chart is sent before torch is imported (tests/test_app_first_view.py)
TORCH_FREE_FIRST_VIEWS = ("home", "temperature", "experiments", "attention", "fsp", "factors", "relations", "confusion",
                          "soft-targets")
# how long the warm-up waits for a first visitor's page before it starts: a browser that opens the link as the
# server answers asks within it on a busy 2-core machine (0.5 s was not always enough beside a test suite); a
# page that needs torch ends the wait at once, and with no visitor the warm-up only starts this much later
FIRST_REQUEST_S = 1.0
FIRST_VIEW_MAX_S = 10.0  # and at most this long for that page's first chart
_started = threading.Event()
_first_page: list[str] = []  # the page the server's first visitor asked for
_page_asked = threading.Event()


def page_name(path: str) -> str:
    """The page a URL path opens (its last segment, as app/navigation.py's ``url_path``): ``home`` for the root."""
    return path.rstrip("/").rsplit("/", 1)[-1] or "home"


def page_requested(path: str) -> None:
    """A browser asked for a page (its HTML): the first one is what the warm-up may wait for."""
    if not _page_asked.is_set():
        _first_page.append(page_name(path))
        _page_asked.set()


class FirstPage:
    """ASGI middleware: tells the warm-up (:func:`page_requested`) which page a browser asks for (a GET that
    accepts HTML); everything passes through unchanged."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope.get("method") == "GET"
                and any(k == b"accept" and b"text/html" in v for k, v in scope.get("headers", []))):
            page_requested(scope.get("path", "/"))
        await self.app(scope, receive, send)


def hold_for_first_view() -> float:
    """Before the warm-up's first import: wait up to :data:`FIRST_REQUEST_S` for a first visitor's page and,
    when it is one of :data:`TORCH_FREE_FIRST_VIEWS`, until some page has sent its first chart (at most
    :data:`FIRST_VIEW_MAX_S`). Returns the seconds waited."""
    start = time.perf_counter()
    if _page_asked.wait(FIRST_REQUEST_S) and _first_page[0] in TORCH_FREE_FIRST_VIEWS:
        timings.wait_first_chart(FIRST_VIEW_MAX_S)
    return time.perf_counter() - start


def _figure_machinery() -> None:
    """What a page's first chart or table would otherwise load: Plotly's validators for every trace kind
    the pages draw, its subplot grid and the ``plotly_white`` template (Plotly's default, which ``figures``
    sets; together 0.4-1 s the first time on a busy 2-core machine), and pandas' table styling and its Arrow
    conversion (``st.dataframe``)."""
    import pandas as pd
    import plotly.graph_objects as go
    import pyarrow as pa
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["a", "b"])
    for trace in (go.Bar(x=[0], y=[0]), go.Scatter(x=[0], y=[0]), go.Scattergl(x=[0], y=[0]),
                  go.Heatmap(z=[[0.0]], text=[["0"]], texttemplate="%{text}"), go.Image(z=[[[0, 0, 0]]])):
        fig.add_trace(trace, row=1, col=1)
    fig.add_shape(type="rect", x0=0, x1=1, y0=0, y1=1, row=1, col=2)
    fig.update_layout(height=300, coloraxis=dict(colorscale="Blues"))  # the template: figures' default
    fig.update_xaxes(type="category")
    fig.to_json()
    table = pd.DataFrame({"a": [0.0]})
    table.style.format("{:.3f}").to_html()
    pa.Table.from_pandas(table)


def warm_teachers(default: bool) -> None:
    """What the Temperature page draws of the shipped teachers, through its cached loaders (``common``,
    ``resources``): of the default teacher (``default``) or of every other one, its probe images' logits and its
    dark-knowledge matrix's inputs (the shipped test logits and labels, read without the data set; for a teacher
    whose file keeps no labels, its data set's test split: a CIFAR-10 teacher's took that page 3-4 s on a warmed-up
    server, 0.3-0.4 s once warmed here); the default teacher's T² figure too. A teacher that fails here is left for
    the page, which says what is wrong; the others are still warmed."""
    from kdviz import pretrained

    import common
    import resources

    for name in pretrained.names():
        if (name == DEFAULT) != default:
            continue
        try:
            resources.teacher_outputs(name)
            if common.shipped_test_outputs(name) is None:
                resources.teacher_test_outputs(name)
            if name == DEFAULT:
                resources.gradient_scale(name)
        except Exception:  # noqa: BLE001
            continue


@contextmanager
def no_collections():
    """Python's cyclic garbage collector off meanwhile (as it was after). Importing torch and kdviz makes some
    300,000 objects that live as long as the server, and the collector's full passes over the growing heap, each
    holding Python's lock from the page a visitor waits for, came during the import. They are frozen after
    (``gc.freeze``), and so is what the warm-up's steps load, so later passes skip them. A log of a server's full
    passes (AMD EPYC VM, 2 cores, scratch, each way once): during the warm-up five passes of 0.41 s in all (the last
    0.14 s) before, one of 0.03 s now; over the next page visits, one pass of 0.20 s in two visits before, two of
    0.016 s in four now. The first chart in a browser did not change above this VM's noise."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _live_runs_process() -> None:
    from kdviz import sweep

    sweep.start_child_server()  # otherwise the first live run starts it


def _warm() -> None:
    start = time.perf_counter()
    # the pages' cached loaders run here outside any session: Streamlit's note about that is expected
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    for folder in (APP, APP.parent):  # as navigation.py does for the pages
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    timings.record("warmup:first view", hold_for_first_view())

    with no_collections():
        import common  # noqa: F401 - the pages' shared helpers
        import figures  # noqa: F401 - the pages' figure modules
        import figures_inside  # noqa: F401
        import inside_common
        import resources  # torch, kdviz and the pages' cached loaders
    gc.freeze()

    def step(name: str, work, heavy: bool = False) -> None:
        """One piece of the warm-up, timed; a failure only skips it (the page that needs it says what is wrong).
        It starts when no page is running (up to 10 s of waiting): a visitor who came early gets the cores
        (and Python's lock) for the page, which computes itself what it needs and the warm-up has not.
        A ``heavy`` step (seconds of torch work: the inside pages' views, the other teachers, the live runs'
        process) waits, without a limit, for a second in which no session's page or fragment ran: in a
        classroom of sessions it would compete with every answer for the cores and Python's lock (in the
        load test of BENCHMARKS.md such steps took 8-13 s each among the sessions, 0.2-3.3 s after them)."""
        waited = time.perf_counter()
        if heavy:
            while timings.idle_for() < IDLE_S:
                time.sleep(0.1)
        while timings.pages_running() and time.perf_counter() - waited < 10:
            time.sleep(0.05)
        began = time.perf_counter()
        try:
            work()
        except Exception:  # noqa: BLE001
            pass
        timings.record(f"warmup:{name}", time.perf_counter() - began)

    # in the order of need: the Temperature page's teacher, what every first chart needs, Home's list of
    # data sets, the other teachers, then the inside pages' default views
    step("temperature teacher", lambda: warm_teachers(default=True))
    step("figures", _figure_machinery)
    step("data sets", resources.available_datasets)
    step("teachers", lambda: warm_teachers(default=False), heavy=True)
    step("factor space", lambda: inside_common.warm_factor_space("mnist"), heavy=True)  # its t-SNE maps are shipped
    for method in ("at", "fsp", "rkd", "kd"):
        step(f"inside view {method}", lambda method=method: inside_common.warm_default_views((method,)), heavy=True)
    step("live runs' process", _live_runs_process, heavy=True)  # last: it imports torch and kdviz once more
    gc.collect(1)  # the young garbage of the steps goes first: what is frozen is never collected
    gc.freeze()  # what the steps loaded lives as long as the server
    timings.record("warmup", time.perf_counter() - start)


def start() -> None:
    """Start the warm-up once per server process (a daemon thread: it never holds the server up)."""
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_warm, name="kdviz-warmup", daemon=True).start()
