"""Plain figure builders for the Temperature, Train and Compare pages: numbers in, Plotly figures out.

No Streamlit here and no model math: every number is computed by ``kdviz`` and
handed in as lists or arrays.
"""
from __future__ import annotations

import numpy as np
import pandas  # noqa: F401 - complete before any figure: see below
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

# Plotly checks array arguments against pandas' types when pandas is in sys.modules, without importing
# it: while another thread (the server's warm-up, another session's page) is still importing pandas, a
# figure built here met a half-imported module and failed ("partially initialized module 'pandas'").
# Importing it with this module means it is complete before any figure is built.

# The look of every figure of the app (these builders and figures_inside's): Plotly's plotly_white, set
# once as Plotly's default template rather than given to each figure. A template given to a figure is
# validated again for every figure: 60-80 ms of a Temperature chart's 90-120 ms on a 2-core AMD EPYC
# (benchmarks/figure_speed.py). The default is applied as it is, and the figure's JSON is the same.
pio.templates.default = "plotly_white"

TEACHER = "#1f77b4"
HIGHLIGHT = "#d62728"
MUTED = "#9aa5b1"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def _layout(fig: go.Figure, title: str | None = None, height: int = 380) -> go.Figure:
    """Shared look. The legend sits at the very bottom of the figure (``yref="container"``), so
    Plotly reserves room for it under the axis title instead of drawing it over the axis."""
    lines = title.count("<br>") + 1 if title else 0
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=30 + 30 * lines, b=40),
                      legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, x=0, xanchor="left"))
    return fig


def _decades(fig: go.Figure, **where) -> None:
    """A log y axis labelled at powers of ten only (no crowded minor labels such as 2, 5, 2, 5)."""
    fig.update_yaxes(type="log", dtick=1, exponentformat="power", minor=dict(showgrid=False), **where)


