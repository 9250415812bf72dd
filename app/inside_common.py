"""What the six "inside the networks" pages share: the data-set preset, the two students
(saved runs, the shipped students of ``pretrained/students/``, or trained now on a short budget
in a worker thread), and cached models and probes.

Each page compares the teacher, a baseline student (labels only) and a student trained
with the page's method, on the same images. Training and every number come from
:mod:`kdviz.probes.inside`; this module only draws controls and progress and caches.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from kdviz import presets, pretrained, recording
from kdviz import students as student_runs
from kdviz.evaluation import confusion_matrix
from kdviz.losses import soften
from kdviz.models import forward_features
from kdviz.probes import inside, maps, views
from kdviz.runs import default_runs_dir
from kdviz.students import StudentPair, available, load_method, load_soft_targets, load_student, record_of, shipped_name
from kdviz.teacher_cache import teacher_logits
from kdviz.teachers import PRETRAINED, TeacherRef

import common
import resources
from common import Param

# The URL parameters every inside page has (each page adds its own to its table).
URL_PARAMS = (
    Param("data", str),   # the data-set preset; default: the first one whose teacher is here
    Param("base", str),   # the baseline student's run id (or shipped:NAME); default: the newest trained here, else the shipped one
    Param("run", str),    # the method student's run id (or shipped:NAME); default: likewise
)

METHOD_NAMES = views.METHOD_NAMES


# --------------------------------------------------------------------------- preset and students
def datasets_for(method: str) -> list[str]:
    """The data-set presets a page offers, in order (the first is its default): those whose shipped teacher is here."""
    shipped = set(pretrained.names())
    return [name for name, preset in presets.PRESETS.items() if preset.teacher in shipped and preset.offers(method)]


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


def students(url: common.UrlState, page: str, method: str, preset: presets.Preset, recorders=None, meta=None,
             needs=None, needs_baseline=None, live=None) -> tuple[dict | None, dict | None]:
    """Pick the baseline and method students among saved runs, or train both now.

    Returns the two run records (None where there is none yet). ``recorders`` (a callable
    returning one consumer per config) and ``meta`` go to :class:`kdviz.StudentPair`;
    ``needs`` and ``needs_baseline`` filter the saved runs offered (e.g. to those with saved FT
    modules, or with soft-target frames). ``live(pair)`` draws extra content under the progress
    bars while the students train."""
    runs_dir = default_runs_dir()
    key = _pair_key(page, preset.dataset)
    pair: StudentPair | None = st.session_state.get(key)
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
        configs = presets.pair_configs(preset, method)
        st.session_state[key] = StudentPair(configs, runs_dir, recorders() if recorders else None,
                                                   meta=meta).start()
        st.session_state[key + "_seen"] = False
        st.rerun()
    note = _shipped_note(by_id.get(base), by_id.get(chosen), method, preset.dataset)
    if note:
        st.caption(note)
    if busy:
        _progress(key, live)
    elif pair is not None and pair.error:
        st.error(f"Training failed: {pair.error}")
    return by_id.get(base), by_id.get(chosen)


@st.fragment(run_every=1.0)
def _progress(key: str, live=None) -> None:
    pair: StudentPair | None = st.session_state.get(key)
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
    if live is not None:
        live(pair)
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


# --------------------------------------------------------------------------- cached models and data
@st.cache_resource(show_spinner="Loading a student…", max_entries=32)
def student_model(run_id: str, runs_dir: str):
    return load_student({"id": run_id}, runs_dir)


@st.cache_resource(show_spinner="Loading the method's modules…", max_entries=16)
def method_modules(run_id: str, runs_dir: str, teacher_name: str):
    record = record_of(run_id, runs_dir)
    return load_method(record, student_model(run_id, runs_dir), resources.teacher(teacher_name), runs_dir)


def models(preset: presets.Preset, base: dict | None, run: dict | None, method: str) -> dict:
    """``{"teacher": net, "baseline": net, <method student>: net}`` for what is there, in that order."""
    runs_dir = str(default_runs_dir())
    out = {"teacher": resources.teacher(preset.teacher)}
    if base is not None:
        out["baseline"] = student_model(base["id"], runs_dir)
    if run is not None:
        out[METHOD_NAMES.get(method, method)] = student_model(run["id"], runs_dir)
    return out


def probe_images(preset: presets.Preset):
    """The teacher's shipped probe images (ambiguous, clear and typical test images per class)."""
    return resources.probe_set(preset.teacher)


def probe_kinds(preset: presets.Preset) -> np.ndarray | None:
    """Per probe image its kind code into ``pretrained.PROBE_KINDS`` (None if the card has none)."""
    try:
        return pretrained.probe_details(preset.teacher)["kind"].numpy()
    except Exception:  # noqa: BLE001 - older probe files carry no kinds
        return None


def test_split(preset: presets.Preset):
    """The data set's test split, or the probe set when the data set is not on this machine."""
    try:
        return resources.dataset(preset.dataset).test
    except Exception:  # noqa: BLE001 - pages work from the shipped probe images alone
        return probe_images(preset)


# --------------------------------------------------------------------------- cached computations
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


