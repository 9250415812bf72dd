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
The files, the cards and the sha256 check live in :mod:`kdviz.shipped`, which reads them without
torch (a page's first view draws from them before torch is imported); this module loads the
networks and writes the files.
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

from pathlib import Path
from typing import Callable

import torch

from kdviz.data import ImageData
from kdviz.evaluation import confusion_matrix
from kdviz.files import file_sha256, read_json, write_atomic, write_json_atomic
from kdviz.runs import load_checkpoint
from kdviz.shipped import (  # noqa: F401 - the files, cards and checks (torch-free), under the names kdviz uses
    CARD_FIELDS,
    PROBE_KINDS,
    STUDENT_FIELDS,
    STUDENTS,
    PretrainedError,
    card,
    card_path,
    card_problems,
    cards,
    names,
    pretrained_dir,
    probe,
    probe_arrays,
    probe_path,
    shipped_file_path,
    student_card,
    student_cards,
    student_file,
    student_names,
    students_dir,
    test_logits_file,
    test_logits_path,
    verified,
    weights_path,
)
from kdviz.teacher_cache import write_shipped


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


def make_test_logits(name: str, test: ImageData) -> dict:
    """Write ``<name>.test_logits.npz`` (the teacher's fp32 logits on ``test``, its test split) and
    record it in the card (file, sha256, cache key, images, command), with the confusion matrix of
    those logits on the test labels (``test_confusion``, what the Confusion page draws for the teacher).
    Returns the card's new fields."""
    info = card(name)
    if test.split != "test" or Path(test.name).name != info["dataset"]:
        raise PretrainedError(f"{name} ships logits on the {info['dataset']} test split, got {test.name} {test.split}")
    path = test_logits_path(name)
    made = write_shipped(path, load(name), test)
    fields = {"test_logits_file": path.name, "test_logits_sha256": file_sha256(path),
              "test_logits_key": made["key"], "test_logits_images": made["images"],
              "test_confusion": confusion_matrix(test.labels, made["logits"].argmax(1), test.num_classes).tolist(),
              "test_logits_note": "float32 logits of the shipped weights on the whole test split (fp32, CPU), "
                                  "made by `kdviz pretrained make-logits`; read instead of a teacher pass when "
                                  "their key (weights, pixels, precision) matches"}
    write_json_atomic(card_path(name), info | fields)
    return fields


def probe_set(name: str) -> ImageData:
    """The teacher's shipped probe images (split ``"probe"``), normalised like its training data."""
    p = probe(name)
    return ImageData(p.dataset, "probe", torch.from_numpy(p.pixels), torch.from_numpy(p.labels), p.classes, p.mean, p.std,
                     source=str(probe_path(name)))


def probe_details(name: str) -> dict[str, torch.Tensor]:
    """Per probe image: ``kind`` (code into :data:`PROBE_KINDS`) and ``test_index`` (its place in the test split)."""
    p = probe(name)
    return {"kind": torch.from_numpy(p.kind), "test_index": torch.from_numpy(p.test_index)}


