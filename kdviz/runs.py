"""Run records and checkpoints on disk (reading records, torch-free, is :mod:`kdviz.records`).

A run lives in ``<runs dir>/<run id>/``: ``record.json`` (config, per-epoch
history, final accuracy, confusion matrix, parameter count, latency, library
versions, seed, wall time, the checkpoint's sha256) and, when saved, ``model.pt``.
:func:`save_run` writes both in a hidden staging folder renamed into place at the
end, so a run folder is complete or absent, and a crash never touches earlier
runs; a checkpoint is checked against its record before it is loaded as a model
(:func:`verified_checkpoint`). Checkpoints hold plain tensors and the model's
spec, and load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import importlib.metadata
import os
import pickle
import platform
import re
import secrets
import shutil
import time
import zipfile
from pathlib import Path

import numpy
import torch

from kdviz.files import check_folder_writable, file_sha256, pid_alive, write_atomic, write_json_atomic
from kdviz.models import ModelSpec, ZooModel, build_from_spec
from kdviz.records import (  # noqa: F401 - the records (torch-free), under the names kdviz uses
    ANY,
    CHECKPOINT,
    RECORD,
    check_run_id,
    default_runs_dir,
    find_runs,
    list_runs,
    load_run,
    read_record,
    record_problems,
    run_checkpoint,
)


def new_run_id(*parts: str) -> str:
    """A fresh run id from a time stamp, the ``parts`` and a random suffix: a valid
    :func:`check_run_id` whatever the parts hold (a folder name with spaces, a newline or
    non-ASCII letters becomes ``_``; each part at most 40 characters)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = "-".join(re.sub(r"[^A-Za-z0-9._-]", "_", str(p))[:40] for p in parts if p)
    return f"{stamp}-{label}-{secrets.token_hex(2)}"


