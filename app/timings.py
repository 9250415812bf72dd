"""Server-side timings of the app's script runs, for benchmarks/app_speed.py and the fragment tests.

With ``KDVIZ_APP_TIMINGS=<file>`` in the server's environment, every full run of a page and every
rerun of a timed fragment appends one JSON line to that file: ``{"part": "page:temperature",
"seconds": 0.41, "t": <unix time>}`` or ``{"part": "fragment:temperature.T", ...}``, and for every
full run that sends a chart, ``{"part": "first-chart:temperature", "seconds": <from the run's start>}``
when the first one is sent (where a page's time to its first picture goes). Without it nothing is
written. A run's line also says which session ran it (``"session"``, Streamlit's session id) and how
much CPU time its own thread used (``"cpu"``, seconds): a run whose ``cpu`` is far below its
``seconds`` spent the difference waiting (for a core, or for Python's GIL held by another session or
a training run), not working. This module imports nothing heavy (no torch): the entry script uses it.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from contextlib import contextmanager

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

_LOCK = threading.Lock()
_UNWRITABLE: set[str] = set()


def record(part: str, seconds: float, cpu: float | None = None) -> None:
    """Append one timing line when ``KDVIZ_APP_TIMINGS`` names a file."""
    path = os.environ.get("KDVIZ_APP_TIMINGS")
    if not path:
        return
    entry = {"part": part, "seconds": round(seconds, 5), "t": time.time()}
    if cpu is not None:
        entry["cpu"] = round(cpu, 5)
    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is not None:
        entry["session"] = ctx.session_id
    line = json.dumps(entry)
    with _LOCK:
        try:
            with open(path, "a") as f:
                f.write(line + "\n")
        except OSError as error:  # diagnostics never break a page: said once on the server's console
            if path not in _UNWRITABLE:
                _UNWRITABLE.add(path)
                print(f"kdviz: warning: KDVIZ_APP_TIMINGS={path} cannot be written ({error.strerror or error}); "
                      "no timings are recorded", file=sys.stderr, flush=True)


@contextmanager
def timed(part: str):
    """Record how long the block took, however it ends (``st.stop`` and ``st.rerun`` raise)."""
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        record(part, time.perf_counter() - start, time.thread_time() - cpu)


_RUN = threading.local()  # the page run on this thread (Streamlit runs each session's script in its own thread)
_ACTIVE = [0]  # full page runs in progress, all sessions
_BUSY = [0, 0.0]  # page and fragment runs in progress, all sessions; when the last one began or ended
_CHARTED = threading.Event()  # some page run has sent its first chart since the server started


@contextmanager
def _busy():
    """Count a script run (a page's or a fragment's) in :func:`idle_for`."""
    with _LOCK:
        _BUSY[0] += 1
        _BUSY[1] = time.monotonic()
    try:
        yield
    finally:
        with _LOCK:
            _BUSY[0] -= 1
            _BUSY[1] = time.monotonic()


@contextmanager
def page_run(name: str):
    """A full run of page ``name``: recorded as ``page:<name>``; :func:`chart_sent` times its first chart;
    counted in :func:`pages_running` while it runs."""
    _RUN.name, _RUN.start, _RUN.charted = name, time.perf_counter(), False
    with _LOCK:
        _ACTIVE[0] += 1
    try:
        with _busy(), timed(f"page:{name}"):
            yield
    finally:
        _RUN.name = None
        with _LOCK:
            _ACTIVE[0] -= 1


def pages_running() -> int:
    """How many full page runs are in progress now (the server's warm-up waits for none)."""
    return _ACTIVE[0]


def idle_for() -> float:
    """Seconds since the last page or fragment run of any session began or ended; 0 while one runs.
    The warm-up's heavy steps wait for a second of it: in a busy classroom they would take the cores
    and Python's lock from every session's answers, so a page that needs their result first computes it."""
    with _LOCK:
        return 0.0 if _BUSY[0] else time.monotonic() - _BUSY[1]


def chart_sent() -> None:
    """A page sent a chart: the first of a full page run is recorded as ``first-chart:<page>``."""
    name = getattr(_RUN, "name", None)
    if name and not _RUN.charted:
        _RUN.charted = True
        record(f"first-chart:{name}", time.perf_counter() - _RUN.start)
        _CHARTED.set()  # after its line: what waited for it is recorded after it


def wait_first_chart(timeout: float) -> bool:
    """Wait until some page run has sent its first chart since the server started (True), at most ``timeout`` s."""
    return _CHARTED.wait(timeout)


def fragment(name: str, **options):
    """``st.fragment(**options)`` whose runs are recorded as ``fragment:<name>``. The name must stay the
    same for the life of the page (Streamlit tells fragments apart by the function's module and name)."""
    def decorate(body):
        @functools.wraps(body)
        def run(*args, **kwargs):
            with _busy(), timed(f"fragment:{name}"):
                return body(*args, **kwargs)
        return st.fragment(run, **options)
    return decorate
