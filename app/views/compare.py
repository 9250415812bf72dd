"""Compare: saved runs side by side, and sweeps (methods × seeds) queued in a worker thread."""
import hashlib

import pandas as pd
import streamlit as st

from kdviz import pretrained, reference
from kdviz.experiment import RunConfig
from kdviz.live import RunQueue
from kdviz.methods import REGISTRY
from kdviz.models import MODELS
from kdviz.preset_runs import demo_configs, method_sweep
from kdviz.probes import softening
from kdviz.runs import default_runs_dir, list_runs

import common
import figures
import resources
from common import Param

URL = common.UrlState(
    Param("sw_dataset", str, "mnist"),
    Param("sw_teacher", str),               # a teacher link (kdviz.teachers.TeacherRef.link); default: the first
    Param("sw_student", str, "mlp-800"),
    Param("sw_methods", lambda raw: raw.split(","), ["baseline", "kd"], to_url=",".join),
    Param("sw_seeds", int, 2, 1, 10),
    Param("sw_epochs", int, 2, 1, 100),
    Param("sw_precision", str, "auto"),
    Param("dataset", str),                  # runs shown: default mnist when there are runs on it, else the first
)

SWEEP = "compare_sweep"  # the session's RunQueue
DEMO_SEEDS = (0, 1, 2)  # three seeds, so the demo's spread and its gain's interval are measured, not zero

st.title("Compare methods")
st.markdown("Every finished run is saved as a record. Pick some, or launch a sweep (methods × seeds on one "
            "budget: one after another here, or all at once on a Ray cluster when the server has one), "
            "and compare accuracy, its spread over seeds, speed and size, "
            "and which mistakes distillation fixed.")
presenter = URL.presenter_mode()
queue: RunQueue | None = st.session_state.get(SWEEP)
busy = queue is not None and not queue.done


# --------------------------------------------------------------------------- sweeps
def start(configs: list[RunConfig]) -> None:
    st.session_state[SWEEP] = RunQueue(configs, default_runs_dir()).start()


def sweep_progress(q: RunQueue) -> None:
    snaps = q.snapshots()
    done = sum(s["state"] in ("finished", "stopped", "failed") for s in snaps)
    st.progress(done / len(snaps), text=f"sweep: {done} of {len(snaps)} runs done" +
                (f" · on {snaps[0]['where']}" if snaps[0]["where"] else ""))
    for s in snaps:
        cfg = s["config"]
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted((cfg.params or {}).items()))
        label = f"{cfg.method}{f' ({shown})' if shown else ''} · {cfg.student} · seed {cfg.train.seed}"
        if s["state"] in ("finished", "stopped") and s["record"]:
            st.markdown(f"✅ {label}: **{100 * s['record']['test_acc']:.2f}%** in {s['record']['train_time_s']:.1f} s")
        elif s["state"] == "failed":
            st.markdown(f"❌ {label}: {s['error']}")
        elif s["state"] == "queued":
            line = f", {s['queue_position']} in line for a free training slot" if s["queue_position"] else ""
            st.markdown(f"⏳ {label}: queued{line}")
        else:
            st.progress(s["fraction"], text=f"{label}: {s['state']}, epoch {s['epoch']}/{s['epochs']}")


@st.fragment(run_every=1.0)
def live_sweep() -> None:
    q = st.session_state.get(SWEEP)
    if q is None:
        return
    sweep_progress(q)
    if q.done:
        st.rerun(scope="app")  # the new records join the charts


