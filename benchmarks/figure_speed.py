"""What building the app's figures costs the server (not part of the test suite).

    .venv/bin/python benchmarks/figure_speed.py            # prints the table
    .venv/bin/python benchmarks/figure_speed.py --write    # and replaces its block in BENCHMARKS.md

The Temperature page builds four charts for every temperature of its grid (the softmax bars, the
entropy curves, the T² figure and the dark-knowledge matrix): on a slider move, and for every other T
in the background (``common.prebuild``, 84 figures). Here the same builders (app/figures.py) get the
shipped teacher's numbers (mnist-cnn: its probe images' logits, the T² figure's gradient sizes and the
dark-knowledge matrix of those images) and the figures are built in one process two ways, alternately:

- *now*: as the app builds them, with plotly_white as Plotly's default template (set by app/figures.py);
- *template per figure*: as the app built them before, Plotly's own default template and then
  ``update_layout(template="plotly_white")`` on each figure, which Plotly validates anew every time.

Both ways must give the same figure JSON, as data (checked for every figure, or the script stops). Printed:
milliseconds per figure of each kind, the best of ``--repeats`` for each way, and their ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import plotly.io as pio
import torch

from kdviz import pretrained
from kdviz.evaluation import predict_logits
from kdviz.probes import softening
from kdviz.probes import temperatures as temps

from sections import replace_section
from speed import machine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "app"))

import figures  # noqa: E402 - the app's figure builders (app/ on the path above)

START, END = "<!-- figure-speed:start -->", "<!-- figure-speed:end -->"
TEACHER = "mnist-cnn"


def temperature_charts(teacher: str = TEACHER) -> dict[str, callable]:
    """(kind, T) -> a builder of that chart, for every T of the grid: what ``common.prebuild`` builds
    for the Temperature page's first probe image."""
    probe = pretrained.probe_set(teacher)
    logits = predict_logits(pretrained.load(teacher), probe, device="cpu")
    classes, labels, z = list(probe.classes), probe.labels, logits[0]
    curves = temps.softening_curves(z)
    scale = softening.kd_gradient_scale(logits[:256], temps.T_GRID)
    charts = {}
    for t in temps.T_GRID:
        matrix = temps.dark_knowledge_matrix(logits, labels, t, len(classes))
        pairs = temps.similar_pairs(matrix, classes, k=5)
        charts[("bars", t)] = lambda t=t: figures.softmax_bars(z.tolist(), curves, classes, t, int(labels[0]), animate=False)
        charts[("entropy", t)] = lambda t=t: figures.entropy_curves(curves, t)
        charts[("t2", t)] = lambda t=t: figures.t_squared_figure(scale, t)
        charts[("matrix", t)] = lambda t=t, m=matrix, p=pairs: figures.dark_knowledge_heatmap(m, classes, t, p)
    return charts


def template_per_figure(build):
    """The figure as the app built it before: Plotly's own default, then plotly_white given to the figure."""
    now = pio.templates.default
    pio.templates.default = "plotly"
    try:
        return build().update_layout(template="plotly_white")
    finally:
        pio.templates.default = now


WAYS = {"now": lambda build: build(), "template per figure": template_per_figure}


def measure(charts: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per figure of each kind, best of ``repeats`` passes over every chart, each way in turn."""
    for key, build in charts.items():  # the same figure both ways, and the first build's costs paid here
        a, b = (json.loads(way(build).to_json()) for way in WAYS.values())
        if a != b:  # as data: the order of the layout's keys differs
            raise SystemExit(f"the two ways give different figures for {key}")
    best: dict[str, dict[str, float]] = {way: {} for way in WAYS}
    for _ in range(repeats):
        for way, make in WAYS.items():
            spent: dict[str, list[float]] = {}
            for (kind, _t), build in charts.items():
                start = time.perf_counter()
                make(build)
                spent.setdefault(kind, []).append(time.perf_counter() - start)
            for kind, times in spent.items():
                best[way][kind] = min(best[way].get(kind, float("inf")), statistics.mean(times))
    return best


def markdown(best: dict, n: int, about: str, command: str) -> str:
    now, before = best["now"], best["template per figure"]
    lines = [START, "## Building the app's figures (`benchmarks/figure_speed.py`)", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}). Machine: {about}.", "",
             f"The Temperature page's four charts at each of the {len(temps.T_GRID)} temperatures of its grid "
             f"({n} figures: what a slider move builds, and the page's background build for the other T), built by "
             "the app's own builders from the shipped mnist-cnn's numbers in one process, best of the passes, each "
             "way in turn. *Now*: plotly_white is Plotly's default template (set once by app/figures.py); *template "
             "per figure*: as before, plotly_white given to each figure, which Plotly validates every time. The two "
             "ways give the same figure JSON (as data, checked for every figure).", "",
             "| chart | now (ms a figure) | template per figure (ms a figure) | speed-up |", "|---|---:|---:|---:|"]
    for kind in now:
        lines.append(f"| {kind} | {1000 * now[kind]:.1f} | {1000 * before[kind]:.1f} | {before[kind] / now[kind]:.1f}x |")
    total_now, total_before = (sum(w[k] for k in now) * len(temps.T_GRID) for w in (now, before))
    lines += ["", f"All {n} figures: {total_now:.2f} s now against {total_before:.2f} s "
              f"({total_before / total_now:.1f}x).", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="replace this benchmark's block in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    about = machine(torch.device("cpu"))
    charts = temperature_charts()
    best = measure(charts, args.repeats)
    command = "python benchmarks/figure_speed.py" + (f" --repeats {args.repeats}" if args.repeats != 3 else "") + " --write"
    block = markdown(best, len(charts), about, command)
    print(block)
    if args.write:
        replace_section(REPO / "BENCHMARKS.md", START, END, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