def _package_version(name: str) -> str | None:
    """An installed package's version without importing it (importing torchvision costs about 2 s of CPU:
    it pulls in torch._dynamo)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": _package_version("torchvision"), "numpy": numpy.__version__}


def save_record(record: dict, runs_dir: Path | None = None) -> Path:
    """Write ``record`` (which must hold an ``id``) as ``<runs_dir>/<id>/record.json``."""
    path = Path(runs_dir or default_runs_dir()) / record["id"] / RECORD
    write_json_atomic(path, record)
    return path


def save_checkpoint(model: ZooModel, path: Path) -> Path:
    """Weights and the spec that rebuilds the network, atomically."""
    payload = {"spec": model.spec.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return write_atomic(path, lambda f: torch.save(payload, f))


def _read_checkpoint(path: Path, map_location="cpu") -> dict:
    """The payload of a checkpoint file, checked for its form: ``{"spec": {...}, "state_dict":
    {name: tensor}}``, read with ``weights_only=True`` (a file holding other Python objects is
    refused unread: unpickling them could run code)."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise ValueError(f"{path} is not a valid kdviz checkpoint (not a PyTorch file)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path} is not a valid kdviz checkpoint: it holds Python objects besides tensors, refused "
                         "unread (loading them could run code)") from None
    except Exception as error:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise ValueError(f"{path} is not a valid kdviz checkpoint ({_first_line(error)})") from None
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(payload.get("spec") if isinstance(payload, dict) else None, dict) or not isinstance(state, dict) \
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{path} is not a valid kdviz checkpoint (it needs a model spec and a state_dict of tensors)")
    return payload


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def load_checkpoint(path: Path | str, map_location="cpu") -> ZooModel:
    """Rebuild a zoo model from a checkpoint (tensors only: ``weights_only=True``), refusing one
    whose tensors do not fit the model its spec names (missing, extra, reshaped, of another kind
    than the model's: integer or complex weights) or whose weights are not finite."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = _read_checkpoint(path, map_location)
    try:
        model = build_from_spec(ModelSpec(**payload["spec"]))
        expected = model.state_dict()
        for name, tensor in payload["state_dict"].items():
            if name in expected and (tensor.is_floating_point() != expected[name].is_floating_point()
                                     or tensor.is_complex()):
                raise ValueError(f"{name} holds {str(tensor.dtype).removeprefix('torch.')} values, the model's "
                                 f"{str(expected[name].dtype).removeprefix('torch.')}")
        model.load_state_dict(payload["state_dict"])
    except Exception as error:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise ValueError(f"{path} is not a valid kdviz checkpoint ({_first_line(error)})") from None
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:  # a model that outputs NaN teaches nothing: refused before any run uses it
        raise ValueError(f"{path} holds non-finite weights ({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); "
                         "it is not a usable model")
    return model.eval()


def save_run(record: dict, model: ZooModel | None, runs_dir: Path | None = None) -> Path:
    """Save a finished run as ``<runs_dir>/<id>/`` (its checkpoint, when ``model`` is given, and
    its record, written last with the checkpoint's sha256), all or nothing: the files are
    written in a hidden staging folder that is renamed into place at the end, so a crash
    leaves either the whole run or no run (only a hidden folder, removed by a later save
    once its process is gone). ``record`` gains ``checkpoint`` and ``checkpoint_sha256``."""
    root = Path(runs_dir or default_runs_dir())
    final = root / record["id"]
    if final.exists():
        raise FileExistsError(f"run {record['id']!r} already exists in {root}")
    root.mkdir(parents=True, exist_ok=True)
    clean_partial_runs(root)
    staging = root / f"{PARTIAL}{os.getpid()}.{record['id']}"
    staging.mkdir()
    try:
        if model is not None:
            checkpoint = save_checkpoint(model, staging / CHECKPOINT)
            record["checkpoint"] = str(final / CHECKPOINT)
            record["checkpoint_sha256"] = file_sha256(checkpoint)
        else:
            record.pop("checkpoint", None)
            record.pop("checkpoint_sha256", None)
        write_json_atomic(staging / RECORD, record)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


PARTIAL = ".partial."  # staging folders: .partial.<pid>.<run id>


def clean_partial_runs(runs_dir: Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove the staging folders of saves whose process is gone (killed mid-save), once
    older than ``min_age_s``; returns what was removed."""
    removed = []
    now = time.time()
    for folder in Path(runs_dir).glob(f"{PARTIAL}*"):
        pid = folder.name[len(PARTIAL):].partition(".")[0]
        try:
            if pid.isdigit() and not pid_alive(int(pid)) and now - folder.stat().st_mtime >= min_age_s:
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError:
            continue
    return removed


def verified_checkpoint(path: Path | str) -> Path:
    """A run's checkpoint, checked against the sha256 its record holds (records written before
    hashes existed: against the record's model spec). A ``model.pt`` without its
    ``record.json`` is an unfinished run and is refused; any other file stands on its own."""
    path = Path(path)
    record_path = path.parent / RECORD
    if not record_path.is_file():
        if path.name == CHECKPOINT:
            raise ValueError(f"{path} has no record.json beside it: the run did not finish saving, so its "
                             "model is not trusted (a checkpoint of your own can be given under another name)")
        return path
    record = read_record(record_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    expected = record.get("checkpoint_sha256")
    if expected is not None:
        if file_sha256(path) != expected:
            raise ValueError(f"{path} does not match the sha256 in its record ({record_path}): the file was "
                             "changed or replaced; refusing to load it")
        return path
    spec = record.get("student")
    if spec is not None:
        if not isinstance(spec, dict):
            raise ValueError(f"{record_path} is not a usable run record (its student is {spec!r}, not a model spec)")
        payload_spec = _read_checkpoint(path)["spec"]
        if payload_spec != spec:
            raise ValueError(f"{path} holds a {payload_spec.get('name')} model but its record names "
                             f"{spec.get('name')}: the file was replaced; refusing to load it")
    return path


def load_run_checkpoint(run_id: str, runs_dir: Path | None = None) -> ZooModel:
    """The model a run saved, after checking it against the run's record."""
    path = run_checkpoint(run_id, runs_dir)
    if not (path.parent / RECORD).is_file() and path.is_file():
        return load_checkpoint(verified_checkpoint(path))  # refused: no record
    record = load_run(run_id, runs_dir)
    if not path.is_file():
        raise FileNotFoundError(f"run {run_id!r} saved no model" if "checkpoint" not in record
                                else f"checkpoint not found: {path}")
    return load_checkpoint(verified_checkpoint(path))


def check_writable(runs_dir: Path | str | None = None) -> Path:
    """The runs directory, created if needed, after checking that a file can be written in it
    (so a run that could not be saved is refused before it trains, not after)."""
    return check_folder_writable(runs_dir or default_runs_dir(), "runs directory",
                                 "choose another with --runs-dir or KDVIZ_RUNS")