data_sets = resources.available_datasets()
with st.expander("Launch a sweep", expanded=busy or not list_runs()):
    demo = demo_configs(seeds=DEMO_SEEDS)
    done_here = list_runs()
    waits = [softening.measured_wait(done_here, c.dataset, c.student, c.train.epochs, bool(c.teacher)) for c in demo]
    estimate = (f"Measured on this machine ({resources.device_label()}): about {sum(w['seconds'] for w in waits) / 60:.1f} "
                "minutes for the six runs, from the median time of runs like them that finished here."
                if all(waits) else "No run like these has finished on this machine yet, so there is no measured "
                "estimate; the progress below shows each run's time left once it trains.")
    st.markdown(f"**The 5-minute demo**: MNIST, the shipped CNN teacher, an MLP-800 student, labels only against "
                f"KD (T = 4, α = 0.9), 2 epochs each, seeds {', '.join(map(str, DEMO_SEEDS))} (so the spread over "
                f"seeds is measured). {estimate}")
    has_demo_teacher = "mnist-cnn" in common.teacher_choices("mnist") and "mnist" in data_sets
    if st.button("Run the 5-minute demo", icon=":material/play_arrow:", type="primary", disabled=busy or not has_demo_teacher,
                 help=None if has_demo_teacher else "needs MNIST and the shipped mnist-cnn teacher"):
        start(demo)
        st.rerun()
    st.divider()
    st.markdown("**Your own sweep**")
    if not data_sets:
        st.warning("No data set could be loaded on this machine.")
    else:
        a, b, c = st.columns(3)
        ds = URL.choice("Data set", data_sets, "sw_dataset", key="sw_dataset", container=a)
        teachers = common.teacher_choices(ds)
        teacher = URL.choice("Teacher", teachers, "sw_teacher", key="sw_teacher", format_func=teachers.get,
                             container=b) if teachers else None
        student = URL.choice("Student", MODELS, "sw_student", key="sw_student", container=c)
        methods = URL.widget(st.multiselect, "Methods", "sw_methods", key="sw_methods", options=list(REGISTRY),
                             valid=lambda v: set(v) <= set(REGISTRY))
        a, b, c = st.columns(3)
        seeds = URL.number("Seeds per method", "sw_seeds", key="sw_seeds", container=a)
        epochs = URL.number("Epochs per run", "sw_epochs", key="sw_epochs", container=b)
        precision = URL.choice("Precision", ["auto", "fp32", "bf16"], "sw_precision", key="sw_precision", container=c,
                                  help="auto: bf16 where the hardware runs it natively, else fp32")
        grid = st.checkbox("Add an α × T grid for KD", key="sw_grid",
                           help="One KD run (seed 0) for every α and T below; fills the α × T heatmap.")
        alphas, temps = [], []
        if grid:
            a, b = st.columns(2)
            alphas = a.multiselect("α values", [0.1, 0.5, 0.9, 1.0], default=[0.5, 0.9, 1.0], key="sw_alphas")
            temps = b.multiselect("T values", [1.0, 2.0, 4.0, 8.0, 20.0], default=[1.0, 4.0, 20.0], key="sw_temps")
        needs_teacher = [m for m in methods if REGISTRY[m].needs_teacher]
        configs = method_sweep(ds, student, methods, seeds, epochs, precision,
                               resources.teacher_ref(teacher).config_value if teacher else None, alphas, temps)
        problem = ("pick at least one method" if not configs else
                   f"{', '.join(needs_teacher)} need a teacher for {ds}" if (needs_teacher or alphas) and not teacher
                   else None)
        if problem:
            st.caption(f"Cannot start: {problem}.")
        if st.button(f"Start the sweep ({len(configs)} runs)", icon=":material/play_arrow:", disabled=busy or bool(problem)):
            start(configs)
            st.rerun()
    if queue is not None:
        if busy:
            if st.button("Stop the sweep", icon=":material/stop:"):
                queue.stop()
                queue.join(5)
                st.rerun()
            live_sweep()
        else:
            sweep_progress(queue)

# --------------------------------------------------------------------------- reference results
def reference_results() -> None:
    """The shipped reference results (``results/reference/``, the files BENCHMARKS.md is drawn
    from): our number beside the paper's, the budget and the command, before anything is trained."""
    try:
        tables = reference.tables()
    except ValueError as error:
        st.warning(f"The reference results could not be read: {error}")
        return
    if not tables:
        return
    st.subheader("Reference results: ours beside the papers'")
    st.markdown("Measured with kdviz at the budget each table names and shipped with the app, so they show "
                "before anything is trained here. Every row gives the command that reproduces it; **Re-run** "
                "queues the row's seeds as a sweep on this machine, and its runs join the comparison below.")
    shipped = set(pretrained.names())
    for number, table in enumerate(tables):
        with st.expander(table.title, expanded=number == 0):
            measured = (f"Measured {table.measured} on {table.machine}." if any(r.runs for r in table.rows)
                        else "Not measured yet: re-run a row to measure it here.")
            st.caption(f"Budget: {table.budget}. {measured}")
            frame = pd.DataFrame(reference.overview(table))
            st.dataframe(frame[["row", "ours (mean ± std, %)", "paper", "budget", "command", "per seed", "errors"]],
                         hide_index=True)
            for note in table.notes:
                st.caption(note)
            a, b = st.columns([3, 1])
            labels = [row.label for row in table.rows]
            label = a.selectbox("Row to re-run", labels, key=f"ref_row_{table.key}")
            row = table.rows[labels.index(label)]
            blocked = reference.cannot_run(row, shipped)
            why = blocked or f"{len(row.seeds)} runs (seeds {', '.join(map(str, row.seeds))}): {row.command}"
            if b.button("Re-run", key=f"ref_run_{table.key}", icon=":material/replay:", disabled=busy or bool(blocked),
                        help=why):
                start(reference.row_configs(row, save_model=True))
                st.rerun()
            if blocked:
                st.caption(f"This row cannot be re-run here: it {blocked}.")


