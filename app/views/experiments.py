"""Experiments: the papers' dark-knowledge experiments, the full results shipped, each quick preset live.

The shipped results are read and drawn without torch (:mod:`kdviz.experiment_results`: the catalogue, the
result files); :mod:`kdviz.experiments` (the presets' settings and the live runs: torch) is imported below
them, so that on a fresh server the first chart is sent before torch's import, most of a first view's
wait there (BENCHMARKS.md, app speed). tests/test_app_first_view.py checks the order.
"""

import streamlit as st

from kdviz.experiment_results import (
    CATALOGUE,
    ExperimentResult,
    changes_from_first,
    cost_note,
    decode_images,
    load_result,
    result_name,
    shipped_presets,
)

import common
import figures
from common import Param

# Controls of the shipped (full) results are kept in the link; a quick result's controls stay off it.
ALL = "all"  # the picker's choice that shows every experiment, one below the other
URL = common.UrlState(
    Param("exp", str, next(iter(CATALOGUE))),                               # the experiment shown (or "all")
    Param("mc_seed", int, 0, low=0),                                        # missing class: the seed's bias curve
    Param("mc_bias", float),                                                # missing class: the bias tried (default: chosen)
    Param("t_alpha", float),                                                # temperature: α of the curve (default: the result's)
    Param("ld_log", common.bool_from_url, True, to_url=common.bool_to_url),  # little data: log-scale fractions
    Param("fo_x", str, "epochs"),                                           # fast optimisation: epochs | seconds
)

st.title("Experiments: what dark knowledge can do")
st.markdown(
    "The papers' most memorable claims are experiments, not single runs: a student that learns a digit it never "
    "saw, a student that never sees a label, students taught with little data, by their own earlier generations, "
    "or by a teacher that dreams its data. Each experiment (pick one below) shows the **full** result shipped with "
    "kdviz (made by the command written under it; nothing is trained when you open this page) and lets you run a "
    "**quick** version live (under a minute on a 2-core laptop; its runs also appear on the Compare page).")
presenter = URL.presenter_mode()
DRAWN: dict = {}  # controls drawn once per page run and shared by several results (little data: both data sets)


def pct(stat) -> str:
    if not isinstance(stat, dict):
        return "–"
    spread = f" ± {100 * stat['std']:.2f}" if stat.get("n", 1) > 1 else ""
    return f"{100 * stat['mean']:.2f}{spread}%"


def seeds_note(stat) -> str:
    return f"mean ± std over {stat['n']} seeds" if isinstance(stat, dict) and stat.get("n", 1) > 1 else "one seed"


def bars(table, value_key, label_key="student"):
    return [row[label_key] for row in table], ([row[value_key]["mean"] for row in table],
                                               [row[value_key]["std"] for row in table])


def gallery(encoded, captions=None, width=70):
    images = decode_images(encoded)
    if len(images):
        st.image([figures.upscale(im, 3) for im in images], width=width, caption=captions)


def control(widget, label: str, name: str, *, key: str, default=None, valid=None, **kwargs):
    """A control for the declared URL parameter ``name``, kept in the link for the shipped (full)
    results; a quick result's controls stay off the link."""
    if key.startswith("full_"):
        return URL.widget(widget, label, name, key=key, default=default, valid=valid, **kwargs)
    st.session_state.setdefault(key, default if default is not None else URL[name].default)
    return widget(label, key=key, **kwargs)


