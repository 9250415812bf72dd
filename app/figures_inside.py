"""Plain figure builders for the "inside the networks" pages: numbers in, Plotly figures out.

No Streamlit and no model math here: attention maps, FSP matrices, embeddings,
distances and confusion matrices are computed by :mod:`kdviz.probes.inside` and
handed in as arrays.
"""
from __future__ import annotations

import numpy as np
import pandas  # noqa: F401 - complete before any figure: see below
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import figures  # noqa: F401 - the figures' look: Plotly's default template, set there

# Plotly checks array arguments against pandas' types when pandas is in sys.modules, without importing
# it: while another thread (the server's warm-up, another session's page) is still importing pandas, a
# figure built here met a half-imported module and failed ("partially initialized module 'pandas'").
# Importing it with this module means it is complete before any figure is built.

# one colour per role, the same on every page
ROLE_COLOURS = {"teacher": "#1f77b4", "baseline": "#9aa5b1", "student": "#d62728"}
# better / worse: blue and vermilion from Okabe & Ito's colour-blind-safe palette (not red/green)
IMPROVED, WORSENED = "#0072b2", "#d55e00"
# attention: dark = weak, bright = strong (black, purple, red, orange, pale yellow: inferno's stops).
# Not inferno's own first colour "#000004": Streamlit's chart element treats #000001..#0000xx as
# placeholders for its theme colours and swaps it for a light purple (the scale then ran
# pink/purple -> black -> yellow).
BRIGHT_IS_STRONG = [[0.0, "#000000"], [0.25, "#57106e"], [0.5, "#bc3754"], [0.75, "#f98e09"], [1.0, "#fcffa4"]]
CLASS_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")


def _layout(fig: go.Figure, height: int, title: str | None = None) -> go.Figure:
    """Shared look. The legend sits at the very bottom of the figure (``yref="container"``: Plotly
    keeps room for it under the axis titles), never over a panel's title; a figure title sits at
    the top of the figure, above the panels' own titles."""
    fig.update_layout(title=dict(text=title, y=0.99, yref="container", yanchor="top") if title else None,
                      height=height,
                      margin=dict(l=40, r=20, t=90 if title else 40, b=50),
                      legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, x=0))
    return fig


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) uint8 pixels to (H, W, 3) for go.Image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
    return image.astype(np.uint8)


def _hide_axes(fig: go.Figure) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)


# --------------------------------------------------------------------------- attention
def attention_overlay(image, maps: dict[str, list[np.ndarray]], stage_names: list[str], zmax: float,
                      opacity: float = 0.6, title: str | None = None) -> go.Figure:
    """Rows = stages, columns = models (e.g. teacher / baseline / AT student): each stage's attention
    map drawn over the image, all panels on one shared colour scale [0, ``zmax``].

    ``maps[model][stage]`` is an (H, W) array (any H, W: it is stretched over the image);
    ``image`` is (C, H, W) or (H, W) uint8 pixels."""
    models = list(maps)
    rows, cols = len(stage_names), len(models)
    rgb = _rgb(image)
    height, width = rgb.shape[:2]
    fig = make_subplots(rows=rows, cols=cols, column_titles=models, row_titles=stage_names,
                        horizontal_spacing=0.02, vertical_spacing=0.03)
    traces, where = [], []  # added in one call: Plotly checks the grid once, not once a trace
    for c, model in enumerate(models, 1):
        for r, q in enumerate(maps[model], 1):
            q = np.asarray(q, dtype=float)
            dy, dx = height / q.shape[0], width / q.shape[1]
            traces += [go.Image(z=rgb, hoverinfo="skip"),
                       go.Heatmap(z=q, x0=-0.5 + dx / 2, dx=dx, y0=-0.5 + dy / 2, dy=dy, opacity=opacity,
                                  coloraxis="coloraxis", name=f"{model} · {stage_names[r - 1]}",
                                  hovertemplate="attention %{z:.2f}<extra>%{fullData.name}</extra>")]
            where += [(r, c), (r, c)]
    fig.add_traces(traces, rows=[r for r, _ in where], cols=[c for _, c in where])
    fig.update_layout(coloraxis=dict(colorscale=BRIGHT_IS_STRONG, cmin=0, cmax=float(zmax),
                                     colorbar=dict(title=dict(text="Q·√(HW)", side="right"), thickness=14)))
    _hide_axes(fig)
    fig.update_yaxes(scaleanchor=None)
    return _layout(fig, height=max(260, 190 * rows + 60), title=title)