def _si(v: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= factor:
            return f"{v / factor:g}{suffix}"
    return f"{v:g}"


def log_ticks(values) -> dict:
    """Tick values and labels for a log axis over ``values``: 1, 2 and 5 times powers of ten, each
    labelled in full (100k, 200k, 500k, 1M), instead of Plotly's crowded unlabelled minor digits."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if not finite:
        return {}
    lo, hi = min(finite) / 1.6, max(finite) * 1.6
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(ticks) > 7:  # a wide range: powers of ten only
        ticks = [t for t in ticks if f"{t:.0e}".startswith("1")]
    return {"tickvals": ticks, "ticktext": [_si(t) for t in ticks], "range": [np.log10(lo), np.log10(hi)]}


def _prob_colours(n: int, top: int, true: int | None) -> list[str]:
    colours = [MUTED] * n
    colours[top] = TEACHER
    if true is not None and true != top:
        colours[true] = HIGHLIGHT
    return colours


def _t_label(T: float) -> str:
    return f"T = {T:g}"


# --------------------------------------------------------------------------- temperature
def softmax_bars(logits, curves: dict, classes, T: float, true_label: int | None = None,
                 animate: bool = True) -> go.Figure:
    """Logits (left) and softmax(z/T) (right) for one image, at ``T``; with ``animate`` the figure
    carries one Plotly frame per temperature of ``curves["T"]`` (play button and slider run in the
    browser, no rerun) with the probability axis fixed to [0, 1]."""
    names = [str(c) for c in classes]
    temps, probs = curves["T"], curves["probs"]
    i = int(np.argmin([abs(np.log(t) - np.log(T)) for t in temps]))
    top = int(np.argmax(logits))
    colours = _prob_colours(len(names), top, true_label)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.12,
                        subplot_titles=("Teacher logits z", f"softmax(z / T) at {_t_label(temps[i])}"))
    fig.add_trace(go.Bar(x=names, y=list(map(float, logits)), marker_color=colours, name="logit", showlegend=False,
                         hovertemplate="class %{x}: logit %{y:.2f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=probs[i], marker_color=colours, name="probability", showlegend=False,
                         text=[f"{p:.2f}" if p >= 0.005 else "" for p in probs[i]], textposition="outside",
                         hovertemplate="class %{x}: p = %{y:.4f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(range=[0, 1.08], title_text="probability", row=1, col=2)
    fig.update_yaxes(title_text="logit", row=1, col=1)
    fig.update_xaxes(type="category", title_text="class")
    # the bars are coloured one by one, so the legend gets one empty entry per colour
    keys = [("teacher's answer", TEACHER), ("other classes", MUTED)]
    if true_label is not None and true_label != top:
        keys.insert(1, ("true class (the teacher is wrong)", HIGHLIGHT))
    for name, colour in keys:
        fig.add_trace(go.Bar(x=[None], y=[None], name=name, marker_color=colour, showlegend=True,
                             hoverinfo="skip"), row=1, col=2)
    fig.update_layout(showlegend=True)
    if animate:
        fig.frames = [go.Frame(name=f"{t:g}", traces=[1],
                               data=[go.Bar(y=p, text=[f"{v:.2f}" if v >= 0.005 else "" for v in p])],
                               layout=dict(annotations=[fig.layout.annotations[0].to_plotly_json(),
                                                        {**fig.layout.annotations[1].to_plotly_json(),
                                                         "text": f"softmax(z / T) at {_t_label(t)}"}]))
                      for t, p in zip(temps, probs)]
        fig.update_layout(
            updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0, y=-0.3, xanchor="left",
                              yanchor="top", pad=dict(t=0),
                              buttons=[dict(label="▶ play T", method="animate",
                                            args=[None, dict(frame=dict(duration=350, redraw=True),
                                                             transition=dict(duration=200), fromcurrent=True)]),
                                       dict(label="pause", method="animate",
                                            args=[[None], dict(mode="immediate", frame=dict(duration=0))])])],
            sliders=[dict(active=i, x=0.3, len=0.7, y=-0.3, yanchor="top", pad=dict(t=0),
                          currentvalue=dict(prefix="animated T = ", xanchor="left"),
                          steps=[dict(label=f"{t:g}", method="animate",
                                      args=[[f"{t:g}"], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                                 for t in temps])])
    fig = _layout(fig, height=520 if animate else 400)
    if animate:  # the animation controls go under the axis titles, the legend under them
        fig.update_layout(margin=dict(b=190))
    return fig


def _mark_t(fig: go.Figure, temps, T: float) -> None:
    """A log T axis over the grid with a dashed line at the chosen T (annotations on log axes take log10)."""
    lo, hi = np.log10(min(temps)) - 0.05, np.log10(max(temps)) + 0.05
    fig.add_vline(x=T, line_dash="dash", line_color="black")
    fig.add_annotation(x=np.log10(T), y=0.02, yref="paper", text=_t_label(T), showarrow=False, xanchor="left",
                       bgcolor="rgba(255,255,255,0.8)")
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if min(temps) <= t <= max(temps)]
    fig.update_xaxes(type="log", range=[lo, hi], title_text="temperature T (log scale)",
                     tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


def entropy_curves(curves: dict, T: float) -> go.Figure:
    """Entropy (nats, left axis) and top-class probability (right axis) against T on a log axis."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=curves["T"], y=curves["entropy"], name="entropy (nats)", mode="lines+markers",
                             line=dict(color=TEACHER)), secondary_y=False)
    fig.add_trace(go.Scatter(x=curves["T"], y=curves["top_prob"], name="top-class probability", mode="lines+markers",
                             line=dict(color=HIGHLIGHT)), secondary_y=True)
    fig.add_hline(y=curves["max_entropy"], line_dash="dot", line_color=TEACHER,
                  annotation_text="log C (uniform)", annotation_position="bottom right")
    _mark_t(fig, curves["T"], T)
    top = curves["max_entropy"] * 1.08
    fig.update_yaxes(title_text="entropy (nats)", range=[0, top], tickmode="linear", tick0=0,
                     dtick=0.5 if top < 4 else 1.0, secondary_y=False)
    # the right axis gets its own round ticks and no grid (a grid from both axes would disagree)
    fig.update_yaxes(title_text="top-class probability", range=[0, 1.04], tickmode="array",
                     tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], showgrid=False, secondary_y=True)
    return _layout(fig, "How soft is the teacher's answer?")


