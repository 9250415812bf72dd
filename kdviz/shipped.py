"""The shipped teachers' and students' small files, read without torch: where they are, their model
cards (checked field by field), the sha256 check every read goes through, and their numpy arrays (a
teacher's probe images, its test-set logits).

:mod:`kdviz.pretrained` loads the networks themselves (torch) on top of this module. This one stays
torch-free so that a page's first view can be drawn from shipped numbers before torch is imported:
on a fresh server torch's import is most of a first view's wait (BENCHMARKS.md, app speed). The
files themselves are described in :mod:`kdviz.pretrained`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kdviz.files import file_sha256, read_json
from kdviz.idx import Images

PROBE_KINDS = ("ambiguous", "clear", "typical")  # index = the code stored per probe image


class PretrainedError(ValueError):
    """A shipped teacher is missing, unknown, or does not match its card."""


# --------------------------------------------------------------------------- shipped files
def pretrained_dir() -> Path:
    """``$KDVIZ_PRETRAINED`` or the ``pretrained/`` folder beside the package."""
    return Path(os.environ.get("KDVIZ_PRETRAINED") or Path(__file__).resolve().parent.parent / "pretrained")


def weights_path(name: str, folder: Path | None = None) -> Path:
    return Path(folder or pretrained_dir()) / f"{name}.pt"


def probe_path(name: str, folder: Path | None = None) -> Path:
    return Path(folder or pretrained_dir()) / f"{name}.probe.npz"


def test_logits_path(name: str, folder: Path | None = None) -> Path:
    return Path(folder or pretrained_dir()) / f"{name}.test_logits.npz"


def card_path(name: str, folder: Path | None = None) -> Path:
    return Path(folder or pretrained_dir()) / f"{name}.json"


def names() -> list[str]:
    """The teachers shipped (those with a card), sorted."""
    return sorted(p.stem for p in pretrained_dir().glob("*.json"))


STUDENTS = "students"  # the folder of pretrained/ that holds the shipped students


def students_dir(folder: Path | None = None) -> Path:
    return Path(folder or pretrained_dir()) / STUDENTS


def student_names() -> list[str]:
    """The students shipped (those with a card), sorted."""
    return sorted(p.stem for p in students_dir().glob("*.json") if "." not in p.stem)


_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def card(name: str) -> dict:
    """The model card of a shipped teacher."""
    return _card(name, pretrained_dir(), "teacher", names)


def student_card(name: str) -> dict:
    """The model card of a shipped student."""
    return _card(name, students_dir(), "student", student_names)


def _card(name: str, folder: Path, what: str, listed: Callable[[], list[str]]) -> dict:
    # a name is a file stem: refuse anything that could walk out of the folder
    if not isinstance(name, str) or not _NAME.match(name) or not card_path(name, folder).is_file():
        raise PretrainedError(f"no pretrained {what} {name!r} in {folder}; shipped: {', '.join(listed()) or 'none'}")
    path = card_path(name, folder)
    try:
        info = read_json(path)
    except (OSError, ValueError) as error:
        raise PretrainedError(f"{path} is not a readable model card ({type(error).__name__}: {error})") from None
    problems = card_problems(info, STUDENT_FIELDS if what == "student" else CARD_FIELDS)
    if problems:
        raise PretrainedError(f"{path} is not a usable model card: {'; '.join(problems)}")
    return info


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


CARD_FIELDS: dict[str, tuple[str, Callable[[object], bool]]] = {
    # field: (what it must be, check) - what loading, listing and the app read from a card
    "dataset": ("a name", lambda v: isinstance(v, str) and bool(v)),
    "model": ("a name", lambda v: isinstance(v, str) and bool(v)),
    "spec": ("a model spec", lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
             and all(isinstance(v.get(k), int) and v.get(k) > 0 for k in ("in_channels", "image_size", "num_classes"))),
    "classes": ("a list of class names", lambda v: isinstance(v, list) and len(v) >= 2 and all(isinstance(c, str) for c in v)),
    "mean": ("a list of numbers", lambda v: isinstance(v, list) and bool(v) and all(_is_number(x) for x in v)),
    "std": ("a list of positive numbers", lambda v: isinstance(v, list) and bool(v) and all(_is_number(x) and x > 0 for x in v)),
    "test_acc": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "epochs": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "wall_time_s": ("a number", lambda v: _is_number(v) and v >= 0),
    "sha256": ("a sha256 in hex", lambda v: isinstance(v, str) and bool(_SHA256.match(v))),
    "probe_sha256": ("a sha256 in hex", lambda v: isinstance(v, str) and bool(_SHA256.match(v))),
}


# a shipped student's card: no probe set of its own (the pages use its teacher's), but what it was
# distilled from and how (method, parameters, the run config with its budget), and its confusion matrix
STUDENT_FIELDS: dict[str, tuple[str, Callable[[object], bool]]] = {
    **{k: v for k, v in CARD_FIELDS.items() if k != "probe_sha256"},
    "role": ("'student'", lambda v: v == "student"),
    "method": ("a method name", lambda v: isinstance(v, str) and bool(v)),
    "method_params": ("a mapping", lambda v: isinstance(v, dict)),
    "teacher": ("a shipped teacher's name", lambda v: isinstance(v, str) and bool(v)),
    "teacher_sha256": ("a sha256 in hex", lambda v: isinstance(v, str) and bool(_SHA256.match(v))),
    "config": ("a run config", lambda v: isinstance(v, dict) and isinstance(v.get("train"), dict)),
    "confusion": ("a square matrix of counts", lambda v: isinstance(v, list) and all(
        isinstance(row, list) and len(row) == len(v) and all(isinstance(x, int) for x in row) for row in v)),
    "extra_files": ("a mapping of kinds to files", lambda v: isinstance(v, dict) and all(
        isinstance(f, dict) and isinstance(f.get("file"), str) and _SHA256.match(str(f.get("sha256")))
        for f in v.values())),
}


def card_problems(info, fields: dict = CARD_FIELDS) -> list[str]:
    """What is missing or wrong in a model card (empty when it is usable); ``fields``:
    :data:`CARD_FIELDS` for a teacher's card, :data:`STUDENT_FIELDS` for a student's."""
    if not isinstance(info, dict):
        return ["not a JSON object"]
    problems = [f"{name} missing" if name not in info else f"{name} is not {what}"
                for name, (what, ok) in fields.items() if name not in info or not ok(info[name])]
    if not problems:
        spec = info["spec"]
        if spec["num_classes"] != len(info["classes"]):
            problems.append(f"spec has {spec['num_classes']} classes, the class list {len(info['classes'])}")
        if not len(info["mean"]) == len(info["std"]) == spec["in_channels"]:
            problems.append(f"mean/std do not have one value per channel ({spec['in_channels']})")
    return problems


def cards() -> tuple[list[dict], dict[str, str]]:
    """Every usable shipped teacher's card (with its ``name``) and, apart, why each other one
    is not: one broken card never hides the others."""
    return _cards(names(), card)


def student_cards() -> tuple[list[dict], dict[str, str]]:
    """The same for the shipped students."""
    return _cards(student_names(), student_card)


def _cards(listed: list[str], read: Callable[[str], dict]) -> tuple[list[dict], dict[str, str]]:
    good, bad = [], {}
    for name in listed:
        try:
            good.append(read(name) | {"name": name})
        except PretrainedError as error:
            bad[name] = str(error)
    return good, bad


def verified(path: Path, expected: str) -> Path:
    """``path`` if its sha256 is ``expected``; otherwise an error that names the file."""
    if not path.is_file():
        raise PretrainedError(f"{path} is missing (its model card lists it)")
    actual = file_sha256(path)
    if actual != expected:
        raise PretrainedError(f"{path} does not match the sha256 in its model card (expected {expected[:12]}..., "
                              f"found {actual[:12]}...): the file is corrupt or was changed; refusing to load it")
    return path


def shipped_file_path(name: str, kind: str) -> Path:
    """Where the shipped student ``name``'s extra file of ``kind`` made here goes: ``students/<name>.<kind>.npz``."""
    return students_dir() / f"{name}.{kind}.npz"


