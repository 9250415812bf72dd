"""Run records and checkpoints on disk.

A run lives in ``<runs dir>/<run id>/``: ``record.json`` (config, per-epoch
history, final accuracy, confusion matrix, parameter count, latency, library
versions, seed, wall time) and, when saved, ``model.pt``. Both are written to a
temporary file and renamed, so a crash never leaves a half-written record and
never touches earlier runs. Checkpoints hold plain tensors and the model's
spec, and load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path

import numpy
import torch
import torchvision

from kdviz.files import save_torch_atomic, write_json_atomic
from kdviz.models import ModelSpec, ZooModel, build_from_spec

RECORD = "record.json"
CHECKPOINT = "model.pt"


def default_runs_dir() -> Path:
    """``$KDVIZ_RUNS`` or ``./runs``."""
    return Path(os.environ.get("KDVIZ_RUNS") or "runs")


def new_run_id(*parts: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = "-".join(p.replace("/", "_").replace("+", "_") for p in parts if p)
    return f"{stamp}-{label}-{secrets.token_hex(2)}"


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__}


def save_record(record: dict, runs_dir: Path | None = None) -> Path:
    """Write ``record`` (which must hold an ``id``) as ``<runs_dir>/<id>/record.json``."""
    path = Path(runs_dir or default_runs_dir()) / record["id"] / RECORD
    write_json_atomic(path, record)
    return path


def save_checkpoint(model: ZooModel, path: Path) -> Path:
    """Weights and the spec that rebuilds the network, atomically."""
    payload = {"spec": model.spec.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return save_torch_atomic(path, payload)


def load_checkpoint(path: Path | str, map_location="cpu") -> ZooModel:
    """Rebuild a zoo model from a checkpoint (tensors only: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        model = build_from_spec(ModelSpec(**payload["spec"]))
        model.load_state_dict(payload["state_dict"])
    except Exception as error:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise ValueError(f"{path} is not a valid kdviz checkpoint ({type(error).__name__}: {error})") from None
    return model.eval()


def load_run(run_id: str, runs_dir: Path | None = None) -> dict:
    path = Path(runs_dir or default_runs_dir()) / run_id / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"no run {run_id!r} in {path.parent.parent}")
    return json.loads(path.read_text())


def run_checkpoint(run_id: str, runs_dir: Path | None = None) -> Path:
    return Path(runs_dir or default_runs_dir()) / run_id / CHECKPOINT


def list_runs(runs_dir: Path | None = None) -> list[dict]:
    """Every readable record, newest first; unreadable ones are skipped (reported in ``error``)."""
    root = Path(runs_dir or default_runs_dir())
    records = []
    for path in sorted(root.glob(f"*/{RECORD}")):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            records.append(record)
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            records.append({"id": path.parent.name, "error": f"unreadable record: {error}"})
    return sorted(records, key=lambda r: str(r.get("created") or ""), reverse=True)


def check_writable(runs_dir: Path | str | None = None) -> Path:
    """The runs directory, created if needed, after checking that a file can be written in it
    (so a run that could not be saved is refused before it trains, not after)."""
    root = Path(runs_dir or default_runs_dir())
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"runs directory {root} is not writable ({reason}); choose another with --runs-dir "
                         "or KDVIZ_RUNS") from None
    return root


ANY = object()  # find_runs: no condition on this field


def find_runs(runs_dir: Path | None = None, *, dataset: str | None = None, student: str | None = None,
              method: str | None = None, teacher=ANY, finished: bool = True, saved_model: bool = False,
              whole_classes: bool = False) -> list[dict]:
    """The one query over saved runs: records (newest first) that match every condition given.

    ``dataset``/``student``/``method``: the run's data set, student architecture and method.
    ``teacher``: ``None`` keeps runs trained without a teacher; a string keeps runs whose recorded
    teacher (``record["teacher"]``, e.g. ``"pretrained:mnist-cnn"``) is that string.
    ``finished``: readable records of runs that were not stopped. ``saved_model``: runs whose
    checkpoint is on disk. ``whole_classes``: no classes omitted and labels not hidden."""
    found = []
    for r in list_runs(runs_dir):
        c = r.get("config") or {}
        if finished and ("error" in r or r.get("stopped")):
            continue
        if dataset is not None and c.get("dataset") != dataset:
            continue
        if student is not None and c.get("student") != student:
            continue
        if method is not None and r.get("method") != method:
            continue
        if teacher is None and c.get("teacher"):
            continue
        if isinstance(teacher, str) and r.get("teacher") != teacher:
            continue
        if whole_classes and (c.get("omit_classes") or c.get("hide_labels")):
            continue
        if saved_model and not run_checkpoint(r["id"], runs_dir).is_file():
            continue
        found.append(r)
    return found
