"""Reference results: what kdviz measured at full budget, beside what the papers report.

The files live in ``results/reference/*.json`` (or ``$KDVIZ_REFERENCE``), one per table,
small enough to ship: run records without checkpoints (or, for tables measured before
records were kept, the per-seed accuracies as published), the budget, the machine, and for
each row the paper's figure where one exists. BENCHMARKS.md's "Reference results" section
and the app's Compare page are both drawn from these files through :func:`tables`, so the
two cannot disagree. ``benchmarks/papers.py`` writes them (and can rerun any row).

A table file::

    {"key", "title", "budget", "machine", "measured", "source", "notes": [...],
     "rows": [{"label", "config" (a RunConfig as a dict, seed of the first run), "seeds",
               "command", "runs": [{"seed", "test_acc", "errors", "train_time_s", "record"?}],
               "paper": {"value": 99.26, "what": "...", "source": "..."} | null}]}
"""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdviz.experiment import RunConfig
from kdviz.files import read_json, write_json_atomic


def reference_dir() -> Path:
    """``$KDVIZ_REFERENCE`` or ``results/reference`` beside the package."""
    return Path(os.environ.get("KDVIZ_REFERENCE") or Path(__file__).resolve().parent.parent / "results" / "reference")


@dataclass
class Row:
    """One row of a reference table, with the numbers it shows."""

    label: str
    config: dict
    seeds: list[int]
    command: str
    runs: list[dict]
    paper: dict | None = None
    note: str = ""

    @property
    def accs(self) -> list[float]:
        return [100 * r["test_acc"] for r in self.runs if r.get("test_acc") is not None]

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.accs) if self.accs else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.accs) if len(self.accs) > 1 else (0.0 if self.accs else None)

    @property
    def errors(self) -> float | None:
        """Mean test errors over the runs (test images wrong), where the runs recorded them."""
        counts = [r["errors"] for r in self.runs if r.get("errors") is not None]
        return statistics.mean(counts) if counts else None

    @property
    def train_time_s(self) -> float | None:
        times = [r["train_time_s"] for r in self.runs if r.get("train_time_s") is not None]
        return statistics.mean(times) if times else None

    def ours(self) -> str:
        """``99.21 ± 0.03`` (mean ± std of the seeds, %), or a dash."""
        if self.mean is None:
            return "–"
        return f"{self.mean:.2f} ± {self.std:.2f}" if len(self.accs) > 1 else f"{self.mean:.2f}"

    def papers(self) -> str:
        if not self.paper:
            return "–"
        value = self.paper.get("value")
        text = f"{value:.2f}" if isinstance(value, (int, float)) else str(value)
        return f"{text} ({self.paper['what']})" if self.paper.get("what") else text


@dataclass
class Table:
    key: str
    title: str
    budget: str
    rows: list[Row]
    machine: str = ""
    measured: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    path: Path | None = None


def _row(d: dict) -> Row:
    return Row(d["label"], d.get("config") or {}, list(d.get("seeds") or []), d.get("command", ""),
               list(d.get("runs") or []), d.get("paper"), d.get("note", ""))


