"""kdviz app entry point: ``streamlit run app/streamlit_app.py``.

Streamlit finds the ``app`` below (an ASGI app, ``st.App``) and serves ``navigation.py``, the
script every session runs (the page list). Serving it this way gives the server a start-up hook:
as soon as it starts, a background thread imports the heavy libraries (torch, kdviz) and loads
the shipped teachers' shared outputs (:mod:`warmup`), so the first visitor's page does not wait
for them; unless that page draws its first chart without them (Home), then the warm-up waits for
that chart (:class:`warmup.FirstPage` tells it which page was asked for). Its other middleware
(:mod:`preload`) has the browser load Plotly's JavaScript with the page rather than after the first
chart arrives. At start-up, :mod:`nodelay` turns Nagle's algorithm off on the socket Streamlit bound,
so the many small files of a first visit are not each held 40 ms. This file imports nothing heavy itself.

``kill -USR1 <server pid>`` prints every thread's stack to the server's console (Python's
:mod:`faulthandler`): what a page that seems stuck is waiting for (tests/test_browser.py asks for it
when a page never finishes).
"""
import faulthandler
import signal
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

import nodelay
import preload
import warmup

HERE = Path(__file__).resolve().parent
if hasattr(signal, "SIGUSR1"):
    faulthandler.register(signal.SIGUSR1, all_threads=True)


@asynccontextmanager
async def _lifespan(_app):
    nodelay.no_delay_on_listeners()  # Streamlit has bound its socket; uvicorn accepts on it after this hook
    warmup.start()
    yield


app = st.App(HERE / "navigation.py", lifespan=_lifespan,
             middleware=[Middleware(warmup.FirstPage), Middleware(preload.PreloadPlotly)])
