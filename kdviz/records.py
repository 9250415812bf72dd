"""Run records on disk, read without torch: where runs live, a record read and checked, the one query
over saved runs (:func:`find_runs`).

A run lives in ``<runs dir>/<run id>/``: ``record.json`` and, when saved, ``model.pt``
(:mod:`kdviz.runs` writes both and loads checkpoints, with torch). This module stays torch-free so that a
page can list the teachers trained here before torch is imported (a first view drawn from shipped
numbers: BENCHMARKS.md, app speed).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from kdviz.files import read_json

RECORD = "record.json"
CHECKPOINT = "model.pt"


def default_runs_dir() -> Path:
    """``$KDVIZ_RUNS`` or ``./runs``."""
    return Path(os.environ.get("KDVIZ_RUNS") or "runs")


def load_run(run_id: str, runs_dir: Path | None = None) -> dict:
    path = Path(runs_dir or default_runs_dir()) / check_run_id(run_id) / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"no run {run_id!r} in {path.parent.parent}")
    return read_record(path)


def read_record(path: Path) -> dict:
    """A run record from its file (a JSON object), or a ValueError that names the file."""
    try:
        record = read_json(path)
    except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not a readable run record ({type(error).__name__}: {error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a run record (not a JSON object)")
    return record


_RUN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")


def check_run_id(run_id: str) -> str:
    """A run id names one folder inside the runs directory: no separators, no leading dot."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or len(run_id) > 200:
        raise ValueError(f"{run_id!r} is not a run id (letters, digits, '.', '_', '+' and '-' only)")
    return run_id


def run_checkpoint(run_id: str, runs_dir: Path | None = None) -> Path:
    return Path(runs_dir or default_runs_dir()) / check_run_id(run_id) / CHECKPOINT


def list_runs(runs_dir: Path | None = None) -> list[dict]:
    """Every readable record, newest first; unreadable ones are skipped (reported in ``error``)."""
    root = Path(runs_dir or default_runs_dir())
    records = []
    for path in sorted(root.glob(f"*/{RECORD}")):
        if path.parent.name.startswith("."):  # a save in progress (or one killed mid-way)
            continue
        try:
            record = read_record(path)
        except ValueError as error:
            records.append({"id": path.parent.name, "error": f"unreadable record: {error}"})
            continue
        problems = record_problems(record, path.parent.name)
        records.append({"id": path.parent.name, "error": f"not a usable run record: {'; '.join(problems)}"}
                       if problems else record)
    return sorted(records, key=lambda r: str(r.get("created") or ""), reverse=True)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problems(record: dict, folder: str) -> list[str]:
    """What makes a record read from ``<runs dir>/<folder>/`` unusable (empty: none): an id other
    than its folder's name, or a field kdviz writes (and the CLI, the sweep and every page read)
    holding something else than kdviz writes there, e.g. an accuracy as text or the config as a
    list. Such a record is listed as broken instead of breaking whatever reads the runs."""
    problems = [] if record.get("id") == folder else [f"its id {record.get('id')!r} is not its folder's name"]
    kinds = {"created": str, "config": dict, "method": str, "dataset": dict, "student": dict, "history": list,
             "confusion": list, "seed": int, "teacher": str}
    for key, kind in kinds.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            problems.append(f"{key} is {type(value).__name__}, not {kind.__name__}")
    accuracy = record.get("test_acc")
    if accuracy is not None and not (_is_number(accuracy) and 0 <= accuracy <= 1):
        problems.append(f"test_acc {accuracy!r} is not a number in [0, 1]")
    config = record.get("config")
    if isinstance(config, dict):
        for key, kind in (("dataset", str), ("student", str), ("train", dict), ("params", dict)):
            if key in config and not isinstance(config[key], kind):
                problems.append(f"config.{key} is {type(config[key]).__name__}, not {kind.__name__}")
        train = config.get("train") if isinstance(config.get("train"), dict) else {}
        for key in ("epochs", "batch_size", "seed"):
            if key in train and (not isinstance(train[key], int) or isinstance(train[key], bool)):
                problems.append(f"config.train.{key} {train[key]!r} is not a whole number")
        for key in ("lr", "weight_decay"):
            if key in train and not _is_number(train[key]):
                problems.append(f"config.train.{key} {train[key]!r} is not a number")
    if isinstance(record.get("student"), dict) and not isinstance(record["student"].get("name"), str):
        problems.append("student has no model name")
    for key in ("params", "latency_ms", "wall_time_s", "train_time_s"):
        if record.get(key) is not None and not _is_number(record[key]):
            problems.append(f"{key} {record[key]!r} is not a number")
    history = record.get("history")
    if isinstance(history, list) and not all(isinstance(h, dict) and isinstance(h.get("epoch"), int)
                                             and isinstance(h.get("test_acc"), (int, float)) for h in history):
        problems.append("history is not a list of epochs (each with its epoch and test_acc)")
    confusion = record.get("confusion")
    if isinstance(confusion, list) and not (all(isinstance(row, list) and len(row) == len(confusion) and
                                                all(_is_number(v) for v in row) for row in confusion)):
        problems.append("confusion is not a square table of counts")
    return problems


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