# --------------------------------------------------------------------------- one drawer per experiment
def draw_missing_class(r: ExperimentResult, key: str) -> None:
    s, table = r.summary, {row["student"]: row for row in r.summary["table"]}
    name = s["missing_name"]
    cols = st.columns(3)
    for col, student in zip(cols, ("labels only", "KD", "KD + bias")):
        col.metric(f"test {name}s right: {student}", pct(table[student]["missing_acc"]),
                   help=f"of the {s['missing_test_images']:,} test images of {name}; {seeds_note(table[student]['missing_acc'])}")
    groups, _ = bars(r.summary["table"], "missing_acc")
    series = {f"test images of {name}": bars(r.summary["table"], "missing_acc")[1],
              "all test images": bars(r.summary["table"], "overall_acc")[1]}
    paper = s["paper"]
    refs = [(f"Hinton: {100 * paper['kd_bias_missing_acc']:.1f}% of 3s after the bias", paper["kd_bias_missing_acc"])] \
        if s["missing"] == 3 else []
    common.show(figures.grouped_accuracy_bars(groups, series, refs, y_range=[0, 105]), presenter,
                f"No student saw a {name} while it learned. The labels-only student never answers {name} "
                f"(its bar for the class it never saw stays at 0). The KD student learned what a {name} looks like "
                "from the teacher's soft targets "
                f"on the other digits alone; its output bias for {name} just stays too low, and raising it by the "
                f"amount chosen on held-out training images (+{s['bias']['mean']:.2f} on average, Hinton +3.5) "
                f"recovers nearly all of them (Hinton: 86.8% before, 98.6% after).", key=f"{key}_bars")
    per_seed = r.extras.get("per_seed", [])
    if per_seed:
        i = control(st.selectbox, "Bias curve of the KD student with seed", "mc_seed", key=f"{key}_seed",
                    options=list(range(len(per_seed))), format_func=lambda j: str(per_seed[j]["seed"])) if len(per_seed) > 1 else 0
        p = per_seed[i]
        biases = p["test_curve"]["bias"]
        mark = control(st.select_slider, "Try a bias yourself", "mc_bias", key=f"{key}_bias", default=p["bias"],
                       options=biases, format_func=lambda v: f"+{v:g}")
        j = biases.index(mark)
        st.markdown(f"At **+{mark:g}**: {100 * p['test_curve']['class_acc'][j]:.1f}% of the test {name}s and "
                    f"{100 * p['test_curve']['overall_acc'][j]:.2f}% of all test images right "
                    f"(chosen on the validation slice: +{p['bias']:g}).")
        common.show(figures.bias_curve_figure(p["validation_curve"], p["test_curve"], p["bias"], name,
                                              paper["bias"] if s["missing"] == 3 else None, mark), presenter,
                    f"Red: the {name}s, blue: all digits. Solid lines are the {s['validation_images']:,} training "
                    f"images held out of every transfer set, where the bias is chosen (the best overall accuracy); "
                    f"dotted lines are the test set, only scored. Too much bias and other digits turn into {name}s: "
                    f"the blue line falls.", key=f"{key}_curve")
    g = r.extras.get("gallery") or {}
    if g.get("of"):
        st.markdown(f"**Test {name}s the KD student gets right, without the bias**: {g['right']:,} of {g['of']:,} "
                    f"(seed {g['seed']}). It was never shown one.")
        gallery(g["images"], [f"p={p:.2f}" for p in g["probability"]])


def draw_no_labels(r: ExperimentResult, key: str) -> None:
    s = r.summary
    a, b = st.columns(2)
    a.metric("teacher's outputs only, no label", pct(s["no_labels_acc"]), help=seeds_note(s["no_labels_acc"]))
    b.metric("labels only (same budget)", pct(s["labels_acc"]), help=seeds_note(s["labels_acc"]))
    groups, values = bars(s["table"], "acc")
    refs = [("poster, lr 0.1: 98.16%", s["paper"]["acc_lr_0.1"]), ("poster, lr 0.01: 97.69%", s["paper"]["acc_lr_0.01"])]
    common.show(figures.grouped_accuracy_bars(groups, {"test accuracy": values}, refs, y_range=[95, 100]), presenter,
                "The student on the right never saw a label: it matched the teacher's softened outputs on the "
                "training images. It does as well as (here better than) the student trained on the labels, "
                "because each soft target says more than a one-hot label. Dashed: the seeds' poster (MLP-800, "
                "no labels).", key=f"{key}_bars")