def _net(ref: str):
    kind, _, name = ref.partition(":")
    return resources.teacher(name) if kind == "teacher" else student_model(name, str(default_runs_dir()))


def _images(dataset: str, split: str, index) -> torch.Tensor:
    preset = presets.PRESETS[dataset]
    data = probe_images(preset) if split == "probe" else test_split(preset)
    return data.images(torch.as_tensor(list(index), dtype=torch.int64))


def _stages(model_refs, dataset: str, split: str, index) -> dict:
    x = _images(dataset, split, index)
    return {name: forward_features(_net(ref), x)[1].stages for name, ref in model_refs}


def _shipped(view: str, model_refs, dataset: str, split: str, index, settings: dict):
    """The shipped default ``view`` (:mod:`kdviz.probes.views`) when the models are the data set's shipped
    teacher and two shipped students and the images and settings are the ones it was made for, else None."""
    preset = presets.PRESETS[dataset]
    ids = [ref.partition(":")[2] for _, ref in model_refs[1:]]
    if len(ids) != 2 or model_refs[0][1] != f"teacher:{preset.teacher}" or any(shipped_name(i) is None for i in ids):
        return None
    base, run = (record_of(i) for i in ids)
    images = probe_images(preset) if split == "probe" else test_split(preset)
    return views.shipped_view(view, preset.teacher, base, run, images, index, settings)


# The four functions below first look for the view shipped with the shipped students (their default
# view: no network is loaded or run), then compute it from the networks.
@st.cache_data(show_spinner=False, max_entries=256)
def attention(model_refs: tuple, dataset: str, index: tuple[int, ...], p: float) -> dict:
    """Per model: attention maps per stage (RMS-scaled, (n, H, W)) and AT distances to the teacher (stages, n)."""
    shipped = _shipped("attention", model_refs, dataset, "probe", index, {"p": float(p)})
    return shipped if shipped is not None else views.attention_view(_stages(model_refs, dataset, "probe", index), p)


@st.cache_data(show_spinner="Measuring AT distances over the probe images…", max_entries=64)
def at_summary(model_refs: tuple, dataset: str, p: float, n: int) -> dict[str, list[float]]:
    """Mean AT distance to the teacher per stage, over the first ``n`` probe images, per student."""
    shipped = _shipped("at_summary", model_refs, dataset, "probe", range(n), {"p": float(p)})
    return shipped if shipped is not None else views.at_summary(_stages(model_refs, dataset, "probe", range(n)), p)


@st.cache_data(show_spinner="Computing FSP matrices…", max_entries=64)
def fsp(model_refs: tuple, dataset: str, n: int, method_run: str | None, teacher_name: str) -> dict:
    """Per model: its FSP matrices per consecutive stage pair (batch mean over ``n`` probe images) and its
    per-pair FSP distance to the teacher. The FSP student's matrices go through its method's 1×1
    adapters when it has any (``method_run``)."""
    shipped = _shipped("fsp", model_refs, dataset, "probe", range(n), {})
    if shipped is not None:
        return shipped
    adapters = {}
    if method_run is not None:
        method = method_modules(method_run, str(default_runs_dir()), teacher_name)
        adapters = {name: getattr(method, "adapters", None) for name, ref in model_refs if ref == f"run:{method_run}"}
    return views.fsp_view(_stages(model_refs, dataset, "probe", range(n)), adapters)


@st.cache_data(show_spinner="Computing embeddings…", max_entries=64)
def embeddings(model_refs: tuple, dataset: str, split: str, index: tuple[int, ...],
               stage: int | None = None) -> dict[str, np.ndarray]:
    """Penultimate embeddings (or one stage's flattened maps) of each model on the same images."""
    x = _images(dataset, split, index)
    return {name: inside.embeddings(_net(ref), x, stage=stage).numpy() for name, ref in model_refs}


