"""The teachers shipped in ``pretrained/``: reading them, and checking them against their cards.

Every shipped teacher has three files (made by ``kdviz pretrained make NAME``, see
:mod:`kdviz.recipes`):

- ``<name>.pt``: the weights (a kdviz checkpoint, ``weights_only``-loadable);
- ``<name>.probe.npz``: a few hundred labelled test images (uint8, compressed,
  loadable with ``allow_pickle=False``), so pages that need only a teacher and
  some images work with no data set installed;
- ``<name>.json``: the model card (data set, architecture, test accuracy as
  measured by kdviz, epochs, seed, wall time, the command that reproduces it,
  sha256 of the weights and of the probe set, classes, mean/std).

``<name>.test_logits.npz`` (optional, made by ``kdviz pretrained make-logits``) holds the
teacher's float32 logits on the whole test split with the :mod:`kdviz.teacher_cache` key they
were made for, so the pages' test-set views need no teacher pass on a fresh server
(:func:`test_logits_file`; its sha256 is in the card as ``test_logits_sha256``).

The card is written last, so a teacher is listed only once all its files exist.
:func:`load` and :func:`probe_set` check the sha256 from the card before they
read a file, so a changed or truncated file is refused, never half-loaded.

Small **students** distilled from those teachers are shipped in ``pretrained/students/``
(made by ``kdviz pretrained make-students``), so the "inside the networks" pages show
teacher, labels-only student and method student at first visit. Each has ``<name>.pt``,
its card ``<name>.json`` (the teacher, the method and its parameters, the run config with
the budget, test accuracy and confusion matrix, sha256 of every file) and, where the pages
need them, ``<name>.method.pt`` (the method's trained modules, e.g. FT's paraphraser and
translator) and ``<name>.soft_targets.json`` (its outputs on followed probe images during
training). :func:`load_student` and :func:`student_file` check the sha256 the same way.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdviz.data import ImageData
from kdviz.files import file_sha256, read_json, write_atomic, write_json_atomic
from kdviz.runs import load_checkpoint
from kdviz.teacher_cache import write_shipped

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


def load(name: str) -> torch.nn.Module:
    """The teacher, in eval mode on the CPU, after checking its file against the card's sha256."""
    info = card(name)
    return _matching(load_checkpoint(verified(weights_path(name), info["sha256"])), info, card_path(name))


def _matching(model: torch.nn.Module, info: dict, card_file: Path) -> torch.nn.Module:
    """``model``, once its spec is the one its card describes (and the app lists it by)."""
    if model.spec.to_dict() != info["spec"]:
        raise PretrainedError(f"{card_file} describes a {info['spec']} model, but its weights file holds a "
                              f"{model.spec.to_dict()} one: refusing a card that does not match its file")
    return model


def load_student(name: str) -> torch.nn.Module:
    """A shipped student, in eval mode on the CPU, after checking its file against its card."""
    info = student_card(name)
    model = load_checkpoint(verified(weights_path(name, students_dir()), info["sha256"]))
    return _matching(model, info, card_path(name, students_dir())).eval()


def shipped_file_path(name: str, kind: str) -> Path:
    """Where the shipped student ``name``'s extra file of ``kind`` made here goes: ``students/<name>.<kind>.npz``."""
    return students_dir() / f"{name}.{kind}.npz"


def ship_student_file(name: str, kind: str, write: Callable, **fields) -> Path:
    """Write the shipped student ``name``'s extra file of ``kind`` (:func:`shipped_file_path`, written
    atomically by ``write(file)``) and record it in its card: file name, sha256 and ``fields``."""
    path = shipped_file_path(name, kind)
    write_atomic(path, write)
    card_file = card_path(name, students_dir())
    info = read_json(card_file)
    info["extra_files"][kind] = {"file": path.name, "sha256": file_sha256(path), **fields}
    write_json_atomic(card_file, info)
    return path


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


def make_test_logits(name: str, test: ImageData) -> dict:
    """Write ``<name>.test_logits.npz`` (the teacher's fp32 logits on ``test``, its test split) and
    record it in the card (file, sha256, cache key, images, command). Returns the card's new fields."""
    info = card(name)
    if test.split != "test" or Path(test.name).name != info["dataset"]:
        raise PretrainedError(f"{name} ships logits on the {info['dataset']} test split, got {test.name} {test.split}")
    path = test_logits_path(name)
    made = write_shipped(path, load(name), test)
    fields = {"test_logits_file": path.name, "test_logits_sha256": file_sha256(path),
              "test_logits_key": made["key"], "test_logits_images": made["images"],
              "test_logits_note": "float32 logits of the shipped weights on the whole test split (fp32, CPU), "
                                  "made by `kdviz pretrained make-logits`; read instead of a teacher pass when "
                                  "their key (weights, pixels, precision) matches"}
    write_json_atomic(card_path(name), info | fields)
    return fields


def probe_set(name: str) -> ImageData:
    """The teacher's shipped probe images (split ``"probe"``), normalised like its training data."""
    info = card(name)
    arrays = _read_probe(verified(probe_path(name), info["probe_sha256"]))
    return ImageData(info["dataset"], "probe", torch.from_numpy(arrays["pixels"]),
                     torch.from_numpy(arrays["labels"]).long(), tuple(info["classes"]),
                     tuple(info["mean"]), tuple(info["std"]), source=str(probe_path(name)))


def probe_details(name: str) -> dict[str, torch.Tensor]:
    """Per probe image: ``kind`` (code into :data:`PROBE_KINDS`) and ``test_index`` (its place in the test split)."""
    info = card(name)
    arrays = _read_probe(verified(probe_path(name), info["probe_sha256"]))
    return {"kind": torch.from_numpy(arrays["kind"]).long(), "test_index": torch.from_numpy(arrays["test_index"]).long()}


def _read_probe(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in ("pixels", "labels", "kind", "test_index")}
    except Exception as error:  # noqa: BLE001 - whatever is wrong, the file is unusable
        raise PretrainedError(f"{path} is not a valid probe set ({type(error).__name__}: {error})") from None
