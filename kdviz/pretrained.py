"""The teachers shipped in ``pretrained/``, each a checkpoint with a model card.

``pretrained/<name>.json`` is the card (dataset, architecture, measured test
accuracy, epochs, seed, wall time, the command that reproduces it, sha256 of the
weights); ``pretrained/<name>.pt`` the weights; ``pretrained/<name>.probe.pt`` a
few hundred labelled test images (uint8) so pages work with no data set
installed. :func:`load` checks the sha256 before it unpickles anything.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from kdviz.data import ImageData
from kdviz.runs import load_checkpoint


class PretrainedError(ValueError):
    """A shipped teacher is missing, unknown, or does not match its card."""


def pretrained_dir() -> Path:
    """``$KDVIZ_PRETRAINED`` or the ``pretrained/`` folder beside the package."""
    return Path(os.environ.get("KDVIZ_PRETRAINED") or Path(__file__).resolve().parent.parent / "pretrained")


def names() -> list[str]:
    return sorted(p.stem for p in pretrained_dir().glob("*.json"))


def card(name: str) -> dict:
    path = pretrained_dir() / f"{name}.json"
    if not path.is_file():
        raise PretrainedError(f"no pretrained teacher {name!r}; shipped: {', '.join(names()) or 'none'}")
    return json.loads(path.read_text())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise PretrainedError(f"{path} is missing")
    if file_sha256(path) != expected:
        raise PretrainedError(f"{path} does not match the sha256 in its card: the file is corrupt or was changed")
    return path


def load(name: str) -> torch.nn.Module:
    """The teacher, in eval mode, after checking its file against the card's sha256."""
    info = card(name)
    path = _verified(pretrained_dir() / f"{name}.pt", info["sha256"])
    return load_checkpoint(path)


def probe_set(name: str) -> ImageData:
    """The teacher's shipped probe images (test images, ambiguous and clear ones) with labels."""
    info = card(name)
    path = _verified(pretrained_dir() / f"{name}.probe.pt", info["probe_sha256"])
    probe = torch.load(path, weights_only=True)
    return ImageData(info["dataset"], "probe", probe["pixels"], probe["labels"], tuple(info["classes"]),
                     tuple(info["mean"]), tuple(info["std"]), source=str(path))
