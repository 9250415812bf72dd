"""What the Attention maps, FSP matrices and Relations pages draw, and their default views of the
shipped networks, made once and shipped; the Factor space page's t-SNE maps are made here too
(:func:`make_factor_maps`, read by :mod:`kdviz.probes.maps`).

Each page compares the teacher, a baseline student and a method student on the same images; the
numbers come from the functions below (pure, from the networks' stage maps or embeddings):

- :func:`attention_view`: attention maps per stage (Zagoruyko & Komodakis 2017, Q = mean_c |A_c|^p,
  RMS-scaled for drawing) and each network's AT distance to the teacher, per stage and image;
- :func:`at_summary`: those distances averaged over the images, per student;
- :func:`fsp_view`: FSP matrices per consecutive stage pair (Yim et al. 2017), batch-mean, with each
  network's FSP distance to the teacher and how well its mean matrix's pattern matches the teacher's;
- :func:`relations_view`: the normalised distance matrix and angle histogram of each network's
  embeddings (Park et al. 2019, RKD), and for the students how they correlate with the teacher's.

On a fresh server a page's first chart waited for three networks to be loaded and run over the
probe or test images: on the FSP page, 2.5-2.7 s of the server's run beside the browser on a 2-core
AMD EPYC, ahead of the first chart (BENCHMARKS.md). For the shipped teacher and shipped students at a
page's default settings (:func:`default_views`), ``kdviz pretrained make-students`` computes the view
once and ships it beside the method student (``pretrained/students/<student>.views.npz``, an extra
file of its card, sha256 checked), as :mod:`kdviz.probes.maps` does for the Factor space page's
t-SNE maps. Each view in the file holds the key of what it was made from (the sha256 of the
teacher's and both students' files and of the method's modules, a digest of the exact images and
their normalisation, the view's settings); a page uses a view only when its own key is the same,
and computes everything else live (the user's own students, any other image or setting).
tests/test_views.py checks that every shipped view equals what the networks give now.

The file is plain arrays (``np.load(allow_pickle=False)``) and one JSON text for their nesting:
nothing in it runs as code. Packing, keys and the lookup are in :mod:`kdviz.probes.view_files`
(torch-free, so that a page can draw a shipped view before torch is imported).
"""
from __future__ import annotations

import numpy as np
import torch

from kdviz import data as datasets
from kdviz import presets, pretrained
from kdviz.data import ImageData
from kdviz.models import forward_features
from kdviz.probes import inside, maps
from kdviz.probes.view_files import (  # noqa: F401 - the files read without torch, under the names kdviz uses
    KIND,
    METHOD_NAMES,
    RELATIONS_PER_CLASS,
    VIEW_METHODS,
    VIEW_PAGES,
    class_sorted_index,
    pack,
    read_view,
    shipped_pair,
    shipped_parts,
    shipped_view,
    unpack,
    view_key,
)
from kdviz.recipes import machine_description
from kdviz.students import load_method, load_student, shipped_name

ANGLE_IMAGES = 100  # angles over at most about this many images: N³ triplets


# --------------------------------------------------------------------------- the pages' numbers
def attention_view(stages: dict[str, list[torch.Tensor]], p: float) -> dict:
    """Per network (``stages[name]``: its stage maps, the teacher's under ``"teacher"``): its attention
    maps per stage (RMS-scaled, (n, H, W) each) and its AT distance to the teacher (stages, n)."""
    teacher = stages["teacher"]
    return {name: {"maps": [m.numpy() for m in inside.rms_scaled(inside.stage_attention(s, p))],
                   "distance": inside.at_distances(s, teacher, p)} for name, s in stages.items()}


def at_summary(stages: dict[str, list[torch.Tensor]], p: float) -> dict[str, list[float]]:
    """Per student: its AT distance to the teacher per stage, averaged over the images."""
    teacher = stages["teacher"]
    return {name: inside.at_distances(s, teacher, p).mean(1).tolist() for name, s in stages.items() if name != "teacher"}


