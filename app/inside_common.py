"""What the six "inside the networks" pages share: the data-set preset, the two students
(saved runs, the shipped students of ``pretrained/students/``, or trained now on a short budget
in a worker thread), the probe images, and the pages' views, cached.

Each page compares the teacher, a baseline student (labels only) and a student trained
with the page's method, on the same images. Training and every number come from
:mod:`kdviz.probes`; this module only draws controls and progress and caches.

It imports no torch (a test checks): the students are listed from their records and cards, and a
view shipped with the shipped students (:mod:`kdviz.probes.view_files`, :mod:`kdviz.probes.maps`) is
read before anything is computed (Relations' and Factor space's test images read from the IDX files
with numpy), so the six pages send their first chart before torch is imported: on a fresh server its
import is most of a first chart's wait (BENCHMARKS.md, app speed). Whatever needs a network, training,
or a data set not kept as IDX files goes through :func:`live`, the torch side (:mod:`inside_models`),
imported on first use.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from kdviz import catalogue, idx, presets, shipped
from kdviz.catalogue import available, record_of, shipped_name
from kdviz.probes import maps, temperatures, view_files
from kdviz.records import default_runs_dir

import common
from common import Param

# The URL parameters every inside page has (each page adds its own to its table).
URL_PARAMS = (
    Param("data", str),   # the data-set preset; default: the first one whose teacher is here
    Param("base", str),   # the baseline student's run id (or shipped:NAME); default: the newest trained here, else the shipped one
    Param("run", str),    # the method student's run id (or shipped:NAME); default: likewise
)

METHOD_NAMES = view_files.METHOD_NAMES


def live():
    """The torch side of these pages (:mod:`inside_models`: networks, test images, live computations,
    training), imported on first use: a page whose first view is shipped sends it before torch's import."""
    import inside_models  # late, on purpose: it imports torch (see the module's docstring)
    return inside_models


# --------------------------------------------------------------------------- preset and students
def datasets_for(method: str) -> list[str]:
    """The data-set presets a page offers, in order (the first is its default): those whose shipped teacher is here."""
    found = set(shipped.names())
    return [name for name, preset in presets.PRESETS.items() if preset.teacher in found and preset.offers(method)]


def setup(url: common.UrlState, page: str, method: str) -> presets.Preset:
    """The data-set control (kept in the URL as ``data``), limited to data sets whose shipped
    teacher is here. Stops the page with a message when there is none."""
    options = datasets_for(method)
    if not options:
        st.error("No shipped teacher was found in `pretrained/`. Make one with "
                 "`kdviz pretrained make mnist-cnn` (about a minute on two cores), then reload this page.")
        st.stop()
    dataset = url.choice("Data set", options, "data", key=f"{page}_data", container=st.sidebar,
                         format_func=lambda d: f"{d} (teacher {presets.PRESETS[d].teacher})")
    preset = presets.PRESETS[dataset]
    b = preset.budget_for(method)
    st.sidebar.caption(f"Students: `{b.student}`. **Train the students now** trains a pair on one short preset "
                       f"budget ({b.epochs} epoch{'s' if b.epochs > 1 else ''} on {b.fraction:.0%} of the training set).")
    return preset


def _run_label(record: dict) -> str:
    train = record["config"]["train"]
    budget = f"{train['epochs']} ep on {record['config']['fraction']:.0%} · seed {train['seed']}"
    if shipped_name(record) is not None:
        return f"shipped · {100 * record['test_acc']:.2f}% · {budget}"
    return f"{100 * record['test_acc']:.2f}% · {budget} · {record['created'][5:16].replace('T', ' ')}"


