"""What every page shares: state in the URL, presenter mode, cached teachers and data.

Page state lives in ``st.query_params`` so a prepared link opens a page ready;
a value equal to its default is removed from the URL. Frozen teachers and data
sets are shared by all sessions through ``st.cache_resource`` (read-only).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

for _path in (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent):  # app/ and the repo
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import streamlit as st  # noqa: E402

from kdviz import data as datasets  # noqa: E402
from kdviz import pretrained, teachers  # noqa: E402
from kdviz.evaluation import resolve_device  # noqa: E402


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


def url_widget(widget: Callable, label: str, *, key: str, default, cast: Callable = str,
               valid: Callable[[object], bool] | None = None, url_key: str | None = None,
               to_url: Callable = str, **kwargs):
    """A widget whose value starts from the URL and is mirrored back into it.

    The first time the widget is drawn in a session its value comes from the link
    (``url_key``, default ``key``); a bad value is refused with a warning. Later the
    value comes from the widget, and is also kept for the session, so moving to another
    page and back (which clears the URL) finds the controls as they were."""
    url_key = url_key or key
    options = kwargs.get("options")
    ok = lambda v: (valid is None or valid(v)) and (options is None or v in list(options))  # noqa: E731
    kept = f"_kept_{key}"
    if key not in st.session_state:
        value = url_value(url_key, None, cast, ok)
        if value is None:
            value = st.session_state.get(kept, default)
            if not ok(value):
                value = default
        st.session_state[key] = value
    elif not ok(st.session_state[key]):  # e.g. a preset naming a teacher that is not here
        st.session_state[key] = default
    else:
        # Widgets on different pages have different ids even with one key, so a page change would
        # draw this one afresh at its default (presenter mode switched itself off). Writing the value
        # back before the widget is drawn hands it to the new page's widget.
        st.session_state[key] = st.session_state[key]
    value = widget(label, key=key, **kwargs)
    st.session_state[kept] = value
    set_url_value(url_key, to_url(value), to_url(default))
    return value


def choice(label: str, options, *, key: str, default=None, container=st, **kwargs):
    """A selectbox in the URL; ``default`` is the first option unless given."""
    options = list(options)
    default = options[0] if default is None or default not in options else default
    by_text = {str(o): o for o in options}
    return url_widget(container.selectbox, label, key=key, default=default, options=options,
                      cast=lambda raw: by_text[raw] if raw in by_text else _refuse(raw), **kwargs)


def _refuse(raw):
    raise ValueError(raw)


def number(label: str, *, key: str, default, low=None, high=None, kind=float, container=st, **kwargs):
    """A number input in the URL, refused outside [low, high]."""
    in_range = lambda v: (low is None or v >= low) and (high is None or v <= high)  # noqa: E731
    return url_widget(container.number_input, label, key=key, default=kind(default), cast=kind, valid=in_range,
                      min_value=None if low is None else kind(low), max_value=None if high is None else kind(high),
                      **kwargs)


def grid_slider(label: str, grid, *, key: str, default, container=st, **kwargs):
    """A select-slider over a (log) grid; a link's value between grid points snaps to the nearest one."""
    from kdviz.probes.softening import nearest

    grid = list(grid)
    url_key = kwargs.pop("url_key", key)
    raw = st.query_params.get(url_key)
    if key not in st.session_state and raw is not None:
        try:
            value = float(raw)
            if not grid[0] <= value <= grid[-1]:
                raise ValueError
            st.query_params[url_key] = f"{nearest(grid, value):g}"
        except ValueError:
            pass  # url_widget refuses it with a message
    return url_widget(container.select_slider, label, key=key, default=default, cast=float, options=grid,
                      url_key=url_key, to_url=lambda v: f"{v:g}", format_func=lambda v: f"{v:g}", **kwargs)