def t_squared_figure(scale: dict, T: float) -> go.Figure:
    """Size of the soft term's gradient against T, without and with Hinton's T² factor (log-log)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=scale["T"], y=scale["without_T2"], name="KL(p_t‖p_s) alone", mode="lines+markers",
                             line=dict(color=MUTED)))
    fig.add_trace(go.Scatter(x=scale["T"], y=scale["with_T2"], name="T² · KL (Hinton's loss)", mode="lines+markers",
                             line=dict(color=TEACHER)))
    _mark_t(fig, scale["T"], T)
    _decades(fig)
    fig.update_yaxes(title_text="gradient size ‖∂L/∂z_s‖")
    return _layout(fig, "Why the T² factor")


def dark_knowledge_heatmap(matrix, classes, T: float, pairs=()) -> go.Figure:
    """Rows: true class; columns: the other classes; cells: the teacher's mean softened probability."""
    names = [str(c) for c in classes]
    M = np.asarray(matrix, dtype=float)
    z = np.where(np.isfinite(M), M, None).tolist()
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", zmin=0, colorbar=dict(title="p"),
                               hovertemplate="true %{y} → %{x}: %{z:.3f}<extra></extra>", hoverongaps=False))
    for pair in pairs:
        for r, c in ((pair["a"], pair["b"]), (pair["b"], pair["a"])):
            fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                          line=dict(color=HIGHLIGHT, width=3))
    fig.update_xaxes(type="category", title_text="other class j", side="bottom")
    fig.update_yaxes(type="category", title_text="true class c", autorange="reversed")
    return _layout(fig, f"Dark knowledge at {_t_label(T)}:<br>where each class's leftover probability goes", height=540)


# --------------------------------------------------------------------------- live training
def live_curves(step_losses: list[dict], epochs_done: list[dict]) -> go.Figure:
    """Every loss term against the step; once an epoch has been evaluated, train and test accuracy
    after each epoch beside it (no empty accuracy axes before there is a number to draw)."""
    main = [e for e in epochs_done if e.get("test_acc") == e.get("test_acc")]
    cols = 2 if main else 1
    fig = make_subplots(rows=1, cols=cols, horizontal_spacing=0.14,
                        subplot_titles=("Loss terms per step", "Accuracy per epoch")[:cols])
    terms = [k for k in (step_losses[-1] if step_losses else {}) if k not in ("step", "phase", "total")]
    for n, term in enumerate(["total", *terms]):  # the total first, so every term is drawn over it
        points = [(s["step"], s[term]) for s in step_losses if term in s]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=term, mode="lines",
                                 line=dict(color="#bbbbbb" if term == "total" else PALETTE[(n - 1) % len(PALETTE)],
                                           width=4 if term == "total" else 1.5)),
                      row=1, col=1)
    for key, colour, dash in (("train_acc", MUTED, "dot"), ("test_acc", HIGHLIGHT, "solid")) if main else ():
        fig.add_trace(go.Scatter(x=[e["epoch"] for e in main], y=[100 * e[key] for e in main], mode="lines+markers",
                                 name=key.replace("_acc", " accuracy"), line=dict(color=colour, dash=dash)), row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    _decades(fig, row=1, col=1)
    fig.update_yaxes(title_text="loss (log scale)", row=1, col=1)
    if main:
        fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=2)
        fig.update_yaxes(title_text="accuracy (%)", row=1, col=2)
    return _layout(fig, height=440)


