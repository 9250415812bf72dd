"""What every page shares: state in the URL, presenter mode, cached teachers and data.

Page state lives in ``st.query_params`` so a prepared link opens a page ready;
a value equal to its default is removed from the URL. Frozen teachers and data
sets are shared by all sessions through ``st.cache_resource`` (read-only).
"""
from __future__ import annotations

from typing import Callable

import streamlit as st

from kdviz import data as datasets
from kdviz import pretrained
from kdviz.evaluation import resolve_device


# --------------------------------------------------------------------------- URL state
def url_value(key: str, default, cast: Callable = str, valid: Callable[[object], bool] | None = None):
    """Read ``key`` from the URL; a missing value gives ``default``, a bad one a warning and ``default``."""
    raw = st.query_params.get(key)
    if raw is None:
        return default
    try:
        value = cast(raw)
        if valid is not None and not valid(value):
            raise ValueError
        return value
    except (TypeError, ValueError):
        st.warning(f"Ignored the link's value {key}={raw!r}: not valid here.")
        return default


def set_url_value(key: str, value, default) -> None:
    """Mirror a control into the URL; defaults stay out of it."""
    if value == default:
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != str(value):
        st.query_params[key] = str(value)


def bool_from_url(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# --------------------------------------------------------------------------- presenter mode
def presenter_mode() -> bool:
    """A sidebar toggle (kept in the URL as ``present=1``) for projector-sized charts."""
    on = st.sidebar.toggle("Presenter mode", value=url_value("present", False, bool_from_url),
                           help="Larger fonts and thicker lines for a projector.", key="presenter")
    set_url_value("present", int(on), 0)
    return on


def style(fig, presenter: bool):
    """Apply presenter sizes to a Plotly figure (fonts, line widths, marker sizes)."""
    if presenter:
        fig.update_layout(font=dict(size=22), title_font=dict(size=26), legend=dict(font=dict(size=20)))
        fig.update_traces(selector=dict(type="scatter"), line=dict(width=5), marker=dict(size=12))
    return fig


PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def show(fig, presenter: bool, caption: str | None = None, key: str | None = None) -> None:
    """Draw a figure with the PNG download button, and the sentence that says what to look at."""
    st.plotly_chart(style(fig, presenter), use_container_width=True, config=PLOTLY_CONFIG, key=key)
    if caption:
        st.caption(caption)


# --------------------------------------------------------------------------- shared resources
@st.cache_resource(show_spinner="Loading the teacher…")
def teacher(name: str):
    return pretrained.load(name)


@st.cache_resource(show_spinner=False)
def probe_set(name: str):
    return pretrained.probe_set(name)


@st.cache_resource(show_spinner="Loading the data set…")
def dataset(name: str):
    return datasets.load(name)


def available_datasets() -> dict[str, str]:
    """Data sets that load on this machine, with where they came from (cached per session)."""
    if "available_datasets" not in st.session_state:
        found = {}
        for name in datasets.dataset_names():
            try:
                found[name] = dataset(name).train.source
            except Exception:  # noqa: BLE001 - absent data is simply not offered
                continue
        st.session_state["available_datasets"] = found
    return st.session_state["available_datasets"]


def device_label() -> str:
    device = resolve_device("auto")
    if device.type == "cuda":
        import torch

        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU"
