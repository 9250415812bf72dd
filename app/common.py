"""What every page shares: declared URL state, presenter mode, drawing figures, results shared by all sessions.

Each page starts with a small table of its URL parameters (:class:`Param`: name, type,
default, range), as TensorFlow Playground's ``state.ts`` does, and one :class:`UrlState`
reads the link once; its widget helpers start from the link's value (a bad one is refused
with a warning), mirror the control back into the URL (a value equal to its default is left
out), and keep it for the session. Frozen teachers and data sets are shared by all sessions
through ``st.cache_resource`` (read-only), in :mod:`resources`.

This module imports no torch, nor anything that does (a test checks): a page's first view drawn from
shipped numbers (:mod:`kdviz.shipped`) can then be sent before torch is imported, which on a fresh
server is most of a first view's wait (BENCHMARKS.md, app speed).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from kdviz import catalogue, shipped
from kdviz.probes.temperatures import log_grid, nearest
from kdviz.records import default_runs_dir

import timings

if TYPE_CHECKING:  # a type only: kdviz.methods imports torch, which this module must not (see above)
    from kdviz.methods import Hyperparam


# --------------------------------------------------------------------------- URL state
def bool_from_url(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def bool_to_url(value: bool) -> str:
    return str(int(value))


@dataclass(frozen=True)
class Param:
    """One URL parameter of a page: its name in the link, its type (text -> value), its default
    (None: the control's first option, known only when the page runs) and its valid range.
    Options known only at run time (data sets, saved runs) are checked by the control."""

    name: str
    type: Callable = str
    default: object = None
    low: object = None
    high: object = None
    to_url: Callable = str

    def in_range(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # "nan" and "inf" parse as floats
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


PRESENT = Param("present", bool_from_url, False, to_url=bool_to_url)  # presenter mode, on every page


class UrlState:
    """A page's declared URL parameters and the link's values, read once (when the page starts).

    The widget helpers draw a control for one declared parameter: the first time in a session
    its value comes from the link; later from the control, and it is kept for the session, so
    moving to another page and back (which clears the URL) finds the controls as they were."""

    def __init__(self, *params: Param):
        self.params: dict[str, Param] = {}
        self.declare(PRESENT, *params)
        self.link = {key: st.query_params.get(key) for key in st.query_params}  # the link, read once

    def declare(self, *params: Param) -> None:
        """Add parameters known only while the page runs (the chosen method's hyperparameters)."""
        self.params.update({p.name: p for p in params})

    def __getitem__(self, name: str) -> Param:
        return self.params[name]

    def prune(self) -> None:
        """Take out of the URL what this page does not declare (e.g. another method's knobs)."""
        for key in [k for k in st.query_params if k not in self.params]:
            del st.query_params[key]

    def from_link(self, name: str, valid: Callable[[object], bool] | None = None):
        """The link's value for ``name``, or None when absent; a bad one is refused with a warning."""
        p, raw = self.params[name], self.link.get(name)
        if raw is None:
            return None
        try:
            value = p.type(raw)
            if not p.in_range(value) or (valid is not None and not valid(value)):
                raise ValueError
            return value
        except (TypeError, ValueError, KeyError):
            st.warning(f"Ignored the link's value {name}={raw!r}: not valid here.")
            return None

    # ------------------------------------------------------------------- controls
    def widget(self, widget: Callable, label: str, name: str, *, key: str, default=None,
               valid: Callable[[object], bool] | None = None, **kwargs):
        """``widget`` (a Streamlit control) for the declared parameter ``name``, kept in the URL.
        ``default`` stands in where the table's default is None (e.g. the first option)."""
        p = self.params[name]
        default = default if default is not None else p.default
        options = None if kwargs.get("options") is None else list(kwargs["options"])
        offered = lambda v: options is None or (all(x in options for x in v) if isinstance(v, list) else v in options)  # noqa: E731
        ok = lambda v: p.in_range(v) and (valid is None or valid(v)) and offered(v)  # noqa: E731
        kept = f"_kept_{key}"
        if key not in st.session_state:
            value = self.from_link(name, ok)
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
        _set_url_value(name, p.to_url(value), p.to_url(default))
        return value

    def choice(self, label: str, options, name: str, *, key: str, container=st, default=None, **kwargs):
        """A selectbox; the default is the table's (or ``default``), or the first option when that is not offered."""
        options = list(options)
        default = default if default is not None else self.params[name].default
        default = options[0] if default is None or default not in options else default
        by_text = {str(o): o for o in options}
        p = self.params[name]
        if p.type is str:  # options may be numbers: read the link's text as one of them
            self.declare(replace(p, type=lambda raw: by_text[raw]))
        return self.widget(container.selectbox, label, name, key=key, default=default, options=options, **kwargs)

    def number(self, label: str, name: str, *, key: str, container=st, **kwargs):
        """A number input limited to the parameter's range."""
        p = self.params[name]
        return self.widget(container.number_input, label, name, key=key,
                           min_value=None if p.low is None else p.type(p.low),
                           max_value=None if p.high is None else p.type(p.high), **kwargs)

    def grid_slider(self, label: str, grid, name: str, *, key: str, container=st, default=None, **kwargs):
        """A select-slider over a (log) grid; a link's value between grid points snaps to the nearest one."""
        grid = list(grid)
        p = self.params[name]
        snap = lambda raw: nearest(grid, float(raw)) if grid[0] <= float(raw) <= grid[-1] else float(raw)  # noqa: E731
        self.declare(replace(p, type=snap, to_url=lambda v: f"{v:g}"))
        return self.widget(container.select_slider, label, name, key=key, default=default, options=grid,
                           format_func=lambda v: f"{v:g}", **kwargs)

    def hyperparam(self, h: Hyperparam, *, key: str, container=st):
        """A control for one method hyperparameter, declared here from the method's own table
        (name, kind, default, range), limited to its valid range, kept in the URL."""
        label, help_ = f"{h.name}", h.help or None
        if h.kind == "choice":
            self.declare(Param(h.name, str, h.default))
            return self.choice(label, list(h.choices), h.name, key=key, container=container, help=help_)
        if h.kind == "bool":
            self.declare(Param(h.name, bool_from_url, bool(h.default), to_url=bool_to_url))
            return self.widget(container.checkbox, label, h.name, key=key, help=help_)
        kind = int if h.kind == "int" else float
        self.declare(Param(h.name, kind, kind(h.default), h.low, h.high))
        if h.low is None or h.high is None:
            return self.number(label, h.name, key=key, container=container, help=help_)
        if h.log and h.low > 0:
            grid = sorted(set(log_grid(h.low, h.high)) | {float(h.default)})
            if kind is int:
                grid = sorted({int(round(v)) for v in grid})
            return self.grid_slider(f"{label} (log scale)", grid, h.name, key=key, container=container, help=help_)
        step = 1 if kind is int else (h.high - h.low) / 100
        return self.widget(container.slider, label, h.name, key=key, min_value=kind(h.low), max_value=kind(h.high),
                           step=kind(step), help=help_)

    def presenter_mode(self) -> bool:
        """A sidebar toggle (kept in the URL as ``present=1``) for projector-sized charts."""
        on = self.widget(st.sidebar.toggle, "Presenter mode", "present", key="present",
                         help="For a projector: larger text and charts, columns stacked one under the other.")
        if on:
            st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
        return on


def _set_url_value(key: str, value: str, default: str) -> None:
    """Mirror a control into the URL; defaults stay out of it."""
    if value == default:
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != value:
        st.query_params[key] = value


def fragment_rerun() -> bool:
    """True while only a fragment reruns (its timer, or a control inside it), not the whole page."""
    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


# A slider's fragment rerun sends all of its charts within a few milliseconds; the browser then redraws
# them in one go, and the chart the viewer is watching (the first) appears only once the others are drawn
# too. Held back this long after that chart, the rest arrive after the browser has drawn it (Streamlit
# sends queued elements every 5 ms).
PAINT_FIRST_S = 0.03


def paint_first() -> None:
    """In a fragment's rerun, wait :data:`PAINT_FIRST_S` before the elements that follow, so that the
    browser draws the elements before them on their own first. Temperature slider, 20 moves on a warmed-up
    server (``benchmarks/app_speed.py``, 2-core Xeon with AMX, two alternating runs each way): the bars
    130 / 130 ms after a key press against 198 / 224 ms with ``PAINT_FIRST_S = 0``; every chart that follows T
    306 / 308 ms against 259 / 259 ms (drawn in two goes, the browser's work is a little more). A
    page's first run, and any run of the whole page, go on at once."""
    if fragment_rerun():
        time.sleep(PAINT_FIRST_S)


# --------------------------------------------------------------------------- figures
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
.katex-display {{font-size: 0.75em;}}  /* a display formula fits the projector's width */
</style>"""


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
    timings.chart_sent()
    if caption:
        st.caption(caption)


# --------------------------------------------------------------------------- shared results
# Everything a page draws from shared, read-only inputs (a teacher, its images, a temperature) is
# computed once for the whole server: the first session to ask builds it, every other session
# (30 in a classroom, moving the same slider) gets the same object. Callers key it by plain values
# (teacher link, image index, T) and must not mutate what they get.
@st.cache_resource(show_spinner=False, max_entries=4096)
def shared(kind: str, key: tuple, _build: Callable[[], object]):
    """``_build()``, once per (``kind``, ``key``) for the whole server (``_build`` is not hashed:
    ``kind`` and ``key`` must say everything the result depends on)."""
    return _build()


# A background build starts once no session's page or fragment has run for this long: begun at once,
# the Temperature page's 84 figures (3.5 s of CPU then; about a third of that since app/figures.py sets
# the template once, benchmarks/figure_speed.py) competed with the browser drawing that very page on a
# 2-core machine. A move before then builds its own charts (tens of milliseconds each).
PREBUILD_IDLE_S = 1.5
_PREBUILDS: dict[tuple, threading.Thread] = {}
_PREBUILDS_LOCK = threading.Lock()


def prebuild(job: tuple, charts: list[tuple[str, tuple, Callable[[], object]]], presenter: bool) -> None:
    """Build, in a background thread and once per server, shared figures a session is likely to ask for
    next (the Temperature page: its charts at every T of the grid for the image on screen), so that
    moving the control finds them built. ``charts`` lists (kind, key, build) as :func:`show_shared`
    takes them; ``job`` names the whole set (started once per server)."""
    with _PREBUILDS_LOCK:
        if job in _PREBUILDS:
            return

        def work() -> None:
            while timings.idle_for() < PREBUILD_IDLE_S:  # the page that asked is drawn first
                time.sleep(0.1)
            for kind, key, build in charts:
                try:
                    shared(f"figure:{kind}", (*key, presenter), lambda build=build: style(build(), presenter))
                except Exception:  # noqa: BLE001 - a figure that fails here fails (and says so) when a page asks
                    continue

        _PREBUILDS[job] = thread = threading.Thread(target=work, name="kdviz-prebuild", daemon=True)
    thread.start()


def wait_for_prebuilds(timeout: float = 120) -> None:
    """Wait until every background build started so far has finished (for tests and benchmarks)."""
    for thread in list(_PREBUILDS.values()):
        thread.join(timeout)


def show_shared(kind: str, key: tuple, build: Callable[[], object], presenter: bool, caption: str | None = None,
                chart_key: str | None = None) -> None:
    """:func:`show` for a figure built once per (``kind``, ``key``, presenter mode) for all sessions."""
    fig = shared(f"figure:{kind}", (*key, presenter), lambda: style(build(), presenter))
    st.plotly_chart(fig, width="stretch", config=PLOTLY_CONFIG, key=chart_key, theme=None)
    timings.chart_sent()
    if caption:
        st.caption(caption)


# --------------------------------------------------------------------------- teachers
# A teacher is chosen by its link (kdviz.catalogue.link: a shipped name, or run:<id>), so results cache by
# value and a link can name it. Listing them, and a shipped one's gallery, need no torch.
def teacher_choices(dataset_name: str | None = None) -> dict[str, str]:
    """Teachers for ``dataset_name`` (all when None) by link, each with a readable label: the shipped
    ones and the runs trained here on labels (e.g. from the Train page). Every rerun of every session
    asks, so the answer is shared by the whole server until a run or a teacher is added or removed
    (the folders' modification times are part of the key)."""
    runs_dir = default_runs_dir()
    return dict(_teacher_choices(dataset_name, str(runs_dir), _mtime(runs_dir), _mtime(shipped.pretrained_dir())))


def _mtime(folder) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner=False, ttl=30, max_entries=64)
def _teacher_choices(dataset_name: str | None, runs_dir: str, *_stamps) -> tuple[tuple[str, str], ...]:
    return tuple(catalogue.menu(dataset_name, Path(runs_dir)).items())


def shipped_gallery(link: str) -> dict | None:
    """A shipped teacher's gallery read from its files without torch (:func:`kdviz.shipped.teacher_gallery`),
    shared by the whole server; None for a teacher trained here, or one that ships no test-set logits
    (:func:`resources.teacher_gallery` gives the same for any teacher, through torch)."""
    return shared("shipped_gallery", (link,), lambda: shipped.teacher_gallery(link) if link in shipped.names() else None)


def shipped_test_outputs(link: str) -> dict | None:
    """A shipped teacher's logits on its whole test split and the split's labels, read from its shipped file
    without torch and without the data set (:func:`kdviz.shipped.test_labels`), as
    :func:`resources.teacher_test_outputs` gives them through both; None for a teacher trained here, or one
    whose file keeps no labels or unusable ones (the page then takes the other way, which checks the logits
    against the teacher and the test images, and computes them if it must)."""
    def build():
        try:
            labels = shipped.test_labels(link) if link in shipped.names() else None
        except shipped.PretrainedError:
            return None
        if labels is None:
            return None
        return {"logits": shipped.test_logits(link), "labels": labels, "source": f"all {len(labels):,} test images"}
    return shared("shipped_test_outputs", (link,), build)


def error_box(error: Exception, what: str) -> None:
    """A readable message instead of a traceback."""
    st.error(f"Could not {what}: {error}")