def _shipped_note(base: dict | None, run: dict | None, method: str, dataset: str) -> str | None:
    """One line saying which of the students shown are the shipped ones, their accuracy and budget."""
    shown = [(who, r) for who, r in (("baseline (labels only)", base), (METHOD_NAMES.get(method, method), run))
             if r is not None and shipped_name(r) is not None]
    if not shown:
        return None
    budgets = dict.fromkeys(r["budget"] for _, r in shown)
    accuracies = ", ".join(f"{who} {100 * r['test_acc']:.2f}%" for who, r in shown)
    return (f"Shown: the shipped student{'s' if len(shown) > 1 else ''} (`pretrained/students/`, made by "
            f"`kdviz pretrained make-students {dataset}` on one CPU thread): {accuracies}; "
            f"{'; '.join(budgets)}. Students you train here are picked first once they exist.")


def _pair_key(page: str, dataset: str) -> str:
    return f"inside_pair_{page}_{dataset}"


def offered(preset: presets.Preset, method: str, needs=None, needs_baseline=None) -> tuple[list[dict], list[dict]]:
    """The baseline and method students a page offers, in its order: the user's own runs first (newest
    first), then the shipped students. The first of each is what the page shows by default."""
    student, runs_dir = preset.student_for(method), default_runs_dir()
    base_runs = [r for r in available(preset.dataset, student, "baseline", preset.teacher, runs_dir)
                 if needs_baseline is None or needs_baseline(r)]
    method_runs = [r for r in available(preset.dataset, student, method, preset.teacher, runs_dir)
                   if needs is None or needs(r)]
    return base_runs, method_runs


def students(url: common.UrlState, page: str, method: str, preset: presets.Preset, record: bool = False,
             needs=None, needs_baseline=None, while_training=None) -> tuple[dict | None, dict | None]:
    """Pick the baseline and method students among saved runs, or train both now.

    Returns the two run records (None where there is none yet). With ``record``, students trained
    now keep their outputs on followed probe images (the Soft targets page); ``needs`` and
    ``needs_baseline`` filter the saved runs offered (e.g. to those with saved FT modules, or with
    soft-target frames). ``while_training(pair)`` draws extra content under the progress bars while
    the students train."""
    key = _pair_key(page, preset.dataset)
    pair = st.session_state.get(key)  # a kdviz.students.StudentPair training now, or None
    busy = pair is not None and not pair.done

    base_runs, method_runs = offered(preset, method, needs, needs_baseline)
    own = [any(shipped_name(r) is None for r in runs) for runs in (base_runs, method_runs)]
    # a pair that just finished: select its two runs
    if pair is not None and pair.done and not st.session_state.get(key + "_seen"):
        st.session_state[key + "_seen"] = True
        for widget, record in zip((f"{page}_base", f"{page}_run"), pair.records):
            if record is not None:
                st.session_state[widget] = record["id"]
    by_id = {r["id"]: r for r in base_runs + method_runs}

    st.subheader("The students")
    left, right, button = st.columns([5, 5, 3], vertical_alignment="bottom")
    base = chosen = None
    if base_runs:
        base = url.choice("Baseline student (labels only)", [r["id"] for r in base_runs], "base", key=f"{page}_base",
                          container=left, format_func=lambda i: _run_label(by_id[i]))
    else:
        left.info("No baseline student saved yet.")
    if method_runs:
        chosen = url.choice(f"{METHOD_NAMES.get(method, method)} (from the teacher)", [r["id"] for r in method_runs],
                            "run", key=f"{page}_run", container=right, format_func=lambda i: _run_label(by_id[i]))
    else:
        right.info(f"No {METHOD_NAMES.get(method, method)} saved yet.")
    label = "Train again" if all(own) else "Train the students now"
    if button.button(label, type="primary" if not (base_runs and method_runs) else "secondary", disabled=busy,
                     key=f"{page}_train", width="stretch",
                     help="A baseline student and a method student on one short budget, one after the other "
                          "in the background (a saved baseline with this budget is reused); both are saved as runs."):
        st.session_state[key] = live().start_pair(preset, method, record)
        st.session_state[key + "_seen"] = False
        st.rerun()
    note = _shipped_note(by_id.get(base), by_id.get(chosen), method, preset.dataset)
    if note:
        st.caption(note)
    if busy:
        _progress(key, while_training)
    elif pair is not None and pair.error:
        st.error(f"Training failed: {pair.error}")
    return by_id.get(base), by_id.get(chosen)


