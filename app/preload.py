"""Start loading Plotly's JavaScript with the page, not after the first chart arrives.

Streamlit's frontend loads its Plotly chunk (``static/js/PlotlyChart.<hash>.js``, 4.7 MB: the
plotly.js bundle) only when the first chart element reaches the browser, so on a fresh browser
profile every page's first chart waited for the server's run up to that chart, *then* for the
fetch, parse and evaluation of that bundle (about 2 s of a busy 2-core machine). This ASGI
middleware adds to the app's HTML page (``index.html``, which every page URL serves)
``<link rel="modulepreload">`` for that chunk and for the chunks it imports, so they are fetched
beside the app's own JavaScript, and a small script that imports the chunk as soon as the browser
has asked the server to run the page (while the browser would otherwise wait for the server), so
its evaluation overlaps the server's work toward the first chart; its ``import()`` is the very
module Streamlit imports later (same URL), so nothing is loaded twice. Nothing else changes: the
page still draws its charts when the server sends them, and draws nothing of its own.

Measured on the Temperature page of a warmed-up server, a fresh chromium profile per visit, six
visits each way, alternating (Intel Xeon KVM, avx512_bf16, no AMX, 2 cores shared with other
jobs): median first chart 8.2 s as Streamlit loads Plotly, 7.1 s with this (load average 36-41);
in an earlier run at load 7-20, 4.7 s as Streamlit loads it, 4.3 s with the preload alone and
3.4 s with the preload and an import started at the first element on the page. On a quiet machine
(2026-12-01; five pages, three visits each way, alternating), preloading the chunk's imports too and
importing at the browser's first websocket message rather than at the server's first answer: median
first chart 2.23-3.16 s against 2.40-3.28 s per page (a browser trace showed the import waiting for
three chunks only Plotly needs, fetched after the page's run had started).

Once the chunk is loaded, a small chart is drawn off screen in the browser's idle time and removed
(:data:`WARM_JS`): Plotly's first chart in a page costs 60-110 ms more than the next, and on the Train
page, whose first view has no chart, that first chart is a live run's first redraw, on the cores the
run trains on. Measured (2026-12-01, ``benchmarks/browser_trace.py train --first-draw 6``): Plotly's
first chart in the page 38-58 ms (median 40) after the warm-up, 82-120 ms (median 102) without.

After that, in idle time again, the page imports the chunks of the elements a live run on the Train page
brings (:data:`LATER_ELEMENTS`: progress bar, metrics, its style, the download button), which no page's
first view loads: Streamlit had fetched and evaluated them in the run's first second, beside training
(tests/test_browser_fragments.py checks that no script is fetched once a run starts).

A page's charts reach the browser together and Streamlit mounts them in one go, so Plotly drew them all
for the first time in one task (a first draw is the slow one: Plotly's drawing code compiled and set up on
first use), and the first chart appeared only once the last was drawn. :data:`ONE_BY_ONE_JS` makes each
chart's first draw wait for the one before it and a frame, so each is on screen as soon as it is drawn; a
chart already drawn (a slider's redraw, a live run's) is redrawn at once, as before. Measured on a warmed-up
server, three fresh visits each way, alternating (AMD EPYC, AVX2, 2 cores; ``benchmarks/app_speed.py``'s
first chart, scratch A/B through the browser's init script): first chart on screen, median, Relations 6.39
against 7.37 s, FSP 6.18 against 6.82 s, Confusion 5.84 against 6.92 s, each visit sooner; Temperature,
whose first chart waits longest for the rest of the page (its widgets, images), 8.66 against 7.68 s within
this VM's spread of visits (±1.5 s), its first chart on screen 1.2 s after its first draw began against 2.0 s.
A second A/B on a quicker day of the same VM (2026-12-03, three rounds, BENCHMARKS.md): sooner on all five pages
tried, warmed up and opened the moment a fresh server answers (Temperature 2.90 against 3.50 s warmed up).

The chunks' names are read from the installed Streamlit's static folder; when Plotly's is not there
(another Streamlit build), the page is served unchanged.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import streamlit

STATIC_JS = Path(streamlit.__file__).resolve().parent / "static" / "static" / "js"


def element_chunk(element: str, folder: Path = STATIC_JS) -> str | None:
    """The file name of Streamlit's chunk for ``element`` (``PlotlyChart``, ``Metric``, ...) in
    ``folder``: ``<element>.<hash>.js``, None when there is not exactly one."""
    pattern = re.compile(re.escape(element) + r"\.[\w-]+\.js")
    found = sorted(p.name for p in folder.glob(f"{element}.*.js") if pattern.fullmatch(p.name)) if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def plotly_chunk(folder: Path = STATIC_JS) -> str | None:
    """The file name of Streamlit's Plotly chunk in ``folder`` (None when there is not exactly one)."""
    return element_chunk("PlotlyChart", folder)


