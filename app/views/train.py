"""Train (live): one run in a worker thread, drawn by a fragment on a timer."""
import streamlit as st

from kdviz.experiment import RunConfig
from kdviz.live import LiveRun
from kdviz.methods import REGISTRY, method_class
from kdviz.models import MODELS
from kdviz.presets import DEMO
from kdviz.probes.softening import measured_wait, records_json, run_label
from kdviz.runs import default_runs_dir, list_runs
from kdviz.sweep import server_slots
from kdviz.train import TrainSettings

import common
import figures
import resources
import timings
from common import Param

URL = common.UrlState(
    Param("mode", str, "student"),          # student | teacher
    Param("dataset", str, "mnist"),
    Param("teacher", str),                  # a teacher link (kdviz.teachers.TeacherRef.link); default: the first
    Param("student", str),                  # default: mlp-800 for a student, cnn5 for a teacher
    Param("method", str, "kd"),
    Param("epochs", int, 2, 1, 200),
    Param("batch", int, 128),
    Param("lr", float, 0.1, 1e-5, 2.0),
    Param("seed", int, 0, 0, 2**31 - 1),
    Param("device", str, "auto"),
    Param("precision", str, "auto"),
    Param("opt", str, "sgd"),
    Param("fraction", float, 1.0, 0.001, 1.0),
)  # and the chosen method's hyperparameters (URL.hyperparam declares them from the method's table)
LIVE_REDRAW_S = 2.0  # seconds between two redraws of a run in progress
# Streamlit marks every element of a rerunning fragment stale, which starts a fade (a 1 s opacity
# transition after 0.5 s) that the fresh element then cancels, and slides the progress bar: every
# 2 s, browser work on the cores the run trains on, for nothing a viewer would see. Off in the live view.
LIVE_KEY = "live_view"
LIVE_CSS = (f"<style>.st-key-{LIVE_KEY} [data-stale='true'] {{opacity: 1 !important; transition: none !important;}} "
            f".st-key-{LIVE_KEY} [data-testid='stProgress'] * {{transition: none !important;}}</style>")
RUN = "train_run"  # the session's LiveRun: survives reruns and page switches
START = "train_start"  # set by the Start button's callback; the page run it causes starts the run

st.title("Train a student, live")
st.markdown("Pick a teacher, a student and a method, press **Start**, and watch every loss term and the accuracy "
            "move. The run lives in this browser session: change the controls, visit other pages and come back; "
            "it keeps going until it finishes or you stop it.")
presenter = URL.presenter_mode()
run: LiveRun | None = st.session_state.get(RUN)
busy = run is not None and not run.done


def load_demo() -> None:
    """The classroom demo's settings (:data:`kdviz.presets.DEMO`) into the controls."""
    st.session_state.update({"mode": "student", "dataset": DEMO["dataset"], "teacher": DEMO["teacher"],
                             "student": DEMO["student"], "method": DEMO["method"], "epochs": DEMO["epochs"],
                             "batch": DEMO["batch_size"], "lr": DEMO["lr"], "seed": DEMO["seed"],
                             "precision": DEMO["precision"]})
    st.session_state.update({f"hp_{DEMO['method']}_{name}": value for name, value in DEMO["params"].items()})


# --------------------------------------------------------------------------- controls
data_sets = resources.available_datasets()
if not data_sets:
    st.error("No data set could be loaded on this machine (set KDVIZ_DATA to a folder with MNIST or CIFAR-10).")
    st.stop()