def at_distance_bars(distances: dict[str, list[float]], stage_names: list[str]) -> go.Figure:
    """Grouped bars: per stage, the mean AT distance ‖Q_s − Q_t‖₂ of each student to the teacher."""
    fig = go.Figure()
    for name, values in distances.items():
        role = "student" if name != "baseline" else "baseline"
        fig.add_trace(go.Bar(x=stage_names, y=list(values), name=name, marker_color=ROLE_COLOURS[role],
                             text=[f"{v:.3f}" for v in values], textposition="outside",
                             hovertemplate="%{x}: %{y:.4f}<extra>" + name + "</extra>"))
    top = max((max(v) for v in distances.values() if len(v)), default=1.0)
    fig.update_layout(barmode="group", yaxis=dict(title="‖Q_student − Q_teacher‖₂", range=[0, 1.2 * top]))
    return _layout(fig, 330)


# --------------------------------------------------------------------------- FSP
def fsp_heatmaps(matrices: dict[str, np.ndarray], first: str, second: str, shared: bool = True) -> go.Figure:
    """The FSP matrices of one stage pair side by side (rows: channels of the first stage, columns: of the
    second). ``shared``: one colour scale, the teacher's range (1st-99th percentile; larger values
    saturate), so sizes compare; otherwise each panel its own range, so patterns compare."""
    names = list(matrices)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04 if shared else 0.07)
    reference = np.asarray(matrices[names[0]], dtype=float)
    for c, name in enumerate(names, 1):
        m = np.asarray(matrices[name], dtype=float)
        lo, hi = np.percentile(reference if shared else m, [1, 99])
        axis = "coloraxis" if shared or c == 1 else f"coloraxis{c}"
        fig.add_trace(go.Heatmap(z=m, coloraxis=axis, name=name,
                                 hovertemplate=f"{first} ch %{{y}} · {second} ch %{{x}}: G = %{{z:.3f}}<extra>{name}</extra>"),
                      row=1, col=c)
        if not shared or c == 1:
            right = fig.get_subplot(1, c).xaxis.domain[1]
            bar = dict(title="G", thickness=10, x=right + 0.003 if not shared else 1.02, len=0.8)
            fig.update_layout({axis: dict(colorscale="Viridis", cmin=float(lo), cmax=float(max(hi, lo + 1e-9)),
                                          colorbar=bar)})
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(title_text=f"{first} channels", showticklabels=False, row=1, col=1)
    for c in range(1, len(names) + 1):
        fig.update_xaxes(title_text=f"{second} channels", row=1, col=c)
    return _layout(fig, 340)


def fsp_differences(differences: dict[str, np.ndarray]) -> go.Figure:
    """Student − teacher FSP matrices on one diverging scale centred at 0 (white = same as the teacher)."""
    names = list(differences)
    bound = max(float(np.percentile(np.abs(np.asarray(d, dtype=float)), 99)) for d in differences.values()) or 1.0
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04)
    for c, name in enumerate(names, 1):
        fig.add_trace(go.Heatmap(z=np.asarray(differences[name]), coloraxis="coloraxis", name=name,
                                 hovertemplate="row %{y} · col %{x}: %{z:+.3f}<extra>" + name + "</extra>"), row=1, col=c)
    fig.update_layout(coloraxis=dict(colorscale="RdBu_r", cmin=-bound, cmax=bound, colorbar=dict(title="Δ G", thickness=14)))
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return _layout(fig, 320)


