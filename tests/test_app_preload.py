"""app/preload.py: the app's HTML page asks for Plotly's chunk at once; nothing else is touched.

The middleware is driven as the server drives it (ASGI messages), around a tiny app that answers like
Streamlit's static files: the page in two body parts with its length and validators, or a script.
"""
from __future__ import annotations

import asyncio
import json

import preload

PAGE = b"<!DOCTYPE html><html><head><title>Streamlit</title></head><body><div id=root></div></body></html>"


def _serve(app, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[dict, bytes]:
    """One GET through ``app``: the response start and the whole body."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start, body


def _static(seen: list):
    """Answers like Streamlit's static files: HTML for a page path, JavaScript under /static."""
    async def app(scope, receive, send):
        seen.append(scope["headers"])
        script = scope["path"].startswith("/static/")
        body = b"console.log(1)" if script else PAGE
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/javascript" if script else b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()), (b"etag", b'"abc"'), (b"cache-control", b"no-cache")]})
        half = len(body) // 2
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": body[half:], "more_body": False})
    return app


def test_the_installed_streamlit_has_one_plotly_chunk_and_the_snippet_names_it():
    chunk = preload.plotly_chunk()
    assert chunk is not None and chunk.startswith("PlotlyChart.") and (preload.STATIC_JS / chunk).is_file()
    extra = preload.snippet(chunk).decode()
    assert f'<link rel="modulepreload" crossorigin href="./static/js/{chunk}">' in extra
    assert f'import("./static/js/{chunk}")' in extra


def _folder(tmp_path, *names):
    for name in names:
        (tmp_path / name).write_text("")
    return tmp_path


def test_a_page_gets_the_snippet_in_its_head_with_a_true_length_and_no_stale_validators(tmp_path):
    seen: list = []
    app = preload.PreloadPlotly(_static(seen), _folder(tmp_path, "PlotlyChart.test.js", "index.abc.js"))
    start, body = _serve(app, "/temperature", [(b"accept", b"text/html,*/*"), (b"accept-encoding", b"gzip")])
    assert body == PAGE.replace(b"</head>", preload.snippet("PlotlyChart.test.js") + b"</head>")
    headers = dict(start["headers"])
    assert int(headers[b"content-length"]) == len(body)
    assert b"etag" not in headers and headers[b"cache-control"] == b"no-cache"
    assert (b"accept-encoding", b"gzip") not in seen[0]  # asked for uncompressed, so it can be edited


def test_scripts_and_other_requests_pass_unchanged(tmp_path):
    seen: list = []
    app = preload.PreloadPlotly(_static(seen), _folder(tmp_path, "PlotlyChart.test.js"))
    start, body = _serve(app, "/static/js/index.js", [(b"accept", b"*/*"), (b"accept-encoding", b"gzip")])
    assert body == b"console.log(1)" and dict(start["headers"])[b"etag"] == b'"abc"'
    assert (b"accept-encoding", b"gzip") in seen[0]
    # no chunk found, or two (another Streamlit build): the page itself is served as it is
    for names in ((), ("PlotlyChart.a.js", "PlotlyChart.b.js")):
        folder = tmp_path / f"build{len(names)}"
        folder.mkdir()
        _, body = _serve(preload.PreloadPlotly(_static([]), _folder(folder, *names)), "/", [(b"accept", b"text/html")])
        assert body == PAGE


def test_add_to_head_leaves_a_page_without_a_head_alone():
    assert preload.add_to_head(b"<p>hi</p>", b"<x>") == b"<p>hi</p>"
    assert preload.add_to_head(b"<head></head>", b"<x>") == b"<head><x></head>"


def test_the_chunks_own_imports_are_preloaded_too_each_once_and_only_those_that_exist(tmp_path):
    """Chrome's modulepreload fetches the named module, not what it imports: the chunk's static imports
    (``import{..}from"./x.js"``, ``import"./y.js"``) get their own preloads, in order and once each."""
    folder = _folder(tmp_path, "a.1.js", "b.2.js")
    (folder / "PlotlyChart.t.js").write_text('import{o as e}from"./a.1.js";import"./b.2.js";'
                                             'import{x}from"./a.1.js";import{y}from"./gone.3.js";var z=1;')
    assert preload.chunk_imports("PlotlyChart.t.js", folder) == ["a.1.js", "b.2.js"]
    assert preload.chunk_imports("missing.js", folder) == []
    extra = preload.snippet("PlotlyChart.t.js", ["a.1.js", "b.2.js"]).decode()
    links = [f'<link rel="modulepreload" crossorigin href="./static/js/{n}">' for n in ("PlotlyChart.t.js", "a.1.js", "b.2.js")]
    assert extra.startswith("".join(links))
    _, body = _serve(preload.PreloadPlotly(_static([]), folder), "/", [(b"accept", b"text/html")])
    assert b"".join(link.encode() for link in links) in body


def test_the_installed_plotly_chunk_imports_only_files_that_are_there():
    chunk = preload.plotly_chunk()
    imports = preload.chunk_imports(chunk)
    assert imports and all((preload.STATIC_JS / name).is_file() for name in imports)
    assert len(imports) == len(set(imports))


def test_an_elements_chunk_is_its_own_name_only_and_the_live_views_chunks_are_found():
    """``Progress`` is not ``ProgressBar``; two candidates or none give None. The installed Streamlit has a
    chunk for each element a Start click brings, and the page imports them by name in idle time."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(Path(tmp), "Progress.a1.js", "ProgressBar.b2.js", "ProgressBar.c3.js", "Metric.d4.js")
        assert preload.element_chunk("Progress", folder) == "Progress.a1.js"
        assert preload.element_chunk("ProgressBar", folder) is None  # two of them
        assert preload.element_chunk("Html", folder) is None
        assert preload.later_chunks(folder) == ["Progress.a1.js", "Metric.d4.js"]  # the missing ones left out
    found = preload.later_chunks()
    assert [name.split(".")[0] for name in found] == list(preload.LATER_ELEMENTS)
    extra = preload.snippet(preload.plotly_chunk(), [], found).decode()
    assert f"const LATER = {json.dumps(found)};" in extra and "chunksWarm" in extra