reference_results()

# --------------------------------------------------------------------------- pick runs
all_records = list_runs()
records = softening.usable_records(all_records)
if not records:
    st.info("No finished runs yet: run the 5-minute demo above, or train on the **Train (live)** page.")
    st.stop()
datasets_seen = sorted({r["config"]["dataset"] for r in records})
shown_ds = URL.choice("Runs on data set", datasets_seen, "dataset", key="dataset",
                      default="mnist" if "mnist" in datasets_seen else datasets_seen[0])
pool = [r for r in records if r["config"]["dataset"] == shown_ds]
by_id = {r["id"]: r for r in pool}
fmt = lambda i: (f"{softening.run_label(by_id[i])} · {by_id[i]['student']['name']} · seed {by_id[i]['seed']} · "  # noqa: E731
                 f"{100 * by_id[i]['test_acc']:.2f}% · {i[-4:]}")
# The pickers below are keyed by the set of runs there are: when a sweep adds runs, they are new
# widgets that start from their defaults (all runs; best baseline before, best other run after),
# never an old choice that no longer matches the charts.
pool_key = hashlib.sha1(" ".join(sorted(by_id)).encode()).hexdigest()[:10]
chosen = st.multiselect("Runs to compare (all by default)", list(by_id), default=list(by_id), format_func=fmt,
                        key=f"runs_{shown_ds}_{pool_key}")
ended_early = [r for r in softening.stopped_records(all_records) if (r.get("config") or {}).get("dataset") == shown_ds]
if ended_early:
    n = len(ended_early)
    st.caption(f"{n} run{'s' if n > 1 else ''} on {shown_ds} ended before {'their' if n > 1 else 'its'} budget (stopped, "
               f"or diverged) and {'are' if n > 1 else 'is'} not compared: a run cut short is not a finished one.")
chosen_records = [by_id[i] for i in chosen]
if not chosen_records:
    st.info("Pick at least one run.")
    st.stop()
rows = softening.accuracy_summary(chosen_records)
gains = softening.gains_over_baseline(rows)
repeats = sum(r["runs"] - r["seeds"] for r in rows)

# --------------------------------------------------------------------------- accuracy
one_seed = [r["method"] for r in rows if r["seeds"] == 1]
spread_note = (" With one seed there is no spread to measure, so those bars have no whisker (and no interval "
               "below): run more seeds before calling a gap real." if one_seed else "")
repeat_note = (f" {repeats} repeated run{'s' if repeats > 1 else ''} of a seed already counted "
               f"{'were' if repeats > 1 else 'was'} left out (the latest of each seed is used)." if repeats else "")
c1, c2 = st.columns(2)
with c1:
    common.show(figures.accuracy_bars(rows), presenter,
                "Each bar is one method's test error, drawn from zero so that bar lengths compare like the numbers "
                "of mistakes (accuracy bars cut off near 97% would blow a 0.7-point gap up into a 2.5× one). The "
                "whisker is ± one standard deviation over distinct seeds." + spread_note + repeat_note, key="bars")
with c2:
    common.show(figures.epoch_accuracy_curves(softening.epoch_curves(chosen_records)), presenter,
                "Test accuracy after every epoch, one line per run: a student taught by soft targets usually gets "
                "good sooner, which is what makes distillation cheap as well as accurate.", key="curves")
if gains:
    common.show(figures.gain_bars(gains), presenter,
                "Each method's accuracy gain over labels only (same student and epochs), in points, with its 95% "
                "interval over seeds (Welch's t). An interval that stays clear of 0 is unlikely to be luck; one that "
                "crosses 0 is not shown to be a gain at these seeds.", key="gains")