def confusion_heatmap(confusion, classes, title: str = "Confusion matrix (test set)") -> go.Figure:
    """Counts [true, predicted]; the diagonal holds the right answers."""
    names = [str(c) for c in classes]
    m = np.asarray(confusion)
    fig = go.Figure(go.Heatmap(z=m.tolist(), x=names, y=names, colorscale="Blues", text=m.tolist(),
                               texttemplate="%{text}", hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_xaxes(type="category", title_text="predicted")
    fig.update_yaxes(type="category", title_text="true", autorange="reversed")
    return _layout(fig, title, height=480)


# --------------------------------------------------------------------------- comparing runs
def wrap_label(text: str, width: int = 26) -> str:
    """A long run label on several lines (Plotly does not wrap tick labels): the method, then its
    settings a few at a time, e.g. ``rkd<br>angle_weight=50,<br>distance_weight=25``."""
    head, _, rest = text.partition(" (")
    parts = [p.strip() for p in rest.rstrip(")").split(",")] if rest else []
    lines, line = [head], ""
    for part in parts:
        if line and len(line) + len(part) + 2 > width:
            lines.append(line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    if line:
        lines.append(line)
    return "<br>".join(lines)


def _row_label(r: dict) -> str:
    return f"{wrap_label(r['method'])}<br><i>{r['student']} · {r['epochs']} ep</i>"


def _bar_height(n: int, lines: int) -> int:
    return max(260, 110 + n * (26 + 15 * lines))


def accuracy_bars(rows: list[dict]) -> go.Figure:
    """Test error (100 − accuracy, %) per method as horizontal bars from zero, so bar lengths
    compare like the numbers of mistakes; whiskers ± one standard deviation over seeds, only where
    there are two seeds or more (one seed has no spread to show). Best method on top; each label
    ends with the accuracy and the number of seeds (labels are never cut off, bar texts can be)."""
    labels = [f"{_row_label(r)}<br><b>{100 * r['acc_mean']:.2f}% right</b> · {r['seeds']} seed{'s' if r['seeds'] > 1 else ''}"
              for r in rows]
    errors = [100 * (1 - r["acc_mean"]) for r in rows]
    spread = [100 * r["acc_std"] if r.get("acc_std") is not None else 0.0 for r in rows]
    fig = go.Figure(go.Bar(
        y=labels, x=errors, orientation="h", marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))],
        error_x=dict(type="data", array=spread, visible=True),
        hovertemplate="%{y}<br>test error %{x:.2f}%<extra></extra>"))
    top = max((e + s for e, s in zip(errors, spread)), default=1.0)
    fig.update_xaxes(title_text="test error (%), lower is better", range=[0, 1.1 * top], rangemode="tozero")
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    lines = max((label.count("<br>") + 1 for label in labels), default=1)
    return _layout(fig, "Test error per method (mean ± std over seeds)", height=_bar_height(len(rows), lines))


def change_bars(labels: list[str], changes: list[float], spreads: list[float], title: str, x_title: str) -> go.Figure:
    """Changes from a reference (in percentage points) as horizontal bars from 0, whiskers ± one
    standard deviation over seeds; each label ends with its number. Bars start at 0, so a change of
    a tenth of a point looks like one (no cut axis), and long labels never collide."""
    text = [f"{label}<br><b>{c:+.2f}</b> ± {sd:.2f}" for label, c, sd in zip(labels, changes, spreads)]
    fig = go.Figure(go.Bar(y=text, x=changes, orientation="h",
                           marker_color=[PALETTE[(i + 1) % len(PALETTE)] for i in range(len(changes))],
                           error_x=dict(type="data", array=spreads, visible=True),
                           hovertemplate="%{y}<extra></extra>"))
    ends = [c + sd for c, sd in zip(changes, spreads)] + [c - sd for c, sd in zip(changes, spreads)] + [0.0]
    lo, hi = min(ends), max(ends)
    pad = 0.1 * max(hi - lo, 0.2)
    fig.add_vline(x=0, line_color="black", line_width=1)
    fig.update_xaxes(title_text=x_title, range=[lo - pad, hi + pad])
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    return _layout(fig, title, height=_bar_height(len(changes), 2))