def read_table(path: Path | str) -> Table:
    """One reference file; a clear ``ValueError`` when it is not one."""
    path = Path(path)
    try:
        d = read_json(path)
        return Table(d["key"], d["title"], d["budget"], [_row(r) for r in d["rows"]], d.get("machine", ""),
                     d.get("measured", ""), d.get("source", ""), list(d.get("notes") or []), path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a reference result file ({type(error).__name__}: {error})") from None


def tables(folder: Path | str | None = None) -> list[Table]:
    """Every reference table shipped, in file-name order (files are named to sort as they read)."""
    root = Path(folder) if folder else reference_dir()
    return [read_table(p) for p in sorted(root.glob("*.json"))]


def write_table(table: dict, folder: Path | str | None = None) -> Path:
    """Write a table (a plain dict in the file format) as ``<folder>/<key>.json``, atomically."""
    read = _row  # every row must read back
    for r in table["rows"]:
        read(r)
    path = (Path(folder) if folder else reference_dir()) / f"{table['key']}.json"
    write_json_atomic(path, table)
    return path


def row_configs(row: Row | dict, seeds: list[int] | None = None, save_model: bool = False) -> list[RunConfig]:
    """The runs behind a row, one per seed (the row's own seeds unless given): what re-running
    the row trains."""
    config = row.config if isinstance(row, Row) else row["config"]
    seeds = list(seeds if seeds is not None else (row.seeds if isinstance(row, Row) else row.get("seeds", [0])))
    out = []
    for seed in seeds:
        d = json.loads(json.dumps(config))  # a deep copy of plain data
        d["train"]["seed"] = seed
        d["save_model"] = save_model
        out.append(RunConfig.from_dict(d))
    return out


def cannot_run(row: Row, shipped: set[str] | frozenset[str]) -> str | None:
    """Why ``row`` cannot be re-run on this machine, in one line, or None: its teacher is not
    among the ``shipped`` ones here, or it trains on a CUDA GPU and this machine has none."""
    teacher = row.config.get("teacher")
    if teacher and teacher not in shipped:
        return f"needs the teacher {teacher}: kdviz pretrained make {teacher}"
    if str((row.config.get("train") or {}).get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        return "trains on a CUDA GPU, and this machine has none (its command runs where one is)"
    return None


def overview(table: Table) -> list[dict]:
    """One plain dict per row, as the app's table shows it: row | ours | paper | budget | command."""
    return [{"row": row.label, "ours (mean ± std, %)": row.ours(),
             "per seed": " / ".join(f"{a:.2f}" for a in row.accs) or "–",
             "errors": f"{row.errors:.0f}" if row.errors is not None else "–",
             "paper": row.papers(), "budget": table.budget, "command": row.command} for row in table.rows]


def slim_record(record: dict) -> dict:
    """A run record as shipped: no checkpoint path, no per-step data; history per epoch kept."""
    keep = ("id", "created", "config", "method", "method_params", "dataset", "student", "teacher", "history",
            "test_acc", "confusion", "params", "seed", "device", "gpu", "precision", "train_time_s", "versions", "runner")
    slim = {k: record[k] for k in keep if k in record}
    slim["history"] = [{k: v for k, v in epoch.items() if k in ("epoch", "phase", "losses", "train_acc", "test_acc",
                                                                "images_per_s")}
                       for epoch in record.get("history", [])]
    return slim


def run_summary(record: dict, with_record: bool = True) -> dict:
    """What a table keeps of one run: seed, accuracy, errors on the test set, time, the slim record."""
    test_size = (record.get("dataset") or {}).get("test_size")
    summary = {"seed": record.get("seed"), "test_acc": record["test_acc"], "train_time_s": record.get("train_time_s"),
               "errors": round((1 - record["test_acc"]) * test_size) if test_size else None}
    if with_record:
        summary["record"] = slim_record(record)
    return summary


def command_for(config: dict, threads: int = 1) -> str:
    """The ``kdviz`` command that trains ``config`` (a RunConfig as a dict) for its seed."""
    t = config.get("train", {})
    teacher = config.get("teacher")
    if config.get("method", "baseline") == "baseline" and not teacher:
        parts = ["kdviz train-teacher", f"--dataset {config['dataset']}", f"--model {config['student']}"]
        if config.get("fraction", 1.0) != 1.0:
            parts.append(f"--fraction {config['fraction']:g}")
    else:
        parts = ["kdviz distill", f"--dataset {config['dataset']}", *([f"--teacher {teacher}"] if teacher else []),
                 f"--student {config['student']}", f"--method {config['method']}"]
        parts += [f"--param {k}={v:g}" if isinstance(v, float) else f"--param {k}={v}"
                  for k, v in sorted((config.get("params") or {}).items())]
        if config.get("fraction", 1.0) != 1.0:
            parts.append(f"--fraction {config['fraction']:g}")
        if config.get("hide_labels"):
            parts.append("--hide-labels")
        if config.get("omit_classes"):
            parts.append("--omit-classes " + ",".join(map(str, config["omit_classes"])))
    defaults = {"batch_size": 128, "optimizer": "sgd", "schedule": "onecycle", "weight_decay": 5e-4, "grad_clip": 5.0}
    parts.append(f"--epochs {t.get('epochs', 5)}")
    parts.append(f"--lr {t.get('lr', 0.1):g}")
    for key, default in defaults.items():
        if key in t and t[key] != default:
            parts.append(f"--{key.replace('_', '-')} {t[key]:g}" if isinstance(t[key], float)
                         else f"--{key.replace('_', '-')} {t[key]}")
    if t.get("precision"):
        parts.append(f"--precision {t['precision']}")
    if t.get("augment"):
        parts.append("--augment")
    if t.get("jitter"):
        parts.append(f"--jitter {t['jitter']}")
    if t.get("device") and t["device"] != "auto":
        parts.append(f"--device {t['device']}")
    parts.append(f"--seed {t.get('seed', 0)}")
    return f"OMP_NUM_THREADS={threads} " + " ".join(parts)


def markdown(table: Table) -> str:
    """A table as BENCHMARKS.md shows it: our number | paper's number | budget | command."""
    when = f"Measured {table.measured} on {table.machine}." if any(r.runs for r in table.rows) else "Not measured yet."
    lines = [f"### {table.title}", "", f"Budget: {table.budget}. {when}"
             + (f" Source: `{table.source}`." if table.source else ""), "",
             "| row | ours: test accuracy % (mean ± std) | per seed | errors | paper | train s / run |",
             "|---|---|---|---:|---|---:|"]
    for row in table.rows:
        per_seed = " / ".join(f"{a:.2f}" for a in row.accs) or "–"
        errors = f"{row.errors:.0f}" if row.errors is not None else "–"
        seconds = f"{row.train_time_s:.0f}" if row.train_time_s is not None else "–"
        lines.append(f"| {row.label} | {row.ours()} | {per_seed} | {errors} | {row.papers()} | {seconds} |")
    commands = [(row.label, row.command) for row in table.rows if row.command]
    if commands:
        lines += ["", "Commands (seeds " + ", ".join(map(str, table.rows[0].seeds)) + ": change `--seed`):", ""]
        lines += [f"- {label}: `{command}`" for label, command in commands]
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines)