def distance_bars(pairs: list[str], values: dict[str, list[float | None]], axis_title: str) -> go.Figure:
    """Grouped bars of one distance to the teacher per item (a stage pair, a stage...), one group per student."""
    fig = go.Figure()
    for name, row in values.items():
        role = "baseline" if name == "baseline" else "student"
        y = [np.nan if v is None else v for v in row]
        fig.add_trace(go.Bar(x=pairs, y=y, name=name, marker_color=ROLE_COLOURS[role],
                             text=["n/a" if v is None else f"{v:.3g}" for v in row], textposition="outside"))
    fig.update_layout(barmode="group", yaxis=dict(title=axis_title, rangemode="tozero"))
    return _layout(fig, 320)


# --------------------------------------------------------------------------- factor space
def tsne_panels(panels: dict[str, np.ndarray], labels, classes) -> go.Figure:
    """One t-SNE map per panel (title → (N, 2) points), points coloured by true class, WebGL scatter.
    The class legend is shared: clicking a class hides it in every panel."""
    names = list(panels)
    cols = 2 if len(names) > 1 else 1
    rows = -(-len(names) // cols)
    labels = np.asarray(labels)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.05, vertical_spacing=0.08)
    traces, where = [], []  # added in one call: Plotly checks the grid once, not once a trace
    for i, name in enumerate(names):
        xy = np.asarray(panels[name])
        for c, cls in enumerate(classes):
            mask = labels == c
            traces.append(go.Scattergl(x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=str(cls),
                                       legendgroup=str(cls), showlegend=i == 0,
                                       marker=dict(size=5, color=CLASS_PALETTE[c % len(CLASS_PALETTE)], opacity=0.8),
                                       hovertemplate=f"class {cls}<extra>{name}</extra>"))
            where.append((i // cols + 1, i % cols + 1))
    fig.add_traces(traces, rows=[r for r, _ in where], cols=[c for _, c in where])
    _hide_axes(fig)
    return _layout(fig, 380 * rows).update_layout(legend=dict(title="class", itemsizing="constant"))


# --------------------------------------------------------------------------- relations
def _class_ticks(labels, classes) -> tuple[list[float], list[str]]:
    labels = np.asarray(labels)
    ticks, text = [], []
    for c, cls in enumerate(classes):
        where = np.nonzero(labels == c)[0]
        if len(where):
            ticks.append(float(where.mean()))
            text.append(str(cls))
    return ticks, text


def distance_heatmaps(matrices: dict[str, np.ndarray], labels, classes, cols: int | None = None) -> go.Figure:
    """Normalised pairwise-distance matrices of a class-sorted batch, one shared colour scale
    (1 = the batch's mean distance), ``cols`` panels a row (all in one row by default). Class
    blocks are marked on the left axis of each row only: the matrices are symmetric, so the
    column labels would say the same again (and crowd into each other on a narrow panel)."""
    names = list(matrices)
    cols = min(cols or len(names), len(names))
    rows = -(-len(names) // cols)
    ticks, text = _class_ticks(labels, classes)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.03, vertical_spacing=0.08)
    for i, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=np.asarray(matrices[name]), coloraxis="coloraxis", name=name,
                                 hovertemplate="images %{y} and %{x}: %{z:.2f}<extra>" + name + "</extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    zmax = max(float(np.percentile(np.asarray(m), 99)) for m in matrices.values())
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=zmax,
                                     colorbar=dict(title="distance / mean", thickness=14)))
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(tickvals=ticks, ticktext=text, autorange="reversed", showgrid=False, scaleanchor=None,
                     showticklabels=False)
    fig.update_yaxes(showticklabels=True, col=1)
    return _layout(fig, 360 * rows if cols > 1 else 420 * rows)