def gain_bars(gains: list[dict]) -> go.Figure:
    """Each method's accuracy gain over the labels-only baseline (same student and epochs), in
    percentage points, with its confidence interval over seeds; horizontal bars from 0 = no gain.
    The numbers end each label."""
    text = [(f"<b>{g['gain']:+.2f}</b> ({g['low']:+.2f} to {g['high']:+.2f})"
             if g["low"] is not None else f"<b>{g['gain']:+.2f}</b> · 1 seed: no interval") for g in gains]
    labels = [f"{_row_label(g)}<br>{t}" for g, t in zip(gains, text)]
    plus = [g["high"] - g["gain"] if g["high"] is not None else 0.0 for g in gains]
    minus = [g["gain"] - g["low"] if g["low"] is not None else 0.0 for g in gains]
    fig = go.Figure(go.Bar(y=labels, x=[g["gain"] for g in gains], orientation="h",
                           marker_color=[PALETTE[(i + 1) % len(PALETTE)] for i in range(len(gains))],
                           error_x=dict(type="data", symmetric=False, array=plus, arrayminus=minus, visible=True),
                           hovertemplate="%{y}<br>gain %{x:+.2f} points<extra></extra>"))
    ends = [g["gain"] + p for g, p in zip(gains, plus)] + [g["gain"] - m for g, m in zip(gains, minus)] + [0.0]
    lo, hi = min(ends), max(ends)
    pad = 0.1 * max(hi - lo, 0.2)
    fig.add_vline(x=0, line_color="black", line_width=1)
    fig.update_xaxes(title_text="gain over labels only (accuracy points)", range=[lo - pad, hi + pad])
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    lines = max((label.count("<br>") + 1 for label in labels), default=1)
    return _layout(fig, "Gain over labels only (95% interval over seeds)", height=_bar_height(len(gains), lines))