@st.fragment(run_every=1.0)
def _progress(key: str, while_training=None) -> None:
    pair = st.session_state.get(key)  # a kdviz.students.StudentPair training now, or None
    if pair is None:
        return
    students = zip(pair.configs, pair.snapshots(), pair.records)  # a progress line per student
    for config, snap, record in students:
        who = "baseline student" if config.method == "baseline" else METHOD_NAMES.get(config.method, config.method)
        if snap is None:
            st.progress(1.0, text=f"{who}: reusing the saved run with this budget ({100 * record['test_acc']:.2f}%)")
            continue
        if snap["state"] == "queued" and snap["queue_position"]:
            st.progress(0.0, text=f"{who}: waiting for a free training slot, {snap['queue_position']} in line")
            continue
        left = f" · about {snap['seconds_left']:.0f} s left" if snap["seconds_left"] else ""
        st.progress(min(snap["fraction"], 1.0), text=f"{who}: {snap['state']} · {snap['phase'] or '…'} · "
                    f"step {snap['steps_done']}/{snap['steps_total']}{left}")
    if st.button("Stop training", key=key + "_stop"):
        pair.stop()
    if while_training is not None:
        while_training(pair)
    if pair.done:
        st.rerun(scope="app")


def student_name(method: str) -> str:
    """The method's student with its article: "an AT student", "a KD student"."""
    name = METHOD_NAMES.get(method, f"{method} student")
    return ("an " if name[0] in "AEFHILMNORSX" and name[:2] != "KD" else "a ") + name


def need_students(base: dict | None, run: dict | None, method: str,
                  meanwhile: str = "the page shows the teacher alone") -> bool:
    """True when both students are there; otherwise a note saying what the page shows meanwhile."""
    if base is None or run is None:
        st.info(f"Until both students exist, {meanwhile}. Press **Train the students now** "
                f"(a baseline and {student_name(method)}, a short budget each) or pick saved runs.")
        return False
    return True


# --------------------------------------------------------------------------- probe images
def probe_images(preset: presets.Preset) -> shipped.Probe:
    """The teacher's shipped probe images (ambiguous, clear and typical test images per class), as
    numpy arrays (:class:`kdviz.shipped.Probe`), read once for the server."""
    return common.shared("probe", (preset.teacher,), lambda: shipped.probe(preset.teacher))


def probe_kinds(preset: presets.Preset) -> np.ndarray:
    """Per probe image its kind code into ``kdviz.shipped.PROBE_KINDS``."""
    return probe_images(preset).kind


# --------------------------------------------------------------------------- test images
def test_images(preset: presets.Preset):
    """The data set's test split: read without torch for a data set of IDX files (MNIST, Fashion-MNIST), as
    numpy arrays with its shipped teacher's classes and normalisation (:class:`kdviz.idx.Images`),
    once for the server; else through :func:`live` (:class:`kdviz.data.ImageData`, or the probe images when the
    data set is not on this machine). Either has ``pixels``, ``labels``, ``classes``, ``mean`` and ``std``."""
    images = common.shared("test images", (preset.dataset, preset.teacher, str(idx.data_dir())), lambda: _idx_test(preset))
    return images if images is not None else live().test_split(preset)


def _idx_test(preset: presets.Preset) -> idx.Images | None:
    if preset.dataset not in idx.IDX_DATASETS:
        return None
    try:
        pixels, labels, _ = idx.read_test(preset.dataset)
    except (idx.DataError, idx.DataNotFound):  # not here, or unusable: the torch side says what is wrong
        return None
    info = shipped.card(preset.teacher)
    return idx.Images(pixels, labels, tuple(info["classes"]), tuple(info["mean"]), tuple(info["std"]))


def class_sorted(preset: presets.Preset, per_class: int, seed: int) -> tuple[int, ...]:
    """``per_class`` test images of each class (drawn with ``seed``), sorted by class: the batch the
    Relations and Factor space pages draw (:func:`kdviz.probes.view_files.class_sorted_index`)."""
    return tuple(view_files.class_sorted_index(test_images(preset).labels, per_class, seed).tolist())