@st.cache_data(show_spinner="Computing the FT factors…", max_entries=32)
def factor_space(model_refs: tuple, method_run: str | None, teacher_name: str, dataset: str,
                 index: tuple[int, ...]) -> dict:
    """The points the factor page maps: the teacher's paraphraser factors and the FT student's translator
    factors (when the run saved its modules), and every model's penultimate features, on the same test
    images; plus how far each student's points are from the teacher's (distance correlation, and for the
    factors the FT loss's distance)."""
    points = {f"{name}: penultimate features": e for name, e in embeddings(model_refs, dataset, "test", index).items()}
    method = method_modules(method_run, str(default_runs_dir()), teacher_name) if method_run else None
    numbers = {}
    if method is not None:
        f = inside.factor_embeddings(method, student_model(method_run, str(default_runs_dir())),
                                     resources.teacher(teacher_name), _images(dataset, "test", index))
        points = {"teacher factor (paraphraser)": f["teacher"].numpy(), "FT student factor (translator)": f["student"].numpy(),
                  **points}
        numbers["FT student factor vs teacher factor"] = inside.factor_agreement(f["student"], f["teacher"])
    # where FT acts: the last stage's maps (the translator's input), on about 200 of the images
    few = index[:: max(1, len(index) // 200)]
    last = {k: torch.from_numpy(v) for k, v in embeddings(model_refs, dataset, "test", few, stage=-1).items()}
    teacher = torch.from_numpy(points["teacher: penultimate features"])
    for name, _ in model_refs[1:]:
        numbers[f"{name}: last-stage maps vs the teacher's"] = {
            "distance correlation": inside.distance_correlation(last[name], last["teacher"])}
        numbers[f"{name}: penultimate features vs the teacher's"] = {
            "distance correlation": inside.distance_correlation(torch.from_numpy(points[f"{name}: penultimate features"]),
                                                                teacher)}
    return {"points": points, "numbers": numbers}


def warm_factor_space(dataset: str) -> None:
    """For the server's warm-up: the Factor space page's default view of the shipped students (its
    points; the t-SNE maps of that view are shipped), through the page's own cached function."""
    found = maps.shipped_pair(dataset)
    if found is None:
        return
    preset, base, run = found
    test = test_split(preset)
    index = tuple(inside.class_sorted_index(test.labels, maps.DEFAULTS["per_class"], 0).tolist())
    factor_space(refs(preset, base, run, maps.METHOD), run["id"] if has_method_state(run) else None,
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
            index = inside.class_sorted_index(test_split(preset).labels, 10, 0)
            relations(model_refs, preset.dataset, tuple(index.tolist()))
        else:
            teacher_confusion(preset.teacher, preset.dataset)


@st.cache_data(show_spinner="Running t-SNE (cached per model, data, perplexity and seed)…", max_entries=64)
def tsne_maps(keys: tuple[str, ...], point_sets: list[np.ndarray], perplexity: float, seed: int) -> list[np.ndarray]:
    """t-SNE of each point set, two at a time. The cache key holds the points themselves (they come from
    the models on the data) with the perplexity and seed: one entry per (models, data, perplexity, seed)."""
    return inside.tsne_many(point_sets, perplexity, seed)


@st.cache_data(show_spinner="Reading the teacher's test-set logits (shipped, else one pass, then on disk)…", max_entries=8)
def teacher_confusion(teacher_name: str, dataset: str) -> np.ndarray:
    data = test_split(presets.PRESETS[dataset])
    shipped = resources.shipped_test_logits(TeacherRef(PRETRAINED, teacher_name))
    logits = teacher_logits(resources.teacher(teacher_name), data, device="cpu", shipped=shipped)
    return confusion_matrix(data.labels, logits.argmax(1), data.num_classes).numpy()


def teacher_soft_targets(teacher_name: str, dataset: str, index: tuple[int, ...], T: float) -> np.ndarray:
    """softmax(z/T) of the teacher on followed probe images (of ``dataset``'s shipped teacher): from its
    logits on the probe set, computed once for the server (and on disk), so a new T is no model pass."""
    logits = resources.teacher_outputs(teacher_name)["gallery_logits"]
    return soften(logits[torch.as_tensor(list(index), dtype=torch.int64)], T).numpy()


@st.cache_data(show_spinner="Measuring distances and angles…", max_entries=64)
def relations(model_refs: tuple, dataset: str, index: tuple[int, ...]) -> dict:
    """Per model on a class-sorted batch: normalised distance matrix, angle histogram, and for the
    students the correlation of their distances and angles with the teacher's."""
    shipped = _shipped("relations", model_refs, dataset, "test", index, {})
    if shipped is not None:
        return shipped
    return views.relations_view({name: torch.from_numpy(e) for name, e in embeddings(model_refs, dataset, "test", index).items()})


def soft_target_recording(preset: presets.Preset):
    """What the soft-target page follows during a KD run: a factory of two recorders (baseline and
    KD student, about ten frames per epoch of the same probe images) and the metadata saved with them."""
    budget = preset.budget_for("kd")
    train_size = int(len(resources.dataset(preset.dataset).train) * budget.fraction)
    recorder, meta = recording.follow_probe(preset.teacher, train_size)
    return (lambda: [recorder(), recorder()]), meta


def has_soft_targets(record: dict) -> bool:
    return student_runs.has_soft_targets(record, default_runs_dir())


def has_method_state(record: dict) -> bool:
    return student_runs.has_method_state(record, default_runs_dir())


@st.cache_data(show_spinner=False, max_entries=32)
def soft_target_frames(run_id: str) -> dict | None:
    return load_soft_targets({"id": run_id}, default_runs_dir())


def soft_target_gaps(recorded: dict[str, dict], teacher_name: str, dataset: str, T: float,
                     kinds: np.ndarray | None) -> dict:
    """For the soft-target page: per student, KL(teacher ‖ student) at T for every frame and followed
    image (frames, images), and the followed images' kind names (None without kinds)."""
    index = next(iter(recorded.values()))["index"]
    teacher = teacher_soft_targets(teacher_name, dataset, tuple(index), T)
    gaps = inside.frame_gaps({name: s["frames"] for name, s in recorded.items()}, teacher, T)
    names = None if kinds is None else [pretrained.PROBE_KINDS[int(kinds[j])] for j in index]
    return {"gaps": gaps, "kinds": names}
