"""kdviz app entry point: ``streamlit run app/streamlit_app.py``.

Pages live in ``app/pages/``; this file only lists them. Layout and wording are
in the pages, figures in ``app/figures*.py``, every number comes from ``kdviz``.
"""
import streamlit as st

st.set_page_config(page_title="kdviz: see knowledge distillation", page_icon="🔥", layout="wide")

PAGES = {
    "Start": [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    ],
    "Dark knowledge": [
        st.Page("pages/temperature.py", title="Temperature", icon="🌡️", url_path="temperature"),
        st.Page("pages/train.py", title="Train (live)", icon="🏋️", url_path="train"),
        st.Page("pages/compare.py", title="Compare", icon="📊", url_path="compare"),
    ],
    "Inside the networks": [
        st.Page("pages/attention.py", title="Attention maps", icon="👁️", url_path="attention"),
        st.Page("pages/fsp.py", title="FSP matrices", icon="🧮", url_path="fsp"),
        st.Page("pages/factors.py", title="Factor space", icon="🌌", url_path="factors"),
        st.Page("pages/relations.py", title="Relations (RKD)", icon="🕸️", url_path="relations"),
        st.Page("pages/confusion.py", title="Confusion", icon="🔀", url_path="confusion"),
        st.Page("pages/soft_targets.py", title="Soft targets in training", icon="🎯", url_path="soft-targets"),
    ],
}

st.navigation(PAGES).run()