# --------------------------------------------------------------------------- the pages' views, cached
# Models are named by a string ref ("teacher:<name>" or "run:<id>") so results cache by value;
# raw stage maps are never cached (too large), only what the pages draw.
def refs(preset: presets.Preset, base: dict | None, run: dict | None, method: str) -> tuple[tuple[str, str], ...]:
    """(display name, model ref) for the teacher and the students there are, in page order."""
    out = [("teacher", f"teacher:{preset.teacher}")]
    if base is not None:
        out.append(("baseline", f"run:{base['id']}"))
    if run is not None:
        out.append((METHOD_NAMES.get(method, method), f"run:{run['id']}"))
    return tuple(out)


def _shipped(view: str, model_refs, dataset: str, split: str, index, settings: dict):
    """The shipped default ``view`` (:mod:`kdviz.probes.view_files`) when the models are the data set's shipped
    teacher and two shipped students and the images and settings are the ones it was made for, else None.
    It is read without torch, on the test images too where :func:`test_images` reads them so."""
    preset = presets.PRESETS[dataset]
    ids = [ref.partition(":")[2] for _, ref in model_refs[1:]]
    if len(ids) != 2 or model_refs[0][1] != f"teacher:{preset.teacher}" or any(shipped_name(i) is None for i in ids):
        return None
    base, run = (record_of(i) for i in ids)
    images = probe_images(preset) if split == "probe" else test_images(preset)
    return view_files.shipped_view(view, preset.teacher, base, run, images, index, settings)


# The four functions below first look for the view shipped with the shipped students (their default
# view: no network is loaded or run), then compute it from the networks.
@st.cache_data(show_spinner=False, max_entries=256)
def attention(model_refs: tuple, dataset: str, index: tuple[int, ...], p: float) -> dict:
    """Per model: attention maps per stage (RMS-scaled, (n, H, W)) and AT distances to the teacher (stages, n)."""
    shipped_view = _shipped("attention", model_refs, dataset, "probe", index, {"p": float(p)})
    return shipped_view if shipped_view is not None else live().attention(model_refs, dataset, index, p)


@st.cache_data(show_spinner="Measuring AT distances over the probe images…", max_entries=64)
def at_summary(model_refs: tuple, dataset: str, p: float, n: int) -> dict[str, list[float]]:
    """Mean AT distance to the teacher per stage, over the first ``n`` probe images, per student."""
    shipped_view = _shipped("at_summary", model_refs, dataset, "probe", range(n), {"p": float(p)})
    return shipped_view if shipped_view is not None else live().at_summary(model_refs, dataset, p, n)


@st.cache_data(show_spinner="Computing FSP matrices…", max_entries=64)
def fsp(model_refs: tuple, dataset: str, n: int, method_run: str | None, teacher_name: str) -> dict:
    """Per model: its FSP matrices per consecutive stage pair (batch mean over ``n`` probe images) and its
    per-pair FSP distance to the teacher. The FSP student's matrices go through its method's 1×1
    adapters when it has any (``method_run``)."""
    shipped_view = _shipped("fsp", model_refs, dataset, "probe", range(n), {})
    return shipped_view if shipped_view is not None else live().fsp(model_refs, dataset, n, method_run, teacher_name)


@st.cache_data(show_spinner="Measuring distances and angles…", max_entries=64)
def relations(model_refs: tuple, dataset: str, index: tuple[int, ...]) -> dict:
    """Per model on a class-sorted batch: normalised distance matrix, angle histogram, and for the
    students the correlation of their distances and angles with the teacher's."""
    shipped_view = _shipped("relations", model_refs, dataset, "test", index, {})
    return shipped_view if shipped_view is not None else live().relations(model_refs, dataset, index)