def angle_histograms(histograms: dict[str, tuple[np.ndarray, np.ndarray]]) -> go.Figure:
    """Distribution of the angles ∠(x_i, x_j, x_k) over a batch's triplets, one line per model."""
    fig = go.Figure()
    for name, (shares, edges) in histograms.items():
        role = "teacher" if name == "teacher" else "baseline" if name == "baseline" else "student"
        centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
        fig.add_trace(go.Scatter(x=centres, y=100 * np.asarray(shares), mode="lines", name=name,
                                 line=dict(color=ROLE_COLOURS[role], width=3 if role != "baseline" else 2,
                                           dash="dot" if role == "baseline" else None, shape="spline"),
                                 hovertemplate="%{x:.0f}°: %{y:.2f}%<extra>" + name + "</extra>"))
    fig.update_layout(xaxis=dict(title="angle ∠(xᵢ, xⱼ, xₖ) in degrees", range=[0, 180], dtick=30),
                      yaxis=dict(title="share of triplets (%)", rangemode="tozero"))
    return _layout(fig, 330)


def correlation_bars(values: dict[str, float], title: str) -> go.Figure:
    """One bar per student: correlation of its relations with the teacher's (1 = same geometry)."""
    names = list(values)
    colours = [ROLE_COLOURS["baseline" if n == "baseline" else "student"] for n in names]
    fig = go.Figure(go.Bar(x=names, y=[values[n] for n in names], marker_color=colours,
                           text=[f"{values[n]:.3f}" for n in names], textposition="outside"))
    low = min(0.0, min(values.values()) - 0.1)  # from 0 (or below, for a negative correlation): no exaggeration
    fig.update_layout(yaxis=dict(title=title, range=[max(low, -1), 1.1]), showlegend=False)
    return _layout(fig, 300)