else:
    st.caption("Gain over labels only: pick a labels-only (baseline) run with the same student and epochs to see it.")

table = pd.DataFrame([{"method": r["method"], "student": r["student"], "teacher": r["teacher"] or "–",
                       "epochs": r["epochs"], "seeds": r["seeds"], "runs": r["runs"],
                       "accuracy %": round(100 * r["acc_mean"], 2),
                       "± std": f"{100 * r['acc_std']:.2f}" if r["acc_std"] is not None else "– (1 seed)",
                       "min %": round(100 * r["acc_min"], 2),
                       "max %": round(100 * r["acc_max"], 2), "parameters": int(r["params"]),
                       "latency ms": round(r["latency_ms"], 4), "train s": round(r["train_time_s"], 1)}
                      for r in rows])
st.dataframe(table, hide_index=True)
d1, d2, _ = st.columns([1, 1, 3])
d1.download_button("Table as CSV", softening.summary_csv(rows), "kdviz-comparison.csv", "text/csv")
d2.download_button("Records as JSON", softening.records_json(chosen_records), "kdviz-records.json", "application/json")

teachers = []
for printed in sorted({r["teacher"] for r in chosen_records if r.get("teacher")}):
    try:
        teachers.append(resources.teacher_summary(resources.teacher_ref(printed).link))
    except Exception:  # noqa: BLE001 - a teacher that is gone is simply not drawn
        pass
common.show(figures.tradeoff_scatter(rows, teachers), presenter,
            "Up is more accurate, left is faster or smaller. Distillation moves a student up without moving it "
            "sideways, toward the teacher (the star) at the student's price. Latency is per image at batch 1 on this "
            "machine.",
            key="tradeoff")

grid = softening.alpha_temperature_grid(chosen_records)
if len(grid["alpha"]) * len(grid["T"]) > 1:
    common.show(figures.alpha_t_heatmap(grid), presenter,
                "Each cell is the mean accuracy of KD runs with that soft-target weight α and temperature T. Very low "
                "T throws the dark knowledge away; α = 1 learns from the teacher alone, with no labels.", key="alphaT")
else:
    st.caption("α × T grid: no KD runs with different α and T yet (tick *Add an α × T grid* in the sweep above).")

# --------------------------------------------------------------------------- confusion
st.subheader("Which mistakes did distillation fix?")
ids = [r["id"] for r in sorted(chosen_records, key=lambda r: -r["test_acc"])]
base = [i for i in ids if by_id[i]["method"] == "baseline"]
other = [i for i in ids if by_id[i]["method"] != "baseline"]
if len(ids) < 2:
    st.info("Pick at least two runs (e.g. a baseline and a KD run) to see which mistakes changed.")
    st.stop()
before = base[0] if base else ids[0]
after = other[0] if other else next(i for i in ids if i != before)
a, b = st.columns(2)
first = a.selectbox("Before (e.g. baseline)", ids, index=ids.index(before), format_func=fmt, key=f"cm_a_{pool_key}")
second = b.selectbox("After (e.g. KD)", ids, index=ids.index(after), format_func=fmt, key=f"cm_b_{pool_key}")
if first == second:
    st.warning("Before and after are the same run: pick two different runs.")
    st.stop()
try:
    classes = by_id[first]["dataset"]["classes"]
    diff = softening.confusion_difference(by_id[first]["confusion"], by_id[second]["confusion"], classes)
    common.show(figures.confusion_comparison(diff, classes, (softening.run_label(by_id[first]),
                                                             softening.run_label(by_id[second]))), presenter,
                "Left and middle: how often each true class (row) is given each answer (column), on a log colour "
                "scale so rare mistakes show. Right: the change in percentage points of each row; blue cells are "
                "mistakes the second run makes less often, red ones more often.", key="confusion")
    fixed = ", ".join(f"{f['true']}→{f['predicted']} ({100 * f['change']:+.1f} pts)" for f in diff["fixed"][:4])
    worse = ", ".join(f"{f['true']}→{f['predicted']} ({100 * f['change']:+.1f} pts)" for f in diff["worsened"][:3])
    st.markdown(f"Accuracy {100 * diff['accuracy_before']:.2f}% → **{100 * diff['accuracy_after']:.2f}%**. "
                f"Fixed most: {fixed or 'none'}. Got worse: {worse or 'none'}.")
except ValueError as error:
    common.error_box(error, "compare these two runs")
