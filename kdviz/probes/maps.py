"""The Factor space page's t-SNE maps of the shipped networks, made once and shipped.

t-SNE (van der Maaten & Hinton 2008) of 400 points takes seconds per map on two cores, and the
page draws four (Kim, Park & Kwak 2018, factor transfer: the teacher's paraphrased factor, the FT
student's translated factor, and both students' penultimate features). For the shipped teacher and
shipped students at the page's default settings, the maps are computed by
``kdviz pretrained make-students`` (after the students) and shipped beside the FT student
(``pretrained/students/<ft student>.tsne.npz``, an extra file of its card, sha256 checked). The
file holds the key of what it was made from: the sha256 of the teacher's, both students' and the
FT modules' files, a digest of the chosen test images, the number per class, perplexity and seed.
The page uses it only when its own key is the same; the user's own students and any other
setting are computed live.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from kdviz import data as datasets
from kdviz import presets, pretrained
from kdviz.data import ImageData
from kdviz.probes import inside, views
from kdviz.students import load_method, load_student, shipped_name

METHOD = "ft"
STUDENT_NAME = views.METHOD_NAMES[METHOD]  # the page's name for the method student (its panels are named after it)
PANELS = ("teacher factor (paraphraser)", "FT student factor (translator)",
          "baseline: penultimate features", "FT student: penultimate features")
DEFAULTS = {"per_class": 40, "perplexity": 30.0, "seed": 0}  # the page's default view
KIND = "tsne"  # the extra file's kind in the FT student's card


def maps_key(teacher: str, baseline: dict, student: dict, test: ImageData, index, perplexity: float,
             seed: int) -> str | None:
    """The key of the factor page's maps for a shipped teacher and two shipped students (records),
    on ``test[index]``; None when either student is not a shipped one (then maps are computed live)."""
    parts = views.shipped_parts(teacher, baseline, student, test, index)
    if parts is None:
        return None
    parts |= {"perplexity": float(perplexity), "seed": int(seed), "panels": list(PANELS)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def factor_points(teacher, baseline, student, method, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The page's four point sets on images ``x``: both factors (when ``method`` is the FT student's
    trained modules) and both students' penultimate features, by panel name."""
    points = {}
    if method is not None:
        f = inside.factor_embeddings(method, student, teacher, x)
        points[PANELS[0]], points[PANELS[1]] = f["teacher"].numpy(), f["student"].numpy()
    points[PANELS[2]] = inside.embeddings(baseline, x).numpy()
    points[PANELS[3]] = inside.embeddings(student, x).numpy()
    return points


def read_maps(path: Path | None, key: str | None) -> dict[str, np.ndarray] | None:
    """The maps of a file written by :func:`make_factor_maps` when it holds ``key``, else None."""
    if path is None or key is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            maps = {name: npz[f"map{i}"] for i, name in enumerate(PANELS) if f"map{i}" in npz}
    except Exception:  # noqa: BLE001 - a missing or foreign file is never trusted
        return None
    ok = maps and all(m.dtype == np.float32 and m.ndim == 2 and m.shape[1] == 2 and np.isfinite(m).all()
                      for m in maps.values())
    return maps if ok else None


def shipped_pair(dataset: str) -> tuple[presets.Preset, dict, dict] | None:
    """The data set's preset and its shipped baseline and FT students (records), or None."""
    return views.shipped_pair(dataset, METHOD)


def shipped_maps(dataset: str, baseline: dict, student: dict, test: ImageData, index, perplexity: float,
                 seed: int) -> dict[str, np.ndarray] | None:
    """The shipped maps for exactly these students, images and settings (file checked against the FT
    student's card), or None: then the caller computes them."""
    preset = presets.PRESETS.get(dataset)
    if preset is None or shipped_name(student) is None:
        return None
    try:
        path = pretrained.student_file(shipped_name(student), KIND)
    except pretrained.PretrainedError:
        return None
    return read_maps(path, maps_key(preset.teacher, baseline, student, test, index, perplexity, seed))


def make_factor_maps(dataset: str, test: ImageData, per_class: int = DEFAULTS["per_class"],
                     perplexity: float = DEFAULTS["perplexity"], seed: int = DEFAULTS["seed"]) -> dict | None:
    """Compute the default view's maps for the data set's shipped teacher and students and ship them
    beside the FT student (its card gets the file and sha256). None when the data set has no shipped
    FT pair. Skips the work when the shipped file already holds this key."""
    found = shipped_pair(dataset)
    if found is None:
        return None
    preset, base, run = found
    index = inside.class_sorted_index(test.labels, per_class, 0).tolist()
    key = maps_key(preset.teacher, base, run, test, index, perplexity, seed)
    name = shipped_name(run)
    path = pretrained.shipped_file_path(name, KIND)
    if shipped_maps(dataset, base, run, test, index, perplexity, seed) is not None:
        return {"file": path.name, "key": key, "made": False}
    teacher = pretrained.load(preset.teacher)
    student = load_student(run)
    method = load_method(run, student, teacher)
    points = factor_points(teacher, load_student(base), student, method, test.images(torch.tensor(index)))
    shown = [p for p in PANELS if p in points]
    maps = inside.tsne_many([points[p] for p in shown], perplexity, seed)
    arrays = {f"map{PANELS.index(p)}": m.astype(np.float32) for p, m in zip(shown, maps)}
    pretrained.ship_student_file(name, KIND, lambda f: np.savez_compressed(f, key=np.array(key), **arrays), key=key,
                                 note=f"t-SNE maps of the Factor space page's default view ({per_class} test images "
                                      f"per class, perplexity {perplexity:g}, seed {seed}) with the shipped "
                                      f"teacher and students, made by `kdviz pretrained make-students {dataset}`")
    return {"file": path.name, "key": key, "made": True}


def make_all(names: list[str] | None = None) -> list[dict]:
    """:func:`make_factor_maps` for the data sets ``names`` (all with a shipped FT pair when empty)."""
    made = []
    for dataset in names or list(presets.PRESETS):
        if shipped_pair(dataset) is None:
            continue
        result = make_factor_maps(dataset, datasets.load(dataset).test)
        if result is not None:
            made.append({"dataset": dataset, **result})
    return made