formula_slot = st.container()
setup, formula = st.columns([3, 2], gap="large")
with setup:
    st.button("Load the 5-minute demo settings", on_click=load_demo, help="MNIST, the shipped CNN teacher, an MLP "
              "student, KD at T = 4, 2 epochs. Compare it with a baseline run.")
    mode = URL.widget(st.radio, "What to train", "mode", key="mode", options=["student", "teacher"], horizontal=True,
                      format_func={"student": "a student, from a teacher", "teacher": "a teacher, on labels"}.get)
    a, b = st.columns(2)
    dataset_name = URL.choice("Data set", data_sets, "dataset", key="dataset", container=a)
    teacher_key = None
    if mode == "student":
        teachers = common.teacher_choices(dataset_name)
        if teachers:
            teacher_key = URL.choice("Teacher", teachers, "teacher", key="teacher", format_func=teachers.get, container=b)
        else:
            b.warning(f"No teacher for {dataset_name} yet: train one first (What to train → a teacher).")
    default_model = "mlp-800" if mode == "student" else "cnn5"
    URL.declare(Param("student", str, default_model))
    student = URL.choice("Student architecture" if mode == "student" else "Architecture", MODELS, "student",
                         key="student", container=a, format_func=lambda m: f"{m}: {MODELS[m].description}")
    if mode == "student":
        methods = [m for m in REGISTRY if m != "baseline"] + ["baseline"]
        method = URL.choice("Method", methods, "method", key="method", container=b,
                            format_func=lambda m: REGISTRY[m].title or m)
    else:
        method = "baseline"
    c1, c2, c3, c4 = st.columns(4)
    epochs = URL.number("Epochs", "epochs", key="epochs", container=c1)
    batch = URL.choice("Batch size", [32, 64, 128, 256, 512], "batch", key="batch", container=c2)
    lr = URL.number("Peak learning rate", "lr", key="lr", container=c3, format="%.4g")
    seed = URL.number("Seed", "seed", key="seed", container=c4)
    c1, c2, c3 = st.columns(3)
    devices = ["auto", "cpu"] + (["cuda"] if resources.device_label() != "CPU" else [])
    device = URL.choice("Device", devices, "device", key="device", container=c1,
                           format_func=lambda d: f"auto ({resources.device_label()})" if d == "auto" else d)
    precision = URL.choice("Precision", ["auto", "fp32", "bf16"], "precision", key="precision", container=c2,
                              help="auto: bf16 where the chip runs it natively (AMX / AVX-512 BF16 CPUs, recent GPUs: "
                                   "1.5-2x faster, same accuracy in our runs), fp32 elsewhere (emulated bf16 is ~10x slower).")
    optimizer = URL.choice("Optimizer", ["sgd", "adam"], "opt", key="opt", container=c3,
                              help="SGD: Nesterov momentum 0.9, one-cycle schedule. Adam: try lr 0.001.")
    with st.expander("Transfer set (what the student sees)"):
        fraction = URL.number("Fraction of the training set", "fraction", key="fraction")
        n_classes = len(resources.dataset(dataset_name).train.classes)
        omit = st.multiselect("Leave out these classes (Hinton's 'no 3s' experiment)", list(range(n_classes)),
                              key=f"omit_{dataset_name}", format_func=lambda c: resources.dataset(dataset_name).train.classes[c])
        hide = st.checkbox("Hide the labels (learn from the teacher only)", key="hide", disabled=mode != "student")

cls = method_class(method)
with formula_slot:
    st.markdown(f"**{cls.title or cls.name}**")
    if cls.formula:
        st.latex(cls.formula)
with formula:
    params = {h.name: URL.hyperparam(h, key=f"hp_{method}_{h.name}") for h in cls.hyperparams}
    URL.prune()  # another method's knobs leave the link
    if not cls.hyperparams:
        st.caption("This method has no hyperparameters.")
    if cls.__doc__:
        st.caption(" ".join(cls.__doc__.split()))


def make_config() -> RunConfig:
    return RunConfig(dataset=dataset_name, student=student, method=method, params=params,
                     teacher=resources.teacher_ref(teacher_key).config_value if teacher_key else None,
                     train=TrainSettings(epochs=epochs, batch_size=batch, lr=lr, optimizer=optimizer, seed=seed,
                                         device=device, precision=precision),
                     fraction=fraction, omit_classes=tuple(omit), hide_labels=hide and mode == "student")


# --------------------------------------------------------------------------- start / pause / resume / stop
def expected_wait() -> str:
    """The wait for these settings, as measured by the runs that finished on this machine."""
    wait = measured_wait(list_runs(), dataset_name, student, epochs, with_teacher=mode == "student"
                         and REGISTRY[method].needs_teacher)
    if wait is None:
        return ("No run like this has finished on this machine yet, so there is no measured estimate: the first one "
                "also loads the data and caches the teacher's outputs. The bar shows the time left once training starts.")
    return (f"Runs like this took about **{wait['seconds']:.0f} s** here from Start to result (median of "
            f"{wait['runs']} finished run{'s' if wait['runs'] > 1 else ''}, longest {wait['longest']:.0f} s; on "
            f"{resources.device_label()}).")


def can_start() -> bool:
    return not busy and (mode == "teacher" or teacher_key is not None or not REGISTRY[method].needs_teacher)


def request_start() -> None:
    st.session_state[START] = True


# Start is taken here, before the buttons are drawn, in the one page run its click causes: that run's
# settings are the ones on screen, and the page is drawn once, already running (a second run of the
# whole page for a button is a second render in the browser, on the cores the run trains on)
if st.session_state.pop(START, False) and can_start():
    run = st.session_state[RUN] = LiveRun(make_config(), default_runs_dir()).start()
    busy = True
b1, b2, b3, b4 = st.columns([2, 1, 1, 1])
b1.button("Start", icon=":material/play_arrow:", type="primary", disabled=not can_start(), width="stretch",
          on_click=request_start)
paused = busy and run.progress.state == "paused"
if b2.button("Pause", icon=":material/pause:", disabled=not busy or paused, width="stretch"):
    run.pause()
    st.rerun()
if b3.button("Resume", icon=":material/play_circle:", disabled=not paused, width="stretch"):
    run.resume()
    st.rerun()
if b4.button("Stop", icon=":material/stop:", disabled=not busy, width="stretch",
             help="Ends the run after the current step; what it learned so far is saved as a record."):
    run.stop()
    run.join(5)
    st.rerun()
if not busy:
    st.caption(expected_wait())


