"""app/nodelay.py: the server's connections send small answers at once (TCP_NODELAY), not after the
browser's delayed acknowledgement.

The listening socket is made the way Streamlit's server makes its own (``socket.socket(family)``: protocol
number 0, which keeps asyncio from setting TCP_NODELAY on the connections it accepts)."""
from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

import nodelay
import preload

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="connections inherit TCP_NODELAY on Linux")


def _listener() -> socket.socket:
    sock = socket.socket(family=socket.AF_INET)  # as streamlit.web.server.starlette.starlette_server._bind_socket
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection the listener accepts now."""
    with socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with accepted:
            assert client.fileno() >= 0
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_listener_bound_like_streamlits_hands_out_connections_with_nagle_on():
    with _listener() as listener:
        assert listener.proto == 0
        assert _accepted_nodelay(listener) == 0


def test_every_listening_tcp_socket_gets_nodelay_and_nothing_else_is_touched():
    left, right = socket.socketpair()
    with _listener() as first, _listener() as second, socket.socket(family=socket.AF_INET) as unbound, left, right:
        ports = nodelay.no_delay_on_listeners()
        assert first.getsockname()[1] in ports and second.getsockname()[1] in ports
        assert _accepted_nodelay(first) == 1 and _accepted_nodelay(second) == 1
        assert unbound.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # not listening
        assert left.family == socket.AF_UNIX and right.fileno() >= 0  # a pipe-like socket is passed over
        assert first.fileno() >= 0 and second.fileno() >= 0  # the originals stay open: only duplicates were closed


def test_no_fd_folder_leaves_the_server_as_it_was(tmp_path):
    with _listener() as listener:
        assert nodelay.no_delay_on_listeners(str(tmp_path / "missing")) == []
        assert _accepted_nodelay(listener) == 0


def test_the_apps_start_up_hook_sets_it_before_the_first_connection(monkeypatch):
    import streamlit_app
    import warmup

    started = []
    monkeypatch.setattr(warmup, "start", lambda: started.append(True))

    async def start_up(listener):
        async with streamlit_app._lifespan(streamlit_app.app):
            return _accepted_nodelay(listener)

    with _listener() as listener:
        assert asyncio.run(start_up(listener)) == 1
    assert started == [True]


def test_the_benchmark_serves_a_first_visits_files_whole_both_ways():
    """benchmarks/static_speed.py: both of its servers (Nagle on, and app/nodelay.py's call made) send every file
    of a first visit byte for byte; its list starts with Streamlit's index chunk and holds Plotly's."""
    bench = str(Path(__file__).resolve().parent.parent / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import static_speed

    files = static_speed.first_visit_files()
    assert files[0].startswith("index.") and preload.plotly_chunk() in files and len(files) == len(set(files)) > 10
    picked = files[:8] + [preload.plotly_chunk()]
    out = static_speed.measure(1, picked)
    for way in ("before", "now"):
        run = out[way][0]
        assert run["bytes"] == {name: (preload.STATIC_JS / name).stat().st_size for name in picked}
        assert len(run["first"]) <= static_speed.CONNECTIONS and len(run["first"]) + len(run["later"]) == len(picked)