def draw_temperature(r: ExperimentResult, key: str) -> None:
    s = r.summary
    alphas = s["alphas"]
    default = s["curve_alpha"] if s["curve_alpha"] in alphas else alphas[-1]
    alpha = control(st.selectbox, "Weight of the soft targets α for the curve", "t_alpha", key=f"{key}_alpha",
                    default=default, options=alphas, format_func=lambda a: f"{a:g}")
    row = alphas.index(alpha)
    curve = {f"KD, α = {alpha:g}": (s["grid_acc"][row], s["grid_std"][row])}
    fig = figures.accuracy_lines(s["temperatures"], curve, "temperature T (log scale)", log_x=True,
                                 x_labels=[f"{t:g}" for t in s["temperatures"]])
    fig.add_hline(y=100 * s["baseline_acc"]["mean"], line_dash="dash", line_color=figures.MUTED,
                  annotation_text=f"labels only: {pct(s['baseline_acc'])}")
    common.show(fig, presenter, "Student accuracy after the same budget for each temperature; the dashed line is "
                "the labels-only student. At T = 1 the teacher's outputs are nearly one-hot and carry little more "
                "than the labels; a moderate T lets the wrong classes' probabilities through.", key=f"{key}_curve")
    grid = {"alpha": alphas, "T": s["temperatures"], "acc": s["grid_acc"],
            "count": [[len(r.settings.get("seeds", [0]))] * len(s["temperatures"]) for _ in alphas]}
    worst, best = s["worst"], s["best"]
    common.show(figures.alpha_t_heatmap(grid), presenter,
                f"Every (α, T) pair tried. Best: α = {best['alpha']:g}, T = {best['T']:g} ({100 * best['acc']:.2f}%); "
                f"worst: α = {worst['alpha']:g}, T = {worst['T']:g} ({100 * worst['acc']:.2f}%). Look along the "
                "rows: with a heavy KD weight (α near 1) a low T leaves the student learning from almost one-hot "
                "targets.", key=f"{key}_grid")


def draw_little_data(r: ExperimentResult, key: str) -> None:
    s, st_ = r.summary, r.settings
    paper = s["paper"]
    shared = "full_little-data_log" if key.startswith("full_") else f"{key}_log"  # one toggle for MNIST and CIFAR-10
    if shared not in DRAWN:
        DRAWN[shared] = control(st.toggle, "Fraction on a log scale", "ld_log", key=shared)
    log_x = DRAWN[shared]
    x = [100 * row["fraction"] for row in s["table"]]
    series = {"labels only": ([row["labels_only"]["mean"] for row in s["table"]],
                              [row["labels_only"]["std"] for row in s["table"]]),
              "KD": ([row["kd"]["mean"] for row in s["table"]], [row["kd"]["std"] for row in s["table"]])}
    cifar = s["dataset"] == "cifar10"
    at5 = next((row for row in s["table"] if abs(row["fraction"] - 0.05) < 1e-9), None)
    refs = [("poster: labels only", 5.0, paper["labels_only_5pct"]), ("poster: KD", 5.0, paper["kd_5pct"])] if cifar else []
    if at5 is not None:
        a, b, c = st.columns(3)
        a.metric(f"{s['dataset']} at 5%: labels only", pct(at5["labels_only"]), help=seeds_note(at5["labels_only"]))
        b.metric(f"{s['dataset']} at 5%: KD", pct(at5["kd"]),
                 delta=f"{100 * (at5['kd']['mean'] - at5['labels_only']['mean']):+.2f} points")
        if cifar:
            c.metric("the poster at 5% (5-layer CNN)", f"{100 * paper['labels_only_5pct']:.2f}% → {100 * paper['kd_5pct']:.2f}%",
                     delta=f"{100 * (paper['kd_5pct'] - paper['labels_only_5pct']):+.2f} points")
    gaps = [100 * (row["kd"]["mean"] - row["labels_only"]["mean"]) for row in s["table"]]
    widest = s["table"][max(range(len(gaps)), key=gaps.__getitem__)]
    what = (f"{s['dataset']}, {st_['student']} taught by {st_['teacher']}: the gap between the lines is what the "
            f"teacher's soft targets add; here it is widest at {100 * widest['fraction']:g}% of the data "
            f"({max(gaps):+.2f} points) and {gaps[-1]:+.2f} points with all of it. ")
    if cifar:
        what += (f"Stars: the poster's CIFAR-10 figures at 5% (5-layer CNN: {100 * paper['labels_only_5pct']:.2f}% labels "
                 f"only, {100 * paper['kd_5pct']:.2f}% with KD). Our runs are short (at most {st_['max_epochs']} epochs, "
                 "one CPU core), so compare the gap, not the height.")
    else:
        what += "The poster's point is CIFAR-10 at 5% of the data: see the CIFAR-10 result below."
    common.show(figures.accuracy_lines(x, series, "training images used (% of the training set)", log_x=log_x,
                                       references=refs, x_labels=[f"{v:g}%" for v in x]), presenter,
                what, key=f"{key}_curve")