def student_file(name: str, kind: str) -> Path | None:
    """A shipped student's extra file of ``kind`` (``"method"``, ``"soft_targets"``), checked against
    its card; None when the student has none of that kind."""
    extra = student_card(name)["extra_files"].get(kind)
    if extra is None:
        return None
    path = students_dir() / extra["file"]
    if path.parent != students_dir() or not _NAME.match(path.name):
        raise PretrainedError(f"the card of {name} names a file outside {students_dir()}: {extra['file']!r}")
    return verified(path, extra["sha256"])


def test_logits_file(name: str) -> Path | None:
    """The teacher's shipped test-set logits (for ``teacher_cache.teacher_logits(..., shipped=)``),
    checked against the card's sha256; None when the teacher ships none."""
    info = card(name)
    if "test_logits_sha256" not in info:
        return None
    return verified(test_logits_path(name), info["test_logits_sha256"])


def _read_probe(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in ("pixels", "labels", "kind", "test_index")}
    except Exception as error:  # noqa: BLE001 - whatever is wrong, the file is unusable
        raise PretrainedError(f"{path} is not a valid probe set ({type(error).__name__}: {error})") from None


def probe_arrays(name: str) -> dict[str, np.ndarray]:
    """A shipped teacher's probe images as arrays, checked against its card: ``pixels`` (uint8, N×C×H×W),
    ``labels``, ``kind`` (a code into :data:`PROBE_KINDS`) and ``test_index`` (each image's place in the test split)."""
    return _read_probe(verified(probe_path(name), card(name)["probe_sha256"]))


