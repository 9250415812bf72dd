"""Send every small answer of the server at once: TCP_NODELAY on the server's listening sockets.

Streamlit (1.67, its Starlette server) binds its listening socket itself with ``socket.socket(family)``,
whose protocol number is 0, then hands it to uvicorn. asyncio turns Nagle's algorithm off only for a
connection whose socket says ``IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``), so every connection
the server accepted kept Nagle on: on a kept-alive connection, an answer's body written after its headers
waited for the browser to acknowledge the headers, and the browser delays that acknowledgement up to 40 ms
(uvicorn issue 3149 describes the same for its own pre-bound sockets). A first visit loads 60-70 of
Streamlit's JavaScript files over six connections, so most of them waited those 40 ms: measured on a
quiet server (AMD EPYC, 2 cores), 43.6-44.0 ms for each small file after the first on a connection
against 3.1 ms for the first.

On Linux an accepted connection takes TCP_NODELAY from its listening socket, so setting it there, once at
start-up (:func:`no_delay_on_listeners`, from the app's lifespan hook, after Streamlit has bound the socket
and before uvicorn accepts on it), covers every connection. The sockets are found among the process's file
descriptors (``/dev/fd``); where that folder does not exist the server is left as it was.
"""
from __future__ import annotations

import os
import socket
import stat

FD_FOLDER = "/dev/fd"


def tcp_listener(fd: int) -> socket.socket | None:
    """A duplicate of descriptor ``fd`` as a socket when it is a listening TCP socket (IPv4 or IPv6), else None.
    The caller closes it; the original descriptor stays open."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
            return sock
    except OSError:
        pass
    sock.close()
    return None


def no_delay_on_listeners(folder: str = FD_FOLDER) -> list[int]:
    """Turn Nagle's algorithm off on every listening TCP socket of this process; the ports, in order."""
    try:
        fds = sorted(int(name) for name in os.listdir(folder) if name.isdigit())
    except OSError:
        return []
    ports = []
    for fd in fds:
        sock = tcp_listener(fd)
        if sock is None:
            continue
        with sock:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                continue
            ports.append(sock.getsockname()[1])
    return ports
