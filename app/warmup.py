"""Warm the server up in the background when it starts: import torch and kdviz and load what the
pages share (the shipped teachers, their probe images and logits), so the first page a visitor
opens finds them ready; last, start the process that live runs fork from
(:func:`kdviz.sweep.start_child_server`). Everything goes through the pages' own cached loaders
(``common``), so the pages then take the very same objects; a page that asks first simply
computes it itself (the caches let one of the two compute and the other wait)."""
from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

APP = Path(__file__).resolve().parent
DEFAULT = "mnist-cnn"
_started = threading.Event()


def _warm() -> None:
    start = time.perf_counter()
    # the pages' cached loaders run here outside any session: Streamlit's note about that is expected
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    for folder in (APP, APP.parent):  # as navigation.py does for the pages
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import common  # noqa: F401  torch, kdviz and the pages' cached loaders
    import figures  # noqa: F401
    import timings
    try:
        from kdviz import pretrained
        names = sorted(pretrained.names(), key=lambda n: n != DEFAULT)  # the Temperature page's teacher first
        for name in names:
            common.teacher_outputs(name)
            if name == DEFAULT:
                common.teacher_test_outputs(name)  # the dark-knowledge matrix (teacher logits cached on disk)
        import inside_common
        inside_common.warm_factor_space("mnist")  # the Factor space page's first view (its t-SNE maps are shipped)
    except Exception:  # noqa: BLE001 - a page that needs it will say what is wrong
        pass
    try:  # last: the process the live runs fork from (it imports torch and kdviz once)
        from kdviz import sweep
        sweep.start_child_server()
    except Exception:  # noqa: BLE001 - the first run starts it then
        pass
    timings.record("warmup", time.perf_counter() - start)


def start() -> None:
    """Start the warm-up once per server process (a daemon thread: it never holds the server up)."""
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_warm, name="kdviz-warmup", daemon=True).start()