def tradeoff_scatter(rows: list[dict], teachers=()) -> go.Figure:
    """Accuracy against inference latency (left) and parameter count (right), one point per method;
    ``teachers`` ({name, acc, params, latency_ms}) are drawn as stars for reference."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("vs latency per image", "vs parameter count"))
    for t in teachers:
        for col, key in ((1, "latency_ms"), (2, "params")):
            fig.add_trace(go.Scatter(x=[t[key]], y=[100 * t["acc"]], name=f"teacher {t['name']}", mode="markers+text",
                                     marker=dict(size=16, symbol="star", color="black"), text=[t["name"]],
                                     textposition="bottom center", showlegend=col == 1,
                                     legendgroup=f"teacher {t['name']}"), row=1, col=col)
    for n, r in enumerate(rows):
        colour = PALETTE[n % len(PALETTE)]
        for col, key in ((1, "latency_ms"), (2, "params")):
            fig.add_trace(go.Scatter(x=[r[key]], y=[100 * r["acc_mean"]], name=f"{r['method']} · {r['student']}",
                                     mode="markers", marker=dict(size=13, color=colour),
                                     error_y=dict(type="data", array=[100 * (r.get("acc_std") or 0.0)]),
                                     showlegend=col == 1, legendgroup=str(n)), row=1, col=col)
    points = [*rows, *teachers]
    fig.update_xaxes(title_text="latency (ms / image, batch 1)", type="log", row=1, col=1,
                     **log_ticks([r["latency_ms"] for r in points]))
    fig.update_xaxes(title_text="parameters", type="log", row=1, col=2, **log_ticks([r["params"] for r in points]))
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    return _layout(fig, "Fast student or accurate student?", height=420)


def epoch_accuracy_curves(curves: list[dict]) -> go.Figure:
    """Test accuracy after each epoch, one line per run; runs of one method share a colour and one
    legend entry (the seed is in the hover)."""
    fig = go.Figure()
    labels = list(dict.fromkeys(c["label"] for c in curves))
    shown = set()
    for c in curves:
        n = labels.index(c["label"])
        fig.add_trace(go.Scatter(x=c["epoch"], y=[100 * a for a in c["test_acc"]], mode="lines+markers",
                                 name=c["label"], legendgroup=c["label"], showlegend=c["label"] not in shown,
                                 line=dict(color=PALETTE[n % len(PALETTE)]),
                                 hovertemplate=f"seed {c['seed']}, epoch %{{x}}: %{{y:.2f}}%<extra>{c['label']}</extra>"))
        shown.add(c["label"])
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="test accuracy (%)")
    return _layout(fig, "Test accuracy during training")


def alpha_t_heatmap(grid: dict) -> go.Figure:
    """Mean KD accuracy for each (α, T) pair tried; empty cells were not run."""
    acc = np.asarray(grid["acc"], dtype=float)
    z = np.where(np.isfinite(acc), 100 * acc, None).tolist()
    text = [[f"{100 * v:.2f}%<br>n={n}" if np.isfinite(v) else "" for v, n in zip(ra, rc)]
            for ra, rc in zip(acc, grid["count"])]
    fig = go.Figure(go.Heatmap(z=z, x=[f"{t:g}" for t in grid["T"]], y=[f"{a:g}" for a in grid["alpha"]],
                               colorscale="Viridis", text=text, texttemplate="%{text}", hoverongaps=False,
                               colorbar=dict(title="acc %"),
                               hovertemplate="α=%{y}, T=%{x}: %{z:.2f}%<extra></extra>"))
    fig.update_xaxes(type="category", title_text="temperature T")
    fig.update_yaxes(type="category", title_text="α (weight of the soft targets)")
    return _layout(fig, "KD accuracy over α × T", height=420)


def confusion_comparison(diff: dict, classes, titles=("before", "after")) -> go.Figure:
    """Two row-normalised confusion matrices side by side and their difference (after − before):
    blue off-diagonal cells in the difference are mistakes that went away."""
    names = [str(c) for c in classes]
    short = [wrap_label(t, 22) for t in titles]
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                        subplot_titles=(f"before: {short[0]}", f"after: {short[1]}", "difference:<br>after − before"))
    for col, key in ((1, "before"), (2, "after")):
        m = np.asarray(diff[key])
        fig.add_trace(go.Heatmap(z=np.log10(m + 1e-3).tolist(), x=names, y=names, colorscale="Blues", showscale=False,
                                 customdata=m.tolist(), zmin=-3, zmax=0,
                                 hovertemplate="true %{y}, predicted %{x}: %{customdata:.3f}<extra></extra>"),
                      row=1, col=col)
    d = np.asarray(diff["diff"], dtype=float)
    off = d.copy()
    np.fill_diagonal(off, 0)
    limit = max(float(np.abs(off).max()), 1e-3)
    fig.add_trace(go.Heatmap(z=(100 * off).tolist(), x=names, y=names, colorscale="RdBu", reversescale=True, zmid=0,
                             zmin=-100 * limit, zmax=100 * limit, colorbar=dict(title="Δ points"),
                             customdata=(100 * d).tolist(),
                             hovertemplate="true %{y}, predicted %{x}: %{customdata:+.2f} points<extra></extra>"),
                  row=1, col=3)
    fig.update_xaxes(type="category", title_text="predicted")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(title_text="true", col=1)
    lines = max(t.count("<br>") + 1 for t in short)
    return _layout(fig, height=430 + 18 * lines).update_layout(margin=dict(t=30 + 22 * lines))


# --------------------------------------------------------------------------- images
def upscale(pixels, factor: int = 4) -> np.ndarray:
    """uint8 pixels (C,H,W) as an (H·f, W·f[, 3]) array for st.image, nearest-neighbour."""
    a = np.asarray(pixels)
    a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1).astype(np.uint8)


def hard_vs_soft(classes, label: int, p1, pT, T: float) -> go.Figure:
    """What a student is taught: the one-hot label, the teacher at T = 1, and its soft targets at T."""
    names = [str(c) for c in classes]
    onehot = [1.0 if i == label else 0.0 for i in range(len(names))]
    fig = go.Figure()
    for y, name, colour in ((onehot, "the label (one-hot)", MUTED), (p1, "teacher, T = 1", TEACHER),
                            (pT, f"teacher's soft targets, {_t_label(T)}", HIGHLIGHT)):
        fig.add_trace(go.Bar(x=names, y=list(map(float, y)), name=name, marker_color=colour,
                             hovertemplate="class %{x}: %{y:.3f}<extra>" + name + "</extra>"))
    fig.update_xaxes(type="category", title_text="class")
    fig.update_yaxes(title_text="probability", range=[0, 1.02])
    return _layout(fig, height=400).update_layout(barmode="group")


# --------------------------------------------------------------------------- experiments
def _pct(values) -> list:
    return [None if v is None or v != v else 100 * float(v) for v in values]


def grouped_accuracy_bars(groups, series: dict, references=(), title: str | None = None,
                          y_title: str = "test accuracy (%)", y_range=None) -> go.Figure:
    """Bars of mean accuracy (error bars: std over seeds) for each group (x) and series (colour);
    ``series`` maps a name to (means, stds) in [0, 1]; ``references`` are (label, value) lines
    (a paper's figure)."""
    fig = go.Figure()
    for n, (name, (means, stds)) in enumerate(series.items()):
        fig.add_trace(go.Bar(x=list(groups), y=_pct(means), name=name, marker_color=PALETTE[n % len(PALETTE)],
                             error_y=dict(type="data", array=_pct(stds), visible=True),
                             text=[f"{100 * m:.1f}%" if m is not None else "" for m in means], textposition="outside",
                             hovertemplate="%{x}: %{y:.2f}%<extra>" + name + "</extra>"))
    for label, value in references:
        fig.add_hline(y=100 * value, line_dash="dash", line_color=MUTED, annotation_text=label,
                      annotation_position="top left")
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text=y_title, range=y_range)
    return _layout(fig, title)