# The elements a click on the Train page's Start brings that no page's first view loads: the live view's
# progress bar and figures (st.progress, st.metric), its style (st.html) and the finished run's download
# button. Streamlit fetched and evaluated their chunks (and their imports) in the first second of the
# run, beside training. Imported in the browser's idle time once Plotly's warm-up is done (:data:`WARM_JS`).
LATER_ELEMENTS = ("Progress", "Metric", "Html", "DownloadButton")


def later_chunks(folder: Path = STATIC_JS) -> list[str]:
    """The chunks of :data:`LATER_ELEMENTS` found in ``folder`` (a missing one is left out)."""
    return [c for c in (element_chunk(e, folder) for e in LATER_ELEMENTS) if c]


STATIC_IMPORT = re.compile(rb'(?:\bfrom|\bimport)\s*"\./([\w.-]+\.js)"')


def chunk_imports(chunk: str, folder: Path = STATIC_JS) -> list[str]:
    """The sibling chunks ``chunk`` imports statically (``import ... from"./x.js"``), in order, each
    once, from the head of the file where a bundler puts them. Chrome's ``modulepreload`` fetches
    only the module named, not its imports: Plotly's chunk needs three small chunks the app has not
    loaded yet, and found them only when it was imported, a round of fetches after the page's run
    had started."""
    try:
        head = (folder / chunk).read_bytes()[:8192]
    except OSError:
        return []
    names = dict.fromkeys(m.decode() for m in STATIC_IMPORT.findall(head))
    return [n for n in names if (folder / n).is_file()]


# Plotly's first chart in a page costs 60-110 ms more than the next (its drawing code compiled and set
# up on first use; in chromium on this 2-core machine: 85-146 ms against 27-37 ms for the same figure).
# Once the chunk is loaded, a small chart drawn off screen when the browser is idle, then removed, pays
# that before the page's first real chart (on the Train page, a live run's first redraw, during
# training): idle time only, so a page whose charts are waiting draws them first. It is drawn inside a
# closed shadow root, so nothing that looks for the page's charts (``.js-plotly-plot``) can ever find
# it. When done, the page's root element says so (``data-plotly-warm="done"``; tests/test_browser.py).
WARM_JS = ('const warm = () => window.requestIdleCallback && requestIdleCallback(() => {'
           ' const P = window.Plotly; if (!P || !P.newPlot) return;'
           ' const host = document.createElement("div");'
           ' host.style.cssText = "position:absolute;left:-10000px;top:0;width:400px;height:300px";'
           ' document.body.appendChild(host);'
           ' const d = document.createElement("div"); d.style.cssText = "width:400px;height:300px";'
           ' host.attachShadow({mode: "closed"}).appendChild(d);'
           ' const end = () => { P.purge(d); host.remove(); };'
           ' P.newPlot(d, [{type: "scatter", mode: "lines+markers", x: [1, 2, 3], y: [1, 10, 100]},'
           ' {type: "bar", x: [1, 2, 3], y: [3, 2, 1], xaxis: "x2", yaxis: "y2"}],'
           ' {yaxis: {type: "log"}, xaxis: {domain: [0, 0.45]}, xaxis2: {domain: [0.55, 1], anchor: "y2"},'
           ' yaxis2: {anchor: "x2"}}).then(() => { end(); document.documentElement.dataset.plotlyWarm = "done"; later(); },'
           ' end); });'
           'const later = () => window.requestIdleCallback && requestIdleCallback(() => Promise.all(LATER.map(n =>'
           ' import("./static/js/" + n).catch(() => {}))).then(() => { document.documentElement.dataset.chunksWarm = "done"; }));')