def draw_born_again(r: ExperimentResult, key: str) -> None:
    s = r.summary
    first, ens = s["generations"][0], s["ensemble"]
    changes = changes_from_first(s["table"])  # generations 1.. and the ensemble against generation 0, per seed
    mean, spread = [c["mean"] for c in changes], [c["std"] for c in changes]
    st.metric("generation 0 (labels only)", pct(first), help=seeds_note(first))
    steps = ", ".join(f"{m:+.2f}" for m in mean[:-1])
    common.show(figures.change_bars([c["member"] for c in changes], mean, spread,
                                    "Each generation against generation 0 (same seed)", "accuracy points"), presenter,
                "Generation 0 learned from the labels; each later generation, of the same architecture and on the "
                "same images, learned only from the one before; the last bar averages all generations' softmax "
                "outputs. Each bar is the change from generation 0 of the same seed, from zero (mean ± std over the "
                "seeds). Look at whether the bars are clearly right of zero (Furlanello et al. 2018: students beat "
                f"their teachers, the ensemble more): here generations 1 to {len(s['generations']) - 1} are {steps} "
                f"points, the ensemble {mean[-1]:+.2f} (generation 0: {100 * first['mean']:.2f}%, ensemble "
                f"{100 * ens['mean']:.2f}%). {seeds_note(ens).capitalize()}.", key=f"{key}_bars")


def draw_data_free(r: ExperimentResult, key: str) -> None:
    s = r.summary
    a, b, c = st.columns(3)
    a.metric("student, dreamed images only", pct(s["student_acc"]), help=seeds_note(s["student_acc"]))
    b.metric("labels only, real images", pct(s["labels_only_real_data"]) if s.get("labels_only_real_data") else "–",
             help="an MLP-800 trained on the 60,000 labelled training images (the no-labels experiment's shipped result)")
    c.metric("dreamed images", f"{s['dreamed_images']:,}",
             help=f"{100 * s['teacher_agrees_on_dreams']:.1f}% of them classified by the teacher as the class asked for")
    st.caption(s["method"])
    g = r.extras.get("gallery") or {}
    if g:
        st.markdown("**Dreamed (left) and real (right), per class**")
        for cls, dreamed, real in zip(g["classes"], g["dreamed"], g["real"]):
            left, right = st.columns(2)
            with left:
                gallery(dreamed, width=48)
            with right:
                gallery(real, width=48)
        st.caption("Left: what the teacher dreamed for each class from its batch-norm statistics alone; right: real "
                   "test digits, never used to dream or to train. The dreams are strokes in the right places rather "
                   "than digits a person would write, yet a student taught on them reads real digits.")


