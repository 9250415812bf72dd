"""What a first visit's JavaScript costs the server to send, with Nagle's algorithm on and off (not part of
the test suite).

    .venv/bin/python benchmarks/static_speed.py            # prints the table
    .venv/bin/python benchmarks/static_speed.py --write    # and replaces its block in BENCHMARKS.md

The files are the ones a fresh browser profile asks for before the app can start: Streamlit's index chunk and
the chunks it imports, then Plotly's chunk and its imports (app/preload.py preloads them), fetched over six
kept-alive connections at once, as chromium fetches from one host over HTTP/1.1. Printed: the wall time for
all of them, and the median time of one file that is the first on its connection against one that follows
another on it (the browser's connections are kept alive, so most files follow another).

Two servers in one process, in turn for ``--rounds`` rounds: uvicorn (as Streamlit runs it) serving
Streamlit's static folder from a listening socket bound the way Streamlit binds it (``socket.socket(family)``,
protocol number 0: asyncio then leaves Nagle on for every connection), *as before*; and the same with
app/nodelay.py's start-up call (TCP_NODELAY on the listener, which each connection inherits), *now*. Both
serve the same bytes (checked).
"""
from __future__ import annotations

import argparse
import http.client
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from sections import replace_section
from speed import machine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "app"))

import nodelay  # noqa: E402 - the app's modules, imported by name as the server does (app/ on the path above)
import preload  # noqa: E402

START, END = "<!-- static-speed:start -->", "<!-- static-speed:end -->"
CONNECTIONS = 6  # chromium's connections to one host over HTTP/1.1


def first_visit_files(folder: Path = preload.STATIC_JS) -> list[str]:
    """Streamlit's index chunk (the script its ``index.html`` loads), the chunks it imports, then Plotly's chunk
    and its imports (file names)."""
    page = (folder.parent.parent / "index.html").read_text() if (folder.parent.parent / "index.html").is_file() else ""
    index = [name for name in re.findall(r'src="\./static/js/([\w.-]+\.js)"', page) if (folder / name).is_file()]
    if len(index) != 1 or preload.plotly_chunk(folder) is None:
        raise SystemExit(f"static_speed: no single app script in index.html and Plotly chunk in {folder}")
    head = (folder / index[0]).read_bytes()[:65536]
    imports = [m.decode() for m in preload.STATIC_IMPORT.findall(head) if (folder / m.decode()).is_file()]
    plotly = preload.plotly_chunk(folder)
    return list(dict.fromkeys([index[0], *imports, plotly, *preload.chunk_imports(plotly, folder)]))


class Served:
    """Streamlit's static folder served by uvicorn in a thread of this process, from a socket bound as
    Streamlit binds its own; with ``no_delay``, app/nodelay.py's start-up call made on it first."""

    def __init__(self, no_delay: bool):
        self.sock = socket.socket(family=socket.AF_INET)  # protocol 0, as Streamlit's _bind_socket
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        if no_delay and self.port not in nodelay.no_delay_on_listeners():
            raise SystemExit("static_speed: app/nodelay.py did not find the listening socket")
        app = Starlette(routes=[Mount("/static", StaticFiles(directory=preload.STATIC_JS.parent))])
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", http="h11"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise SystemExit("static_speed: the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def fetch_all(port: int, files: list[str]) -> dict:
    """Every file over :data:`CONNECTIONS` kept-alive connections at once: the wall seconds, each file's
    seconds as the first on its connection or after another, and a digest of what came back."""
    queue, lock = list(files), threading.Lock()
    first, later, bodies = [], [], {}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        used = False
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    name = queue.pop(0)
                start = time.perf_counter()
                conn.request("GET", f"/static/js/{name}")
                response = conn.getresponse()
                body = response.read()
                seconds = time.perf_counter() - start
                if response.status != 200:
                    raise RuntimeError(f"{name}: HTTP {response.status}")
                with lock:
                    (later if used else first).append(seconds)
                    bodies[name] = len(body)
                used = True
        finally:
            conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - start, "first": first, "later": later, "bytes": bodies}


def measure(rounds: int, files: list[str]) -> dict[str, list[dict]]:
    """Each way in turn (which goes first alternates), ``rounds`` times."""
    out: dict[str, list[dict]] = {"before": [], "now": []}
    for r in range(rounds):
        for way in (("before", "now") if r % 2 == 0 else ("now", "before")):
            with Served(no_delay=way == "now") as served:
                fetch_all(served.port, files[:CONNECTIONS])  # the connections' first files: the server warmed up
                out[way].append(fetch_all(served.port, files))
    if out["before"][0]["bytes"] != out["now"][0]["bytes"]:
        raise SystemExit("static_speed: the two servers sent different files")
    return out


def markdown(results: dict[str, list[dict]], files: list[str], about: str, command: str) -> str:
    total = sum(results["now"][0]["bytes"].values())
    ms = lambda xs: f"{1000 * statistics.median(xs):.1f}"  # noqa: E731
    row = {way: (statistics.median(r["wall"] for r in runs), [s for r in runs for s in r["first"]],
                 [s for r in runs for s in r["later"]]) for way, runs in results.items()}
    lines = [START, "## A first visit's JavaScript from the server (`benchmarks/static_speed.py`)", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}). Machine: {about}.", "",
             f"The {len(files)} files a fresh browser profile loads before the app starts ({total / 1e6:.1f} MB: "
             "Streamlit's index chunk and its imports, Plotly's chunk and its imports), over six kept-alive connections "
             "at once, from uvicorn serving Streamlit's static folder, in one process, each way in turn "
             f"({len(results['now'])} rounds, medians). *Before*: the listening socket bound as Streamlit binds it "
             "(protocol 0, so asyncio leaves Nagle's algorithm on); *now*: app/nodelay.py's start-up call on it "
             "(TCP_NODELAY, inherited by each connection).", "",
             "| | all files (ms) | a file first on its connection (ms) | a file after another on it (ms) |",
             "|---|---:|---:|---:|"]
    for way in ("now", "before"):
        wall, first, later = row[way]
        lines.append(f"| {way} | {1000 * wall:.0f} | {ms(first)} | {ms(later)} |")
    lines.append(END)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each way once a round (default 6)")
    parser.add_argument("--write", action="store_true", help="replace the static-speed block of BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be in [1, 50]")
    files = first_visit_files()
    about = f"{machine(torch.device('cpu'))}; uvicorn {uvicorn.__version__}"
    text = markdown(measure(args.rounds, files), files, about,
                    f".venv/bin/python benchmarks/static_speed.py --rounds {args.rounds}{' --write' if args.write else ''}")
    print(text)
    if args.write:
        replace_section(REPO / "BENCHMARKS.md", START, END, text)
        print("wrote the static-speed block of BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