# --------------------------------------------------------------------------- presenter mode
# Presenter mode is for a projector (1024×768 or 1280×720, read from the back row): larger text,
# columns that stack instead of squeezing words apart, figures taller with larger labels. A column
# holding only buttons may stay beside others (a row of Start / Pause / Stop), any other column is
# at least PRESENTER_COLUMN wide, so at a projector's width columns stack one under the other.
PRESENTER_COLUMN = "24rem"
PRESENTER_CSS = f"""<style>
html {{font-size: 19px;}}
[data-testid="stMainBlockContainer"] {{padding-left: 1.5rem; padding-right: 1.5rem; max-width: 100%;}}
.stMarkdown p, .stMarkdown li, [data-testid="stCaptionContainer"] p {{font-size: 1.2rem !important; hyphens: manual;}}
[data-testid="stHorizontalBlock"] {{flex-wrap: wrap !important; row-gap: 0.75rem;}}
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {{min-width: min(100%, {PRESENTER_COLUMN}) !important;
    flex: 1 1 {PRESENTER_COLUMN} !important;}}
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:not(:has(.stPlotlyChart, [data-testid="stImage"],
    [data-testid="stWidgetLabel"], [data-testid="stDataFrame"], [data-testid="stMetric"],
    [data-testid="stMarkdownContainer"] p:not(button p))) {{min-width: fit-content !important; flex: 1 1 auto !important;}}
[data-testid="stImageCaption"] {{font-size: 1rem !important;}}
</style>"""


def presenter_mode() -> bool:
    """A sidebar toggle (kept in the URL as ``present=1``) for projector-sized text and charts."""
    on = url_widget(st.sidebar.toggle, "Presenter mode", key="present", default=False, cast=bool_from_url,
                    to_url=lambda v: str(int(v)),
                    help="For a projector: larger text and charts, columns stacked one under the other.")
    if on:
        st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
    return on


PRESENTER_FONT = 20


def style(fig, presenter: bool):
    """Apply presenter sizes to a Plotly figure: larger text (titles, ticks, legend, annotations,
    bar and cell labels), thicker lines and markers, and a taller figure to hold them."""
    if presenter:
        f = PRESENTER_FONT
        fig.update_layout(font=dict(size=f), title_font=dict(size=f + 4), legend=dict(font=dict(size=f - 2)))
        fig.update_annotations(font_size=f)
        fig.update_traces(selector=dict(type="scatter"), line=dict(width=4), marker=dict(size=11))
        fig.update_traces(selector=dict(type="heatmap"), textfont=dict(size=f - 4))
        fig.update_traces(selector=dict(type="bar"), textfont=dict(size=f - 4))
        if fig.layout.height:
            fig.update_layout(height=int(fig.layout.height * 1.3))
        margin = fig.layout.margin
        fig.update_layout(margin=dict(l=max(margin.l or 0, 70), b=max(margin.b or 0, 60)))
    return fig


PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def show(fig, presenter: bool, caption: str | None = None, key: str | None = None) -> None:
    """Draw a figure with the PNG download button, and the sentence that says what to look at.

    ``theme=None``: the figure is drawn as its builder made it (fonts, colour scales), not
    restyled by Streamlit's theme."""
    st.plotly_chart(style(fig, presenter), width="stretch", config=PLOTLY_CONFIG, key=key, theme=None)
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


# --------------------------------------------------------------------------- teachers
RUN_PREFIX = "run:"


def teacher_choices(dataset_name: str | None = None) -> dict[str, str]:
    """Teachers for ``dataset_name`` (all when None): the shipped ones by name and the runs trained
    here on labels (``run:<id>``, e.g. from the Train page), each with a readable label."""
    from kdviz.runs import list_runs, run_checkpoint

    found = {}
    for name in pretrained.names():
        try:
            info = pretrained.card(name)
        except Exception:  # noqa: BLE001 - a broken card is not offered
            continue
        if dataset_name in (None, info.get("dataset")):
            acc = info.get("test_acc")
            found[name] = f"{name} (shipped" + (f", {100 * acc:.2f}%)" if isinstance(acc, float) else ")")
    for r in list_runs():
        cfg = r.get("config") or {}
        if (r.get("method") == "baseline" and not cfg.get("teacher") and dataset_name in (None, cfg.get("dataset"))
                and not r.get("stopped") and run_checkpoint(r["id"]).is_file()):
            found[RUN_PREFIX + r["id"]] = f"{r['student']['name']} trained here ({100 * r['test_acc']:.2f}%, {r['id'][-4:]})"
    return found


def teacher_ref(choice_key: str) -> str:
    """What :class:`kdviz.experiment.RunConfig` takes as ``teacher``: a shipped name or a run id."""
    return choice_key.removeprefix(RUN_PREFIX)