@dataclass(frozen=True)
class Probe(Images):
    """A shipped teacher's probe images as numpy arrays (:class:`kdviz.idx.Images`, normalised like the
    teacher's training data), with its data set and each image's kind and test index."""

    dataset: str
    kind: np.ndarray         # int64 codes into PROBE_KINDS
    test_index: np.ndarray   # int64: each image's place in the test split


def probe(name: str) -> Probe:
    """:func:`probe_arrays` of the shipped teacher ``name`` with its card's data set, classes and normalisation."""
    info, arrays = card(name), probe_arrays(name)
    return Probe(arrays["pixels"], arrays["labels"].astype(np.int64), tuple(info["classes"]), tuple(info["mean"]),
                 tuple(info["std"]), info["dataset"], *(arrays[k].astype(np.int64) for k in ("kind", "test_index")))


def test_logits(name: str) -> np.ndarray | None:
    """A shipped teacher's float32 logits on its whole test split (``<name>.test_logits.npz``, checked
    against the card's sha256 and shape), or None when it ships none."""
    path = test_logits_file(name)
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            logits = npz["logits"]
    except Exception as error:  # noqa: BLE001 - whatever is wrong, the file is unusable
        raise PretrainedError(f"{path} is not a valid logits file ({type(error).__name__}: {error})") from None
    classes = card(name)["spec"]["num_classes"]
    if logits.dtype != np.float32 or logits.ndim != 2 or logits.shape[1] != classes or not np.isfinite(logits).all():
        raise PretrainedError(f"{path} does not hold finite float32 logits for {classes} classes")
    return logits


def test_labels(name: str) -> np.ndarray | None:
    """The labels of a shipped teacher's test split, in the order of its test-set logits (kept beside them in
    ``<name>.test_logits.npz``, checked against the card's sha256): with :func:`test_logits`, what the
    dark-knowledge matrix needs, with no data set and no torch. None when it ships no test-set logits, or
    logits written before their file kept the labels."""
    logits = test_logits(name)
    if logits is None:
        return None
    path = test_logits_file(name)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "labels" not in npz.files:
                return None
            labels = npz["labels"]
    except Exception as error:  # noqa: BLE001 - whatever is wrong, the file is unusable
        raise PretrainedError(f"{path} is not a valid logits file ({type(error).__name__}: {error})") from None
    classes = card(name)["spec"]["num_classes"]
    if labels.dtype.kind not in "iu" or labels.shape != (len(logits),) or labels.min(initial=0) < 0 \
            or labels.max(initial=0) >= classes:
        raise PretrainedError(f"{path} does not hold one label in 0..{classes - 1} for each of its {len(logits)} logits")
    return labels.astype(np.int64)


def teacher_confusion(name: str) -> np.ndarray | None:
    """A shipped teacher's confusion matrix on its test split (``[true, predicted]`` counts, from its shipped
    test-set logits: ``test_confusion`` in its card), or None when its card has none."""
    matrix = card(name).get("test_confusion")
    if matrix is None:
        return None
    classes = len(card(name)["classes"])
    try:
        m = np.asarray(matrix)
    except (ValueError, TypeError):  # rows of different lengths
        m = np.zeros(0)
    if m.shape != (classes, classes) or m.dtype.kind not in "iu" or (m < 0).any():
        raise PretrainedError(f"the card of {name} holds no {classes}×{classes} matrix of counts as its test_confusion")
    return m.astype(np.int64)


def teacher_gallery(name: str) -> dict | None:
    """What a first picture of a shipped teacher needs, without torch and without a teacher pass: its
    ``dataset``, ``classes``, probe ``pixels`` and ``labels``, and its ``logits`` on them, read from its shipped test-set
    logits (every probe image is the test image at its ``test_index``); None when it ships no test-set logits."""
    logits = test_logits(name)
    if logits is None:
        return None
    probe = probe_arrays(name)
    index = probe["test_index"]
    if index.min(initial=0) < 0 or index.max(initial=-1) >= len(logits):
        raise PretrainedError(f"the probe set of {name} points past its {len(logits)} test-set logits")
    info = card(name)
    return {"name": name, "dataset": info["dataset"], "classes": list(info["classes"]), "pixels": probe["pixels"],
            "labels": probe["labels"], "logits": logits[index]}