def bias_curve_figure(curve_validation: dict, curve_test: dict, chosen: float, class_name: str,
                      paper_bias: float | None = None, mark: float | None = None) -> go.Figure:
    """Accuracy on the missing class and overall against the bias added to its output, on the held-out
    validation slice (solid; where the bias is chosen) and on the test set (dotted; only scored)."""
    fig = go.Figure()
    for curve, dash, where in ((curve_validation, "solid", "validation"), (curve_test, "dot", "test")):
        fig.add_trace(go.Scatter(x=curve["bias"], y=_pct(curve["class_acc"]), mode="lines", name=f"{class_name}s ({where})",
                                 line=dict(color=HIGHLIGHT, dash=dash)))
        fig.add_trace(go.Scatter(x=curve["bias"], y=_pct(curve["overall_acc"]), mode="lines", name=f"all digits ({where})",
                                 line=dict(color=TEACHER, dash=dash)))
    fig.add_vline(x=chosen, line_color="black", annotation_text=f"chosen: +{chosen:g}", annotation_position="bottom right")
    if paper_bias is not None:
        fig.add_vline(x=paper_bias, line_dash="dash", line_color=MUTED, annotation_text=f"Hinton: +{paper_bias:g}",
                      annotation_position="top right")
    if mark is not None and mark != chosen:
        fig.add_vline(x=mark, line_dash="dot", line_color=PALETTE[2], annotation_text=f"yours: +{mark:g}")
    fig.update_xaxes(title_text=f"bias added to the {class_name} output")
    fig.update_yaxes(title_text="accuracy (%)")
    return _layout(fig, f"Raising the bias of the class never seen ({class_name})")


def accuracy_lines(x, series: dict, x_title: str, log_x: bool = False, references=(), title: str | None = None,
                   x_labels=None) -> go.Figure:
    """Mean accuracy (band: ± std over seeds) against ``x``, one line per series; ``series`` maps a
    name to (means, stds) in [0, 1]. ``references`` are (label, x, value) points (a paper's figure)."""
    fig = go.Figure()
    for n, (name, (means, stds)) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        fig.add_trace(go.Scatter(x=list(x), y=_pct(means), mode="lines+markers", name=name, line=dict(color=colour),
                                 error_y=dict(type="data", array=_pct(stds), visible=any(s for s in stds)),
                                 hovertemplate="%{x}: %{y:.2f}%<extra>" + name + "</extra>"))
    for label, rx, value in references:
        fig.add_trace(go.Scatter(x=[rx], y=[100 * value], mode="markers+text", name=label, text=[label],
                                 textposition="top center", marker=dict(symbol="star", size=12, color=MUTED)))
    fig.update_xaxes(title_text=x_title, type="log" if log_x else None)
    if x_labels is not None:
        fig.update_xaxes(tickvals=list(x), ticktext=list(x_labels))
    fig.update_yaxes(title_text="test accuracy (%)")
    return _layout(fig, title)