# Each chart's first draw after the one before it and a frame (see the module's docstring). Plotly's
# bundle sets ``window.Plotly`` when it is evaluated, and Streamlit's chart element calls ``Plotly.react``
# of that very object: the property's setter wraps ``react`` before any chart is drawn. A chart Plotly has
# drawn (``gd._fullLayout``) is redrawn at once; a first draw that throws does so at once, as before.
ONE_BY_ONE_JS = ('const oneByOne = (P) => { if (!P || typeof P.react !== "function" || P.kdOneByOne) return;'
                 ' P.kdOneByOne = true; const react = P.react; let last = null;'
                 ' const frame = () => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));'
                 ' P.react = function (gd, ...args) {'
                 '  if (gd && gd._fullLayout) return react.call(P, gd, ...args);'
                 '  const draw = () => react.call(P, gd, ...args);'
                 '  const run = last === null ? Promise.resolve(draw()) : last.then(frame).then(draw);'
                 '  const mine = last = run.catch(() => {}).then(() => { if (last === mine) last = null; });'
                 '  return run; }; };'
                 'let plotlyObject = window.Plotly; oneByOne(plotlyObject);'
                 'Object.defineProperty(window, "Plotly", {configurable: true, get: () => plotlyObject,'
                 ' set: (value) => { plotlyObject = value; oneByOne(value); }});')


def snippet(chunk: str, imports: list[str] = (), later: list[str] = ()) -> bytes:
    """What goes into the page's <head>: preloads of the chunk and its imports, and a script that
    imports the chunk as soon as the browser has asked the server to run the page (its first websocket
    message), so Plotly is evaluated while the server works toward the first chart. Importing it at
    page load instead held up the app's own start (the websocket's first message) by a second on a
    busy 2-core machine. As a fallback it is imported when the server's first message changes the
    document's title, or after five seconds. A classic script, so it runs while the page is parsed,
    before the app's module opens its websocket. Once Plotly is loaded it warms it up off screen
    (:data:`WARM_JS`), then imports the ``later`` chunks, both in idle time. Before any of that it has each
    chart's first draw wait for the one before it (:data:`ONE_BY_ONE_JS`). Paths are relative like
    Streamlit's own script tags (``./static/js/...``), so they hold under a base URL."""
    href = f"./static/js/{chunk}"
    links = "".join(f'<link rel="modulepreload" crossorigin href="./static/js/{name}">' for name in [chunk, *imports])
    return (links + '<script>(() => {' + ONE_BY_ONE_JS +
            'const title = document.title; let done = false;'
            f'const LATER = {json.dumps(list(later))};'
            + WARM_JS +
            'const send = WebSocket.prototype.send;'
            'const plotly = () => { if (done) return; done = true; watch.disconnect();'
            f'setTimeout(() => import("{href}").then(warm).catch(() => {{}}), 0); }};'
            'WebSocket.prototype.send = function (...args) {'
            ' WebSocket.prototype.send = send; const out = send.apply(this, args); plotly(); return out; };'
            'const watch = new MutationObserver(() => { if (document.title !== title) plotly(); });'
            'watch.observe(document.head, {childList: true, subtree: true, characterData: true});'
            'setTimeout(plotly, 5000);'
            '})();</script>').encode()


def add_to_head(html: bytes, extra: bytes) -> bytes:
    """``html`` with ``extra`` just before ``</head>`` (unchanged when there is no ``</head>``)."""
    at = html.find(b"</head>")
    return html if at < 0 else html[:at] + extra + html[at:]


class PreloadPlotly:
    """ASGI middleware: every full HTML page (status 200, ``text/html``) gets :func:`snippet` in its
    head; everything else (static files, websocket, health) passes untouched. A request that accepts
    HTML is answered uncompressed (the page is 8 KB), so the page can be edited."""

    def __init__(self, app, folder: Path = STATIC_JS):
        self.app = app
        chunk = plotly_chunk(folder)
        self.extra = snippet(chunk, chunk_imports(chunk, folder), later_chunks(folder)) if chunk else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.extra is None or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        if any(k == b"accept" and b"text/html" in v for k, v in headers):  # a page load: served uncompressed (8 KB)
            scope = {**scope, "headers": [(k, v) for k, v in headers if k != b"accept-encoding"]}
        start: dict | None = None
        body: list[bytes] = []

        async def forward(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                html = (message["status"] == 200 and headers.get(b"content-type", b"").startswith(b"text/html")
                        and b"content-encoding" not in headers)
                if not html:
                    await send(message)
                    return
                start = message  # held until the whole page is here (3 KB)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = add_to_head(b"".join(body), self.extra) if scope["method"] == "GET" else b""
            # the page differs from the file on disk: no validators that name the file's bytes
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"etag", b"last-modified")]
            if scope["method"] == "GET":
                headers.append((b"content-length", str(len(page)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page, "more_body": False})

        await self.app(scope, receive, forward)