@st.cache_resource(show_spinner="Loading the teacher…")
def load_teacher(choice_key: str):
    model, _ = teachers.resolve(teacher_ref(choice_key))
    return model.eval()


@st.cache_resource(show_spinner="Running the teacher over its images…")
def teacher_outputs(choice_key: str) -> dict:
    """A teacher with its images and their logits, shared read-only by all sessions:
    ``gallery`` is the shipped probe set (or, for a teacher trained here, 600 test images),
    ``gallery_logits`` the teacher's logits on it."""
    import torch

    from kdviz.evaluation import predict_logits
    from kdviz.runs import load_run

    model = load_teacher(choice_key)
    if choice_key.startswith(RUN_PREFIX):
        name = load_run(teacher_ref(choice_key))["config"]["dataset"]
        test = dataset(name).test
        gallery = test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:600])
    else:
        name = pretrained.card(choice_key)["dataset"]
        gallery = probe_set(choice_key)
    return {"model": model, "dataset": name, "classes": list(gallery.classes), "gallery": gallery,
            "gallery_logits": predict_logits(model, gallery, device="cpu")}


@st.cache_resource(show_spinner="Running the teacher over the test set (once; then cached on disk)…")
def teacher_test_outputs(choice_key: str) -> dict:
    """The teacher's logits on the whole test split when the data set is here (cached on disk by
    :mod:`kdviz.teacher_cache`), otherwise on its gallery; for the dark-knowledge matrix."""
    from kdviz.teacher_cache import teacher_logits

    out = teacher_outputs(choice_key)
    try:
        test = dataset(out["dataset"]).test
    except Exception:  # noqa: BLE001 - the shipped probe set is enough to draw the matrix
        return {"logits": out["gallery_logits"], "labels": out["gallery"].labels,
                "source": f"the {len(out['gallery'])} shipped probe images"}
    return {"logits": teacher_logits(out["model"], test, device="cpu"), "labels": test.labels,
            "source": f"all {len(test):,} test images"}


@st.cache_resource(show_spinner="Measuring the teacher…")
def teacher_summary(choice_key: str) -> dict:
    """A teacher's test accuracy (from its card or record), parameter count and latency per image."""
    from kdviz.models import model_summary
    from kdviz.runs import load_run

    if choice_key.startswith(RUN_PREFIX):
        acc = load_run(teacher_ref(choice_key))["test_acc"]
    else:
        acc = pretrained.card(choice_key)["test_acc"]
    return {"name": teacher_ref(choice_key), "acc": acc, **model_summary(load_teacher(choice_key))}


def error_box(error: Exception, what: str) -> None:
    """A readable message instead of a traceback."""
    st.error(f"Could not {what}: {error}")


# --------------------------------------------------------------------------- method hyperparameters
def hyperparam_widget(h, *, key: str, url_key: str | None = None, container=st):
    """A widget for one :class:`kdviz.methods.Hyperparam`, limited to its valid range, kept in the URL."""
    from kdviz.probes.softening import log_grid

    url_key = url_key or h.name
    label, help_ = f"{h.name}", h.help or None
    if h.kind == "choice":
        return url_widget(container.selectbox, label, key=key, url_key=url_key, default=h.default,
                          options=list(h.choices), help=help_)
    if h.kind == "bool":
        return url_widget(container.checkbox, label, key=key, url_key=url_key, default=bool(h.default),
                          cast=bool_from_url, to_url=lambda v: str(int(v)), help=help_)
    kind = int if h.kind == "int" else float
    if h.low is None or h.high is None:
        return number(label, key=key, url_key=url_key, default=h.default, low=h.low, high=h.high, kind=kind,
                      container=container, help=help_)
    if h.log and h.low > 0:
        grid = sorted(set(log_grid(h.low, h.high)) | {float(h.default)})
        if kind is int:
            grid = sorted({int(round(v)) for v in grid})
        return grid_slider(f"{label} (log scale)", grid, key=key, url_key=url_key, default=kind(h.default),
                           container=container, help=help_)
    in_range = lambda v: h.low <= v <= h.high  # noqa: E731
    step = 1 if kind is int else (h.high - h.low) / 100
    return url_widget(container.slider, label, key=key, url_key=url_key, default=kind(h.default), cast=kind,
                      valid=in_range, min_value=kind(h.low), max_value=kind(h.high), step=kind(step), help=help_)