# --------------------------------------------------------------------------- the live view
def draw(live: LiveRun) -> None:
    snap = live.progress.snapshot()
    cfg = live.config
    who = f"{cfg.student} on {cfg.dataset}" + (f" from {cfg.teacher}" if cfg.teacher else "")
    st.markdown(f"**Run:** {cfg.method} · {who} · {cfg.train.epochs} epochs · seed {cfg.train.seed} · "
                f"state **{snap['state']}**")
    # Elements shown only at times sit in placeholders that are always there: every redraw then puts each
    # element at the place it had, and Streamlit updates it there. Without them, the elements after a note
    # that went (the progress bar and figures once "waiting for a slot" ended) each moved up one place and
    # were drawn anew, their stale copies left below until the redraw ended.
    waiting = st.empty()
    if snap["state"] == "queued" and snap["queue_position"]:
        waiting.info(f"Waiting for a free training slot: **{snap['queue_position']} in line**. This server trains at "
                     f"most {server_slots().limit} run(s) at once (KDVIZ_MAX_JOBS); yours starts as soon as one ends.",
                     icon=":material/hourglass_top:")
    elif snap["where"].startswith("ray"):
        waiting.caption(f"Training on the cluster ({snap['where']}); this server only draws.")
    left = f" · about {snap['seconds_left']:.0f} s left" if snap["seconds_left"] is not None and not live.done else ""
    st.progress(min(snap["fraction"], 1.0), text=f"{snap['phase'] or 'starting'} · epoch {snap['epoch']}/{snap['epochs']}"
                f" · step {snap['steps_done']}/{snap['steps_total']}{left}")
    record = snap["record"]
    m1, m2, m3, m4 = st.columns(4)
    last = [e for e in snap["epochs_done"] if e["test_acc"] == e["test_acc"]]
    accuracy = record["test_acc"] if record else last[-1]["test_acc"] if last else None  # the record has the last word
    m1.metric("test accuracy", f"{100 * accuracy:.2f}%" if accuracy is not None else "–",
              help="after the last evaluated epoch; the final value once the run has ended")
    m2.metric("images / s", f"{snap['images_per_s']:,.0f}")
    elapsed = record["train_time_s"] if record else snap["elapsed"]
    m3.metric("training time", f"{elapsed:.1f} s")
    m4.metric("loss (last step)", f"{snap['step_losses'][-1]['total']:.4f}" if snap["step_losses"] else "–")
    preparing = st.empty()
    if snap["phase"] == "preparing" and not live.done:
        preparing.caption("Preparing: loading the data and the teacher, and running the teacher once over the training set "
                   "(its logits are then cached on disk, so the next run with this teacher starts at once).")
    if snap["step_losses"]:
        terms = [k for k in snap["step_losses"][-1] if k not in ("step", "phase", "total")]
        about = f"The grey line is the total loss, the coloured ones its terms ({', '.join(terms)}), each per step on a log scale."
        if {"kd", "ce"} <= set(terms):
            about += " With KD the soft-target term 'kd' and the label term 'ce' fall together."
        about += (" Right: train and test accuracy after each epoch." if last else
                  " Accuracy is drawn once an epoch has been evaluated" + (
                      "; this run stopped before the end of its first epoch." if record and record["stopped"] else "."))
        common.show(figures.live_curves(snap["step_losses"], snap["epochs_done"]), presenter, about, key="live_curves")
    if snap["state"] == "failed":
        st.error(f"The run failed: {snap['error']}")
    if record and record.get("diverged"):
        st.error(f"{run_label(record)}: {record['diverged']['message']} Saved as run `{record['id']}`, marked "
                 f"diverged, with test accuracy {100 * record['test_acc']:.2f}% from those weights.")
    elif record:
        verb = "stopped early" if record["stopped"] else "finished"
        st.success(f"{run_label(record)} {verb}: test accuracy **{100 * record['test_acc']:.2f}%** in "
                   f"{record['train_time_s']:.1f} s of training. Saved as run `{record['id']}` in "
                   f"`{default_runs_dir()}` (see it on the Compare page).")
        common.show(figures.confusion_heatmap(record["confusion"], record["dataset"]["classes"]), presenter,
                    "Rows are the true classes, columns the student's answers: everything off the diagonal is a "
                    "mistake. Look for the pairs the teacher found alike on the Temperature page.", key="final_confusion")
        st.download_button("Download the record (JSON)", records_json([record]), f"{record['id']}.json",
                           "application/json")


def live_view() -> None:
    live = st.session_state.get(RUN)
    if live is None:
        return
    draw(live)
    if live.done:
        st.rerun(scope="app")  # redraw the buttons and stop the timer


if run is None:
    st.info("Nothing is training yet: choose the settings above and press **Start** "
            "(or load the 5-minute demo settings).")
elif busy:
    # every 2 s: each redraw costs the browser a re-render on the same cores as training; redrawn every
    # second, the preset trained 1.79x slower than from the CLI, every 2 s 1.25x (BENCHMARKS.md, Speed)
    st.html(LIVE_CSS)
    with st.container(key=LIVE_KEY):
        timings.fragment("train.live", run_every=LIVE_REDRAW_S)(live_view)()
else:
    with st.container(key=LIVE_KEY):
        draw(run)