def draw_fast_optimisation(r: ExperimentResult, key: str) -> None:
    s = r.summary
    axis = control(st.radio, "Against", "fo_x", key=f"{key}_x", options=["epochs", "seconds"], horizontal=True)
    x_of = lambda c: c["epoch"] if axis == "epochs" else c["seconds"]  # noqa: E731
    third = s.get("third")
    refs = []
    if third:
        at = lambda who: third["epochs"] if axis == "epochs" else third["seconds"][who]["mean"]  # noqa: E731
        refs = [(f"FSP, own {third['epochs']}-epoch run", at("fsp"), third["fsp"]["mean"]),
                (f"scratch, own {third['epochs']}-epoch run", at("scratch"), third["scratch"]["mean"])]
    fig = figures.accuracy_lines(x_of(s["scratch"]), {"labels from scratch": (s["scratch"]["acc"], s["scratch"]["acc_std"])},
                                 "label epochs" if axis == "epochs" else "seconds of training (FSP stage included)",
                                 references=refs)
    fsp = figures.accuracy_lines(x_of(s["fsp"]), {"FSP stage, then labels": (s["fsp"]["acc"], s["fsp"]["acc_std"])}, "")
    for trace in fsp.data:
        trace.line.color = figures.PALETTE[1]
        fig.add_trace(trace)
    reach = s["epochs_to_target"]
    epochs = len(s["scratch"]["epoch"])
    fsp_reach = (f"the FSP student {reach['fsp']}" if reach["fsp"] else
                 f"the FSP student does not get there within {epochs}")
    common.show(fig, presenter, f"Both students train on the labels; the red one first spent "
                f"{r.settings['fsp_epochs']} epoch ({s['fsp_phase_s']['mean']:.0f} s) matching the teacher's FSP "
                f"matrices. Look at the left end, where a head start would show: after the first label epoch the FSP "
                f"student is at {100 * s['fsp']['acc'][0]:.2f}%, the scratch one at {100 * s['scratch']['acc'][0]:.2f}%. "
                f"Label epochs to reach the scratch student's final accuracy ({100 * s['target_acc']:.2f}%): the scratch "
                f"student {reach['scratch']}, {fsp_reach}; Yim et al. 2017 report about a third of the epochs. "
                f"Against seconds, the FSP stage's cost counts too. " + (
                    f"Stars: each student trained again with its own schedule of a third of the label epochs "
                    f"({third['epochs']}), as the paper compared them: FSP {pct(third['fsp'])}, scratch "
                    f"{pct(third['scratch'])}, against {100 * s['target_acc']:.2f}% for the scratch student after all "
                    f"{epochs}: the claim {'holds' if third['fsp_matches_full_scratch'] else 'does not hold'} here. "
                    if third else "") + f"{seeds_note(s['fsp_phase_s']).capitalize()}.", key=f"{key}_curve")


DRAWERS = {"missing-class": draw_missing_class, "no-labels": draw_no_labels, "temperature": draw_temperature,
           "little-data": draw_little_data, "born-again": draw_born_again, "data-free": draw_data_free,
           "fast-optimisation": draw_fast_optimisation}


def table(r: ExperimentResult) -> None:
    # every cell as text: a column of numbers with a "–" among them made Arrow log a traceback on the server
    rows = [{k: (pct(v) if isinstance(v, dict) and "mean" in v else "–" if v is None else f"{v:g}"
                 if isinstance(v, float) else str(v)) for k, v in row.items()}
            for row in r.summary.get("table", [])]
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")


