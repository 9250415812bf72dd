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

This module reads the maps without torch (so that the page's first chart is sent before torch is
imported); :mod:`kdviz.probes.views` computes and ships them (:func:`kdviz.probes.views.make_factor_maps`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kdviz import presets, shipped
from kdviz.catalogue import shipped_name
from kdviz.probes import view_files

METHOD = "ft"
STUDENT_NAME = view_files.METHOD_NAMES[METHOD]  # the page's name for the method student (its panels are named after it)
PANELS = ("teacher factor (paraphraser)", "FT student factor (translator)",
          "baseline: penultimate features", "FT student: penultimate features")
DEFAULTS = {"per_class": 40, "perplexity": 30.0, "seed": 0}  # the page's default view
KIND = "tsne"  # the extra file's kind in the FT student's card


def maps_key(teacher: str, baseline: dict, student: dict, test, index, perplexity: float,
             seed: int) -> str | None:
    """The key of the factor page's maps for a shipped teacher and two shipped students (records),
    on ``test[index]`` (an ImageData or numpy images, as :func:`kdviz.probes.view_files.shipped_parts`); None
    when either student is not a shipped one (then maps are computed live)."""
    parts = view_files.shipped_parts(teacher, baseline, student, test, index)
    if parts is None:
        return None
    parts |= {"perplexity": float(perplexity), "seed": int(seed), "panels": list(PANELS)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read_maps(path: Path | None, key: str | None) -> dict[str, np.ndarray] | None:
    """The maps of a file written by :func:`kdviz.probes.views.make_factor_maps` when it holds ``key``, else None."""
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
    return view_files.shipped_pair(dataset, METHOD)


def shipped_maps(dataset: str, baseline: dict, student: dict, test, index, perplexity: float,
                 seed: int) -> dict[str, np.ndarray] | None:
    """The shipped maps for exactly these students, images and settings (file checked against the FT
    student's card), or None: then the caller computes them."""
    preset = presets.PRESETS.get(dataset)
    if preset is None or shipped_name(student) is None:
        return None
    try:
        path = shipped.student_file(shipped_name(student), KIND)
    except shipped.PretrainedError:
        return None
    return read_maps(path, maps_key(preset.teacher, baseline, student, test, index, perplexity, seed))
