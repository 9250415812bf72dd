"""The script every session runs: the page list (served by app/streamlit_app.py, the entry point:
``streamlit run app/streamlit_app.py``).

Pages live in ``app/views/`` (not ``pages/``: that name makes Streamlit serve a first deep link
without this navigation); this file only lists them. Layout and wording are
in the pages, figures in ``app/figures*.py``, every number comes from ``kdviz``.
"""
import sys
from pathlib import Path

# The one place the app's folder (for the pages' `import common`) and the repository (for `kdviz`
# when it is not installed) go on the import path; the tests' conftest does the same.
for _folder in (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import streamlit as st  # noqa: E402

from kdviz.settings import check_server_settings  # noqa: E402

import timings  # noqa: E402

st.set_page_config(page_title="kdviz: see knowledge distillation", page_icon=":material/local_fire_department:", layout="wide")

PAGES = {
    "Start": [
        st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    ],
    "Dark knowledge": [
        st.Page("views/temperature.py", title="Temperature", icon=":material/thermostat:", url_path="temperature"),
        st.Page("views/train.py", title="Train (live)", icon=":material/model_training:", url_path="train"),
        st.Page("views/compare.py", title="Compare", icon=":material/bar_chart:", url_path="compare"),
        st.Page("views/experiments.py", title="Experiments", icon=":material/science:", url_path="experiments"),
    ],
    "Inside the networks": [
        st.Page("views/attention.py", title="Attention maps", icon=":material/visibility:", url_path="attention"),
        st.Page("views/fsp.py", title="FSP matrices", icon=":material/grid_on:", url_path="fsp"),
        st.Page("views/factors.py", title="Factor space", icon=":material/scatter_plot:", url_path="factors"),
        st.Page("views/relations.py", title="Relations (RKD)", icon=":material/hub:", url_path="relations"),
        st.Page("views/confusion.py", title="Confusion", icon=":material/compare_arrows:", url_path="confusion"),
        st.Page("views/soft_targets.py", title="Soft targets in training", icon=":material/target:", url_path="soft-targets"),
    ],
}

page = st.navigation(PAGES)
try:  # the server's own settings (KDVIZ_MAX_JOBS, KDVIZ_JOB_NICE, ...): a bad one is said on every page
    check_server_settings()
except ValueError as error:
    st.error(f"This server's settings are wrong: {error}. Fix it in the environment the server starts in, "
             "then restart it.")
    st.stop()
with timings.page_run(page.url_path or "home"):  # one line per full run (and its first chart) when KDVIZ_APP_TIMINGS is set
    page.run()
