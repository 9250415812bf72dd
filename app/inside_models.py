"""The torch side of the six "inside the networks" pages: the students loaded as networks, the test
images, the numbers computed live from the networks (when no shipped view answers), and training a
pair of students now.

:mod:`inside_common` (torch-free) draws the controls and reads the shipped views; it imports this
module only when it needs a network, a test image or a training run (:func:`inside_common.live`), so
a page whose default view is shipped sends its first chart before torch is imported (the pages reach it
through that function too). Training and every number come from :mod:`kdviz.probes.inside` and :mod:`kdviz.probes.views`.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from kdviz import presets, recording
from kdviz.evaluation import confusion_matrix
from kdviz.models import forward_features
from kdviz.preset_runs import pair_configs
from kdviz.probes import inside, views
from kdviz.runs import default_runs_dir
from kdviz.students import StudentPair, load_method, load_student, record_of
from kdviz.teacher_cache import teacher_logits
from kdviz.teachers import PRETRAINED, TeacherRef

import resources
from resources import teacher_gallery  # noqa: F401 - any teacher's probe set and logits, for inside_common


# --------------------------------------------------------------------------- networks and data
@st.cache_resource(show_spinner="Loading a student…", max_entries=32)
def student_model(run_id: str, runs_dir: str):
    return load_student({"id": run_id}, runs_dir)


@st.cache_resource(show_spinner="Loading the method's modules…", max_entries=16)
def method_modules(run_id: str, runs_dir: str, teacher_name: str):
    record = record_of(run_id, runs_dir)
    return load_method(record, student_model(run_id, runs_dir), resources.teacher(teacher_name), runs_dir)


def test_split(preset: presets.Preset):
    """The data set's test split, read alone with its teacher's normalisation (:func:`resources.test_split`), or
    the probe set when the data set is not on this machine."""
    probe = resources.probe_set(preset.teacher)
    try:
        return resources.test_split(preset.dataset, tuple(probe.mean), tuple(probe.std))
    except Exception:  # noqa: BLE001 - pages work from the shipped probe images alone
        return probe


def images_of(preset: presets.Preset, split: str):
    """The images a view is drawn on: the teacher's probe set (``"probe"``) or the test split (``"test"``)."""
    return resources.probe_set(preset.teacher) if split == "probe" else test_split(preset)


def _net(ref: str):
    kind, _, name = ref.partition(":")
    return resources.teacher(name) if kind == "teacher" else student_model(name, str(default_runs_dir()))


def _images(dataset: str, split: str, index) -> torch.Tensor:
    return images_of(presets.PRESETS[dataset], split).images(torch.as_tensor(list(index), dtype=torch.int64))


def _stages(model_refs, dataset: str, split: str, index) -> dict:
    x = _images(dataset, split, index)
    return {name: forward_features(_net(ref), x)[1].stages for name, ref in model_refs}


# --------------------------------------------------------------------------- the views, computed live
def attention(model_refs, dataset: str, index, p: float) -> dict:
    return views.attention_view(_stages(model_refs, dataset, "probe", index), p)


def at_summary(model_refs, dataset: str, p: float, n: int) -> dict:
    return views.at_summary(_stages(model_refs, dataset, "probe", range(n)), p)


def fsp(model_refs, dataset: str, n: int, method_run: str | None, teacher_name: str) -> dict:
    """The FSP student's matrices go through its method's 1×1 adapters when it has any (``method_run``)."""
    adapters = {}
    if method_run is not None:
        method = method_modules(method_run, str(default_runs_dir()), teacher_name)
        adapters = {name: getattr(method, "adapters", None) for name, ref in model_refs if ref == f"run:{method_run}"}
    return views.fsp_view(_stages(model_refs, dataset, "probe", range(n)), adapters)


def relations(model_refs, dataset: str, index) -> dict:
    return views.relations_view({name: torch.from_numpy(e) for name, e in embeddings(model_refs, dataset, "test", index).items()})


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


# --------------------------------------------------------------------------- training a pair now
def soft_target_recording(preset: presets.Preset):
    """What the soft-target page follows during a KD run: two recorders (baseline and KD student, about
    ten frames per epoch of the same probe images) and the metadata saved with them."""
    budget = preset.budget_for("kd")
    train_size = int(len(resources.dataset(preset.dataset).train) * budget.fraction)
    recorder, meta = recording.follow_probe(preset.teacher, train_size)
    return [recorder(), recorder()], meta


def start_pair(preset: presets.Preset, method: str, record: bool = False) -> StudentPair:
    """Train the page's baseline and method students now, one after the other in the background; with
    ``record``, their outputs on followed probe images are kept too (:func:`soft_target_recording`)."""
    recorders, meta = soft_target_recording(preset) if record else (None, None)
    return StudentPair(pair_configs(preset, method), default_runs_dir(), recorders, meta=meta).start()
