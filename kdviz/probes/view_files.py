"""The shipped default views of the Attention maps, FSP matrices and Relations pages, as files, read
without torch: a view packed as arrays and one JSON text (:func:`pack`, :func:`unpack`), the key of what
it was made from (:func:`view_key`), and the lookup a page makes before computing anything
(:func:`shipped_view`); also which shipped students a page's default view is of (:func:`shipped_pair`)
and the class-sorted batch of test images it is drawn on (:func:`class_sorted_index`).
:mod:`kdviz.probes.views` computes the views and writes the files.

``images`` below is anything with ``pixels``, ``labels``, ``mean`` and ``std`` fields: a
:class:`kdviz.data.ImageData` (torch tensors), or a :class:`kdviz.idx.Images` such as a
:class:`kdviz.shipped.Probe` (numpy arrays); all give the same key for the same images
(:func:`kdviz.files.array_digest`). This module stays torch-free so that a page's first view can be
drawn from a shipped view before torch is imported.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kdviz import presets, shipped
from kdviz.catalogue import shipped_name, shipped_students
from kdviz.files import array_digest

KIND = "views"  # the extra file's kind in the method student's card
# how the pages name each method's student (the key of its numbers in a view)
METHOD_NAMES = {"at": "AT student", "fsp": "FSP student", "ft": "FT student", "rkd": "RKD student", "kd": "KD student"}
VIEW_PAGES = {"at": "Attention maps", "fsp": "FSP matrices", "rkd": "Relations (RKD)"}  # pages whose default view is shipped
VIEW_METHODS = tuple(VIEW_PAGES)
RELATIONS_PER_CLASS = 10  # the Relations page's default batch: 10 test images per class (seed 0)


def shipped_pair(dataset: str, method: str) -> tuple[presets.Preset, dict, dict] | None:
    """The data set's preset and its shipped baseline and ``method`` students (records), or None."""
    preset = presets.PRESETS.get(dataset)
    if preset is None or not preset.offers(method):
        return None
    student = preset.student_for(method)
    base = shipped_students(dataset, student, "baseline", preset.teacher)
    run = shipped_students(dataset, student, method, preset.teacher)
    return (preset, base[0], run[0]) if base and run else None


# --------------------------------------------------------------------------- the images of a default view
def class_sorted_index(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Positions of ``per_class`` random examples of every class (numpy's generator, ``seed``), grouped
    by class (class 0 first) and in order within a class: the order that makes block structure visible
    in a distance matrix. The Relations and Factor space pages draw such a batch of test images (their
    shipped default views are made on one); ``labels``: a numpy array or a CPU tensor."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = [np.sort(members[rng.permutation(len(members))[:per_class]])
              for members in (np.flatnonzero(labels == c) for c in np.unique(labels))]
    return np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- a view as arrays and JSON
def pack(value) -> tuple[str, dict[str, np.ndarray]]:
    """A nested view (dicts with string keys, lists, tuples, arrays, numbers, strings, None) as one JSON
    text and the arrays it refers to (``{"__array__": i}`` names array ``a<i>``; tuples are marked)."""
    arrays: dict[str, np.ndarray] = {}

    def encode(v):
        if isinstance(v, np.ndarray):
            arrays[f"a{len(arrays)}"] = v
            return {"__array__": len(arrays) - 1}
        if isinstance(v, dict):
            if not all(isinstance(k, str) and not k.startswith("__") for k in v):
                raise TypeError("a view's dict keys must be strings not starting with '__'")
            return {k: encode(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return {"__tuple__": [encode(x) for x in v]}
        if isinstance(v, list):
            return [encode(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"a view cannot hold {type(v).__name__}")

    return json.dumps(encode(value)), arrays


def unpack(text: str, arrays) -> object:
    """The inverse of :func:`pack` (``arrays``: a mapping of the array names, such as an open npz)."""
    def decode(v):
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                return np.asarray(arrays[f"a{int(v['__array__'])}"])
            if set(v) == {"__tuple__"}:
                return tuple(decode(x) for x in v["__tuple__"])
            return {k: decode(x) for k, x in v.items()}
        if isinstance(v, list):
            return [decode(x) for x in v]
        return v

    return decode(json.loads(text))


# --------------------------------------------------------------------------- the shipped default views
def shipped_parts(teacher: str, baseline: dict, student: dict, images, index) -> dict | None:
    """What a view of the shipped ``teacher`` and two shipped students (records) on ``images[index]`` is
    made from: the sha256 of the three networks' files and of the method's modules, a digest of the exact
    images and their normalisation. None when either student is not a shipped one (then the view is
    computed live)."""
    if shipped_name(baseline) is None or shipped_name(student) is None:
        return None
    method = student["card"]["extra_files"].get("method")
    index = np.asarray(list(index), dtype=np.int64)
    return {"teacher": shipped.card(teacher)["sha256"], "baseline": baseline["card"]["sha256"],
            "student": student["card"]["sha256"], "method": method and method["sha256"],
            "images": array_digest([images.pixels[index], images.labels[index]]),
            "normalisation": [list(images.mean), list(images.std)], "n": len(index)}


def view_key(view: str, teacher: str, baseline: dict, student: dict, images, index,
             settings: dict) -> str | None:
    """The key of ``view`` ("attention", "at_summary", "fsp", "relations") with ``settings``: a sha256 of
    :func:`shipped_parts`, the view's name and its settings (None when a student is not a shipped one)."""
    parts = shipped_parts(teacher, baseline, student, images, index)
    if parts is None:
        return None
    parts |= {"view": view, "settings": {k: settings[k] for k in sorted(settings)}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read_view(path: Path | None, key: str | None):
    """The view stored under ``key`` in a file written by :func:`make_views`, else None (a missing,
    foreign or broken file is never trusted)."""
    if path is None or key is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = [str(k) for k in npz["keys"]]
            if key not in keys:
                return None
            i = keys.index(key)
            prefix = f"v{i}_"
            arrays = {name[len(prefix):]: npz[name] for name in npz.files if name.startswith(prefix)}
            return unpack(str(npz[f"v{i}"]), arrays)
    except Exception:  # noqa: BLE001
        return None


def shipped_view(view: str, teacher: str, baseline: dict, student: dict, images, index,
                 settings: dict):
    """The shipped ``view`` for exactly these networks, images and settings (the file checked against the
    method student's card), or None: then the caller computes it."""
    name = shipped_name(student)
    if name is None or student["card"].get("teacher") != teacher:
        return None
    try:
        path = shipped.student_file(name, KIND)
    except shipped.PretrainedError:
        return None
    return read_view(path, view_key(view, teacher, baseline, student, images, index, settings))