def fsp_view(stages: dict[str, list[torch.Tensor]], adapters: dict | None = None) -> dict:
    """Per network: its FSP matrices per consecutive stage pair (mean over the images), its FSP
    distance to the teacher per pair, the Pearson correlation of each mean matrix with the teacher's
    ("pattern") and its stage shapes. ``adapters[name]``: a student's 1×1 adapters (FSP with other
    channel counts than the teacher's), applied to its maps first."""
    adapters = adapters or {}
    teacher = stages["teacher"]
    teacher_matrices = inside.fsp_matrices(teacher)
    out = {}
    for name, s in stages.items():
        a = adapters.get(name)
        matrices = inside.fsp_matrices(s, a)
        out[name] = {"matrices": [g.numpy() for g in matrices], "distance": inside.fsp_distances(s, teacher, a),
                     "pattern": [inside.matrix_correlation(g, t) for g, t in zip(matrices, teacher_matrices)],
                     "shapes": [tuple(m.shape[1:]) for m in s]}
    return out


def relations_view(embeddings: dict[str, torch.Tensor]) -> dict:
    """Per network, on a class-sorted batch: its normalised distance matrix and angle histogram (angles
    over every ``len // ANGLE_IMAGES``-th image), and for the students the correlation of their distances
    and angles with the teacher's."""
    teacher = embeddings["teacher"]
    step = max(1, len(teacher) // ANGLE_IMAGES)
    out = {}
    for name, e in embeddings.items():
        out[name] = {"distances": inside.normalised_distances(e).numpy(), "angles": inside.angle_histogram(e[::step])}
        if name != "teacher":
            out[name]["distance_corr"] = inside.distance_correlation(e, teacher)
            out[name]["angle_corr"] = inside.angle_correlation(e[::step], teacher[::step])
    return out


def default_views(method: str, probe: ImageData, test: ImageData | None) -> list[tuple[str, ImageData, list[int], dict]]:
    """The views a method's page draws first, in its default settings: (view, images, index, settings).
    Attention maps: probe image 0 at p = 2, and the mean AT distances over every probe image; FSP: every
    probe image; Relations: 10 test images per class (seed 0) of ``test`` (only Relations needs it)."""
    every = list(range(len(probe)))
    if method == "at":
        return [("attention", probe, [0], {"p": 2.0}), ("at_summary", probe, every, {"p": 2.0})]
    if method == "fsp":
        return [("fsp", probe, every, {})]
    if method == "rkd":
        return [("relations", test, class_sorted_index(test.labels, RELATIONS_PER_CLASS, 0).tolist(), {})]
    return []


def compute(view: str, nets: dict, images: ImageData, index, settings: dict, adapters: dict | None = None):
    """``view`` of the networks ``nets`` (``{"teacher": ..., "baseline": ..., <method student>: ...}``) on
    ``images[index]``: what the pages compute live."""
    x = images.images(torch.as_tensor(list(index), dtype=torch.int64))
    if view == "relations":
        return relations_view({name: inside.embeddings(net, x) for name, net in nets.items()})
    stages = {name: forward_features(net, x)[1].stages for name, net in nets.items()}
    if view == "attention":
        return attention_view(stages, settings["p"])
    if view == "at_summary":
        return at_summary(stages, settings["p"])
    if view == "fsp":
        return fsp_view(stages, adapters)
    raise ValueError(f"unknown view {view!r}")


def make_views(dataset: str, method: str, test: ImageData | None) -> dict | None:
    """Compute the page's default views (:func:`default_views`) for the data set's shipped teacher and
    students and ship them beside the method student (its card gets the file and sha256). None when the
    data set has no shipped pair for ``method``. Skips the work when the shipped file already holds
    every view's key."""
    found = shipped_pair(dataset, method) if method in VIEW_METHODS else None
    if found is None:
        return None
    preset, base, run = found
    views = default_views(method, pretrained.probe_set(preset.teacher), test)
    keys = [view_key(v, preset.teacher, base, run, images, index, settings) for v, images, index, settings in views]
    name = shipped_name(run)
    path = pretrained.shipped_file_path(name, KIND)
    if all(shipped_view(v, preset.teacher, base, run, images, index, settings) is not None
           for v, images, index, settings in views):
        return {"file": path.name, "page": VIEW_PAGES[method], "views": [v[0] for v in views], "made": False}
    teacher = pretrained.load(preset.teacher)
    student = load_student(run)
    method_modules = load_method(run, student, teacher)
    nets = {"teacher": teacher, "baseline": load_student(base), METHOD_NAMES[method]: student}
    adapters = {METHOD_NAMES[method]: getattr(method_modules, "adapters", None)}
    arrays: dict[str, np.ndarray] = {"keys": np.array(keys)}
    for i, (view, images, index, settings) in enumerate(views):
        text, parts = pack(compute(view, nets, images, index, settings, adapters))
        arrays[f"v{i}"] = np.array(text)
        arrays.update({f"v{i}_{k}": a for k, a in parts.items()})
    pretrained.ship_student_file(name, KIND, lambda f: np.savez_compressed(f, **arrays), keys=keys,
                                 machine=machine_description("cpu"),
                                 note=f"the {VIEW_PAGES[method]} page's default view "
                                      f"({', '.join(v[0] for v in views)}) of the shipped teacher and students, "
                                      f"made by `kdviz pretrained make-students {dataset}`")
    return {"file": path.name, "page": VIEW_PAGES[method], "views": [v[0] for v in views], "made": True}


def make_all(names: list[str] | None = None) -> list[dict]:
    """:func:`make_views` for every method with a page (at, fsp, rkd) and the data sets ``names`` (all
    with a shipped pair when empty)."""
    made = []
    for dataset in names or list(presets.PRESETS):
        methods = [m for m in VIEW_METHODS if shipped_pair(dataset, m) is not None]
        if not methods:
            continue
        test = datasets.load(dataset).test if "rkd" in methods else None  # only Relations draws test images
        for method in methods:
            result = make_views(dataset, method, test)
            if result is not None:
                made.append({"dataset": dataset, "method": method, **result})
    return made


# --------------------------------------------------------------------------- the Factor space page's t-SNE maps, made
def factor_points(teacher, baseline, student, method, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The page's four point sets on images ``x``: both factors (when ``method`` is the FT student's
    trained modules) and both students' penultimate features, by panel name."""
    points = {}
    if method is not None:
        f = inside.factor_embeddings(method, student, teacher, x)
        points[maps.PANELS[0]], points[maps.PANELS[1]] = f["teacher"].numpy(), f["student"].numpy()
    points[maps.PANELS[2]] = inside.embeddings(baseline, x).numpy()
    points[maps.PANELS[3]] = inside.embeddings(student, x).numpy()
    return points


def make_factor_maps(dataset: str, test: ImageData, per_class: int = maps.DEFAULTS["per_class"],
                     perplexity: float = maps.DEFAULTS["perplexity"], seed: int = maps.DEFAULTS["seed"]) -> dict | None:
    """Compute the default view's maps for the data set's shipped teacher and students and ship them
    beside the FT student (its card gets the file and sha256). None when the data set has no shipped
    FT pair. Skips the work when the shipped file already holds this key."""
    found = maps.shipped_pair(dataset)
    if found is None:
        return None
    preset, base, run = found
    index = class_sorted_index(test.labels, per_class, 0).tolist()
    key = maps.maps_key(preset.teacher, base, run, test, index, perplexity, seed)
    name = shipped_name(run)
    path = pretrained.shipped_file_path(name, maps.KIND)
    if maps.shipped_maps(dataset, base, run, test, index, perplexity, seed) is not None:
        return {"file": path.name, "key": key, "made": False}
    teacher = pretrained.load(preset.teacher)
    student = load_student(run)
    method = load_method(run, student, teacher)
    points = factor_points(teacher, load_student(base), student, method, test.images(torch.tensor(index)))
    shown = [p for p in maps.PANELS if p in points]
    drawn = inside.tsne_many([points[p] for p in shown], perplexity, seed)
    arrays = {f"map{maps.PANELS.index(p)}": m.astype(np.float32) for p, m in zip(shown, drawn)}
    pretrained.ship_student_file(name, maps.KIND, lambda f: np.savez_compressed(f, key=np.array(key), **arrays), key=key,
                                 note=f"t-SNE maps of the Factor space page's default view ({per_class} test images "
                                      f"per class, perplexity {perplexity:g}, seed {seed}) with the shipped "
                                      f"teacher and students, made by `kdviz pretrained make-students {dataset}`")
    return {"file": path.name, "key": key, "made": True}


def make_all_maps(names: list[str] | None = None) -> list[dict]:
    """:func:`make_factor_maps` for the data sets ``names`` (all with a shipped FT pair when empty)."""
    made = []
    for dataset in names or list(presets.PRESETS):
        if maps.shipped_pair(dataset) is None:
            continue
        result = make_factor_maps(dataset, datasets.load(dataset).test)
        if result is not None:
            made.append({"dataset": dataset, **result})
    return made