# --------------------------------------------------------------------------- confusion
def confusion_panels(matrices: dict[str, np.ndarray], classes, improved=None, worsened=None,
                     marked: str | None = None, cols: int | None = None) -> go.Figure:
    """Row-normalised confusion matrices side by side. Colour is √(share) so that the rare mistakes
    of a good model stay visible; the text is the share in percent. On the panel ``marked``, cells the
    method improved are outlined blue and cells it worsened orange. ``cols`` panels a row (all in
    one row by default; one a row gives each matrix the whole width, e.g. on a projector)."""
    names = list(matrices)
    labels = [str(c) for c in classes]
    cols = min(cols or len(names), len(names))
    rows = -(-len(names) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.04, vertical_spacing=0.06)
    shapes = []  # the outlines, in one call (add_shape per cell: 0.8 s for 35 cells on a busy 2-core machine)
    for c, name in enumerate(names, 1):
        m = np.asarray(matrices[name], dtype=float)
        text = [[f"{100 * v:.0f}" if v >= 0.005 else "" for v in row] for row in m]
        row, col = (c - 1) // cols + 1, (c - 1) % cols + 1
        fig.add_trace(go.Heatmap(z=np.sqrt(m), x=labels, y=labels, text=text, texttemplate="%{text}",
                                 customdata=100 * m, coloraxis="coloraxis", name=name,
                                 hovertemplate="true %{y} → predicted %{x}: %{customdata:.2f}%<extra>" + name + "</extra>"),
                      row=row, col=col)
        if name == marked:
            panel = fig.get_subplot(row, col)
            axes = dict(xref=panel.xaxis.plotly_name.replace("axis", ""), yref=panel.yaxis.plotly_name.replace("axis", ""))
            for mask, colour in ((improved, IMPROVED), (worsened, WORSENED)):
                if mask is None:
                    continue
                shapes += [dict(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                                line=dict(color=colour, width=3), **axes) for i, j in zip(*np.nonzero(np.asarray(mask)))]
    fig.update_layout(shapes=shapes)
    ticks = [0, 0.01, 0.05, 0.2, 0.5, 1]
    fig.update_layout(coloraxis=dict(colorscale="Blues", cmin=0, cmax=1,
                                     colorbar=dict(title="share", tickvals=np.sqrt(ticks).tolist(),
                                                   ticktext=[f"{100 * t:g}%" for t in ticks], thickness=14)))
    fig.update_xaxes(title_text="predicted", type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(title_text="true", col=1)
    return _layout(fig, 400 if rows == 1 else 460 * rows)


def confusion_delta(delta: np.ndarray, classes, improved, worsened, title: str) -> go.Figure:
    """Method − baseline, row-normalised, in percentage points; green where the method did better
    (more right on the diagonal, fewer of a mistake off it), red where it did worse."""
    d = np.asarray(delta, dtype=float)
    diagonal = np.eye(len(d), dtype=bool)
    benefit = np.where(diagonal, d, -d)  # positive = better, whatever the cell
    labels = [str(c) for c in classes]
    bound = float(np.abs(benefit).max()) or 1e-3
    text = [[f"{100 * v:+.1f}" if abs(v) >= 0.0005 else "" for v in row] for row in d]
    fig = go.Figure(go.Heatmap(z=benefit, x=labels, y=labels, text=text, texttemplate="%{text}",
                               customdata=100 * d, zmin=-bound, zmax=bound,
                               colorscale=[[0, WORSENED], [0.5, "#ffffff"], [1, IMPROVED]],
                               colorbar=dict(title="better →", thickness=14, showticklabels=False),
                               hovertemplate="true %{y} → predicted %{x}: %{customdata:+.2f} points<extra></extra>"))
    n_better, n_worse = int(np.asarray(improved).sum()), int(np.asarray(worsened).sum())
    fig.update_xaxes(title_text="predicted", type="category")
    fig.update_yaxes(title_text="true", type="category", autorange="reversed")
    return _layout(fig, 420, f"{title}: {n_better} cells better, {n_worse} worse")


def per_class_bars(accuracies: dict[str, np.ndarray], classes) -> go.Figure:
    """Per-class test error (100 − the diagonal of the row-normalised confusion matrix, %) of each
    model, bars from zero: a bar twice as long is twice as many mistakes on that class."""
    fig = go.Figure()
    for name, acc in accuracies.items():
        role = "teacher" if name == "teacher" else "baseline" if name == "baseline" else "student"
        fig.add_trace(go.Bar(x=[str(c) for c in classes], y=100 * (1 - np.asarray(acc)), name=name,
                             marker_color=ROLE_COLOURS[role],
                             hovertemplate="class %{x}: %{y:.2f}% wrong<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", yaxis=dict(title="test error (%), lower is better", rangemode="tozero"),
                      xaxis=dict(type="category", title="class"))
    return _layout(fig, 320)


# --------------------------------------------------------------------------- soft targets in training
def soft_target_frames(classes, teacher: np.ndarray, students: dict[str, list[np.ndarray]], frame_labels: list[str],
                       T: float, log_scale: bool = False, start: int | None = None) -> go.Figure:
    """Bars of each student's softmax(z/T) on one image, one Plotly frame per recorded frame (slider and
    play button run in the browser), with the teacher's target as black markers that stay put."""
    names = [str(c) for c in classes]
    start = len(frame_labels) - 1 if start is None else start
    colours = {n: ROLE_COLOURS["baseline" if n == "baseline" else "student"] for n in students}

    def bars(i):
        return [go.Bar(x=names, y=np.asarray(series[i]), name=n, marker_color=colours[n],
                       hovertemplate="class %{x}: %{y:.4f}<extra>" + n + "</extra>") for n, series in students.items()]

    fig = go.Figure(bars(start))
    fig.add_trace(go.Scatter(x=names, y=np.asarray(teacher), mode="markers", name=f"teacher's target (T = {T:g})",
                             marker=dict(symbol="line-ew-open", size=34, color="#000000", line=dict(width=4, color="#000000")),
                             hovertemplate="class %{x}: teacher %{y:.4f}<extra></extra>"))
    fig.frames = [go.Frame(name=label, data=bars(i), traces=list(range(len(students))))
                  for i, label in enumerate(frame_labels)]
    yaxis = dict(title=f"softmax(z / {T:g})", type="log", range=[-4, 0.05]) if log_scale else \
        dict(title=f"softmax(z / {T:g})", range=[0, 1.02])
    fig.update_layout(
        barmode="group", yaxis=yaxis, xaxis=dict(type="category", title="class"),
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.15, xanchor="left", yanchor="top",
                          buttons=[dict(label="▶ play", method="animate",
                                        args=[None, dict(frame=dict(duration=600, redraw=True), fromcurrent=True,
                                                         transition=dict(duration=300))]),
                                   dict(label="pause", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0))])])],
        sliders=[dict(active=start, x=0.24, len=0.7, y=-0.15, yanchor="top",
                      currentvalue=dict(prefix="after ", xanchor="right"),
                      steps=[dict(label=label, method="animate",
                                  args=[[label], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                             for label in frame_labels])])
    return _layout(fig, 500).update_layout(margin=dict(t=70, b=130),
                                           legend=dict(yref="paper", y=1.02, yanchor="bottom"))


def gap_curves(x: list[float], gaps: dict[str, np.ndarray], T: float, means: dict[str, np.ndarray] | None = None) -> go.Figure:
    """KL(teacher ‖ student) at temperature T per recorded frame, for each student: on the chosen image (solid)
    and, in ``means``, averaged over all followed images (dashed)."""
    fig = go.Figure()
    for series, dash, suffix in ((gaps, None, ": this image"), (means or {}, "dash", ": mean of the followed images")):
        for name, y in series.items():
            role = "baseline" if name == "baseline" else "student"
            fig.add_trace(go.Scatter(x=x[: len(y)], y=np.asarray(y), mode="lines+markers" if dash is None else "lines",
                                     name=name + suffix, line=dict(color=ROLE_COLOURS[role], width=3, dash=dash)))
    fig.update_layout(xaxis=dict(title="epochs of training"),
                      yaxis=dict(title=f"KL(t ‖ s) at T = {T:g}", rangemode="tozero"))
    return _layout(fig, 340)


def image_figure(image, title: str | None = None, size: int = 220) -> go.Figure:
    """One input image, pixel-exact."""
    fig = go.Figure(go.Image(z=_rgb(image), hoverinfo="skip"))
    _hide_axes(fig)
    fig.update_layout(width=size, height=size + (30 if title else 0), margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      title=dict(text=title, x=0.5, xanchor="center") if title else None)
    return fig


def distance_scatter(teacher: np.ndarray, students: dict[str, np.ndarray], correlations: dict[str, float]) -> go.Figure:
    """Each pair of images as a point: its normalised distance for the teacher (x) and for a student (y).
    On the diagonal, the student keeps the teacher's geometry."""
    t = np.asarray(teacher)
    upper = np.triu_indices(len(t), k=1)
    fig = go.Figure()
    top = float(t[upper].max())
    for name, s in students.items():
        s = np.asarray(s)
        top = max(top, float(s[upper].max()))
        role = "baseline" if name == "baseline" else "student"
        fig.add_trace(go.Scattergl(x=t[upper], y=s[upper], mode="markers", name=f"{name} (r = {correlations[name]:.3f})",
                                   marker=dict(size=4, color=ROLE_COLOURS[role], opacity=0.45),
                                   hovertemplate="teacher %{x:.2f}, student %{y:.2f}<extra>" + name + "</extra>"))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="same as the teacher",
                             line=dict(color="#000000", dash="dash", width=1)))
    fig.update_layout(xaxis=dict(title="teacher: distance / mean distance", range=[0, top]),
                      yaxis=dict(title="student: distance / mean distance", range=[0, top]))
    return _layout(fig, 400)