def warm_factor_space(dataset: str) -> None:
    """For the server's warm-up: the Factor space page's default view of the shipped students (its
    points; the t-SNE maps of that view are shipped), through the page's own cached function."""
    found = maps.shipped_pair(dataset)
    if found is None:
        return
    preset, base, run = found
    index = class_sorted(preset, maps.DEFAULTS["per_class"], 0)
    live().factor_space(refs(preset, base, run, maps.METHOD), run["id"] if has_method_state(run) else None,
                        preset.teacher, dataset, index)


def warm_default_views(methods=("at", "fsp", "rkd", "kd")) -> None:
    """For the server's warm-up: what the Attention maps, FSP matrices, Relations and Confusion pages
    compute before their first chart, in their default view (their first data set, the students they
    show first, and their URL tables' defaults: image 0 and p = 2; every probe image; 10 images per
    class, seed 0), through the pages' own cached functions, so that a first visit finds it ready. For the
    shipped students those functions read the shipped views (no network runs); for the user's own students,
    the first choice once there are any, they compute them. ``methods``: the pages' methods (at, fsp, rkd,
    kd) to warm."""
    for method in methods:
        options = datasets_for(method)
        if not options:
            continue
        preset = presets.PRESETS[options[0]]
        base, run = (next(iter(runs), None) for runs in offered(preset, method))
        model_refs = refs(preset, base, run, method)
        if method == "at":
            attention(model_refs, preset.dataset, (0,), 2.0)
            if base is not None and run is not None:  # the mean distances under the first chart
                at_summary(model_refs, preset.dataset, 2.0, len(probe_images(preset)))
        elif method == "fsp":
            fsp(model_refs, preset.dataset, len(probe_images(preset)), run["id"] if run else None, preset.teacher)
        elif method == "rkd":
            relations(model_refs, preset.dataset, class_sorted(preset, view_files.RELATIONS_PER_CLASS, 0))
        else:
            teacher_confusion(preset)


def teacher_confusion(preset: presets.Preset) -> np.ndarray:
    """The shipped teacher's confusion matrix on the test split: from its card (no torch), else counted
    from its test-set logits (shipped, else one pass, then on disk) through :func:`live`; a card whose
    matrix is damaged is counted too (the card's other fields are checked where it is read)."""
    try:
        matrix = shipped.teacher_confusion(preset.teacher)
    except shipped.PretrainedError:
        matrix = None
    return matrix if matrix is not None else live().teacher_confusion(preset.teacher, preset.dataset)


# --------------------------------------------------------------------------- soft targets (the Soft targets page)
def teacher_soft_targets(teacher_name: str, index: tuple[int, ...], T: float) -> np.ndarray:
    """softmax(z/T) of the teacher on followed probe images (of a shipped teacher): from its logits on the
    probe set, read from its shipped test-set logits (no torch), else computed once for the server
    (and on disk), so a new T is no model pass."""
    gallery = common.shipped_gallery(teacher_name) or live().teacher_gallery(teacher_name)
    return temperatures.softmax_at(gallery["logits"][list(index)], [T])[0]


def has_soft_targets(record: dict) -> bool:
    return catalogue.has_soft_targets(record, default_runs_dir())


def has_method_state(record: dict) -> bool:
    return catalogue.has_method_state(record, default_runs_dir())


@st.cache_data(show_spinner=False, max_entries=32)
def soft_target_frames(run_id: str) -> dict | None:
    return catalogue.load_soft_targets({"id": run_id}, default_runs_dir())


def soft_target_gaps(recorded: dict[str, dict], teacher_name: str, T: float, kinds: np.ndarray) -> dict:
    """For the soft-target page: per student, KL(teacher ‖ student) at T for every frame and followed
    image (frames, images), and the followed images' kind names (``kinds``: the probe set's codes)."""
    index = next(iter(recorded.values()))["index"]
    teacher = teacher_soft_targets(teacher_name, tuple(index), T)
    gaps = temperatures.frame_gaps({name: s["frames"] for name, s in recorded.items()}, teacher, T)
    names = [shipped.PROBE_KINDS[int(kinds[j])] for j in index]
    return {"gaps": gaps, "kinds": names}
