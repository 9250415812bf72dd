"""A page's first view drawn before torch is imported (app/views/home.py): on a fresh server torch's
import is most of the wait for a first chart, so Home sends its picture from shipped numbers first."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import APP

# In a fresh interpreter: record, at each chart the page sends, whether torch has been imported yet.
PROBE = """
import json, sys
sys.path[:0] = [{app!r}, {repo!r}]
import timings
seen = []
sent = timings.chart_sent
def chart_sent():
    seen.append('torch' in sys.modules)
    sent()
timings.chart_sent = chart_sent
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({page!r}, default_timeout=120).run()
print(json.dumps({{"torch_at_charts": seen, "torch_at_end": 'torch' in sys.modules,
                  "exceptions": [e.value for e in at.exception],
                  "charts": [e.proto.id for e in at.get("plotly_chart")]}}))
"""


def first_view(page: str) -> dict:
    code = PROBE.format(app=str(APP), repo=str(APP.parent), page=str(APP / "views" / f"{page}.py"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=APP.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_home_sends_its_picture_before_torch_is_imported():
    seen = first_view("home")
    assert not seen["exceptions"], seen["exceptions"]
    assert any("home_picture" in c for c in seen["charts"])
    assert seen["torch_at_charts"] == [False]  # the picture: numpy and the shipped files only
    assert seen["torch_at_end"]  # the rest of the page (the machine, the data sets) did import it