# --------------------------------------------------------------------------- the quick preset, live
def live(name: str) -> None:
    job_key = f"experiment_job_{name}"
    job = st.session_state.get(job_key)
    running = job is not None and not job.done
    c1, c2 = st.columns([1, 4])
    if c1.button("Run the quick preset live", key=f"start_{name}", disabled=running, type="primary"):
        try:
            job = ex.LiveExperiment(name, "quick").start()
        except ValueError as error:
            common.error_box(error, "start the quick preset")
            return
        st.session_state[job_key] = job
        running = True
    if running and c2.button("Stop", key=f"stop_{name}"):
        job.stop()
    if job is None:
        return

    @st.fragment(run_every=1.0 if running else None)
    def progress() -> None:
        snap = job.snapshot()
        if snap["state"] == "queued" and snap["queue_position"]:
            st.progress(0.0, text=f"waiting for a free training slot: {snap['queue_position']} in line")
            return
        if snap["state"] in ("queued", "starting", "running"):
            fraction = snap["step"] / snap["steps"] if snap["steps"] else 0.0
            st.progress(min(fraction, 1.0), text=f"run {snap['run']} of {snap['runs'] or '?'}: {snap['label'] or 'preparing'}"
                                                 f" · {snap['elapsed']:.0f} s")
            return
        if running:  # it just ended: redraw the page once, without the timer
            st.rerun()
        if snap["state"] == "failed":
            st.error(f"The quick preset failed: {snap['error']}")
        elif snap["state"] == "stopped":
            st.warning(f"Stopped after {snap['elapsed']:.0f} s.")
        else:
            result = snap["result"]
            reused = f" ({snap['reused']} run(s) reused from an earlier click)" if snap["reused"] else ""
            st.success(f"Quick preset finished in {snap['elapsed']:.0f} s on {result.machine}{reused}: "
                       f"{len(result.records)} runs.")
            DRAWERS[name](result, f"quick_{name}")
            table(result)

    progress()


# --------------------------------------------------------------------------- the page
def dataset_of(name: str, preset: str, result: ExperimentResult | None) -> str:
    """The data set of a full preset: read from its result, or from the preset's settings where no result
    could be read (a missing file: only then is :mod:`kdviz.experiments`, and torch, imported here)."""
    if result is not None and result.settings.get("dataset"):
        return result.settings["dataset"]
    from kdviz import experiments

    return experiments.settings_for(name, preset).dataset


def shipped(name: str, preset: str, several: bool) -> None:
    """The shipped result of one full preset (``full``, or ``full-X``: another data set)."""
    stem = result_name(name, preset)
    try:
        result, unreadable = load_result(stem), None
    except FileNotFoundError:
        result, unreadable = None, None
    except ValueError as error:
        result, unreadable = None, error
    if several:
        st.subheader(dataset_of(name, preset, result))
    if unreadable is not None:
        common.error_box(unreadable, f"read the shipped result of {stem}")
        return
    if result is None:
        st.info(f"No full result is shipped for this experiment{' on this data set' if several else ''}: its "
                f"full preset did not fit the machine it was made on. Make it with `kdviz experiment {name} "
                f"--preset {preset} --out results/experiments/{stem}.json`, or run the quick preset below.")
        return
    st.caption(f"Shipped result ({result.preset} preset): `{result.command}` · "
               f"{result.date[:16].replace('T', ' ')} · {result.machine} · {cost_note(result)}")
    try:
        DRAWERS[name](result, f"full_{stem}")
        table(result)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        common.error_box(error, f"draw the shipped result of {stem}")


# One experiment at a time (a projector's worth, and its charts drawn at once); "all" lists every one.
shown = URL.widget(st.segmented_control, "Experiment", "exp", key="experiment_shown",
                   options=[*CATALOGUE, ALL], required=True,
                   format_func=lambda n: "All, one below the other" if n == ALL else CATALOGUE[n].title)
quick_boxes = {}  # experiment -> its "run the quick preset live" expander, filled once torch is imported
for name, entry in CATALOGUE.items():
    if shown not in (name, ALL):
        continue
    st.header(entry.title)
    st.caption(f"{entry.paper} · `kdviz experiment {name}`")
    presets = shipped_presets(name)
    for preset in presets:
        shipped(name, preset, len(presets) > 1)
    quick_boxes[name] = st.expander("Run the quick preset live", expanded=f"experiment_job_{name}" in st.session_state)
    st.divider()

# --------------------------------------------------------------------------- below the shipped results: torch
# Imported here, after the shipped results' charts are sent (see the docstring): the quick presets'
# settings and their live runs.
from kdviz import experiments as ex  # noqa: E402

for name, box in quick_boxes.items():
    with box:
        settings = ex.settings_for(name, "quick")
        st.caption(f"Quick preset: {settings.student} on {100 * settings.fraction:g}% of {settings.dataset}, "
                   f"{settings.epochs} epoch(s) a run, teacher {settings.teacher}.")
        live(name)
