"""The papers' experiments as a reader sees them, without torch: which experiments there are, and their results.

:data:`CATALOGUE` lists every experiment (name, title, the paper it repeats, its presets' names);
:mod:`kdviz.experiments` builds its registry on it, adding each experiment's run function and its
presets' settings. The rest reads and writes an experiment's :class:`ExperimentResult` (the files
shipped in ``results/experiments/``) and computes the small summaries a page shows.

Nothing here imports torch, so the Experiments page draws a shipped result's charts before torch's
import, most of a first view's wait on a fresh server (BENCHMARKS.md, app speed).
"""
from __future__ import annotations

import base64
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from kdviz.files import read_json, write_json_atomic


# --------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class ExperimentInfo:
    """One experiment as it is listed: its name, title, the paper it repeats, and its presets' names
    (``quick``, ``full`` and any ``full-X`` variant; their settings are in :mod:`kdviz.experiments`)."""

    name: str
    title: str
    paper: str
    presets: tuple[str, ...] = ("quick", "full")


CATALOGUE: dict[str, ExperimentInfo] = {e.name: e for e in (
    ExperimentInfo("missing-class", "A class the student never saw", "Hinton, Vinyals & Dean 2015, §3"),
    ExperimentInfo("no-labels", "No labels at all", "the seeds' dark-knowledge poster"),
    ExperimentInfo("temperature", "Temperature and the weight of the soft targets", "the seeds' poster, Hinton et al. 2015"),
    ExperimentInfo("little-data", "Little data", "the seeds' dark-knowledge poster", ("quick", "full", "full-cifar10")),
    ExperimentInfo("born-again", "Born-again generations", "Furlanello et al. 2018"),
    ExperimentInfo("data-free", "A teacher that dreams its data", "Yin et al. 2020; Lopes et al. 2017"),
    ExperimentInfo("fast-optimisation", "Fast optimisation with FSP", "Yim et al. 2017"),
)}


def experiment_info(name: str) -> ExperimentInfo:
    """The catalogue's entry for ``name``; an unknown name is a clear error."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(CATALOGUE)}")
    return CATALOGUE[name]


def shipped_presets(name: str) -> list[str]:
    """The presets whose results are shipped in ``results/experiments/``: ``full`` first, then
    every ``full-X`` variant (another data set at its own budget)."""
    return [p for p in experiment_info(name).presets if p == "full" or p.startswith("full-")]


def result_name(name: str, preset: str = "full") -> str:
    """The file a shipped preset's result is kept in: ``full`` -> ``NAME``, ``full-X`` -> ``NAME-X``
    (e.g. little-data's ``full-cifar10`` -> ``little-data-cifar10``)."""
    return name if preset in ("full", "quick") else f"{name}-{preset.removeprefix('full-')}"


# --------------------------------------------------------------------------- results
@dataclass
class ExperimentResult:
    """What an experiment measured: its run records, summary numbers and the extras a page draws
    (curves, galleries), with how it was made (command, date, machine, wall time)."""

    name: str
    preset: str | None
    settings: dict
    summary: dict
    records: list[dict] = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    command: str = ""
    date: str = ""
    machine: str = ""
    elapsed_s: float = 0.0

    def to_dict(self, lean: bool = True) -> dict:
        """As JSON; ``lean`` drops what only this machine has (checkpoint paths)."""
        d = asdict(self)
        if lean:
            d["records"] = [{k: v for k, v in r.items() if k != "checkpoint"} for r in self.records]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentResult":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def cost_note(result: ExperimentResult) -> str:
    """How long a result took: its runs' training time added up, and the command's wall time where
    that differs (finished runs reused from an earlier command, or work outside the runs: dreaming)."""
    train = sum(float(r.get("wall_time_s") or 0.0) for r in result.records)
    n = len(result.records)
    note = f"{n} run{'' if n == 1 else 's'}, {train / 60:.0f} min of training"
    if result.elapsed_s < 0.9 * train:
        note += f" (this command {result.elapsed_s / 60:.0f} min: it reused runs finished by an earlier one)"
    elif result.elapsed_s > 1.1 * train + 60:
        note += f", {result.elapsed_s / 60:.0f} min in all"
    return note


def results_dir() -> Path:
    """``$KDVIZ_RESULTS`` or the ``results/experiments/`` folder beside the package."""
    return Path(os.environ.get("KDVIZ_RESULTS") or Path(__file__).resolve().parent.parent / "results" / "experiments")


def result_path(name: str, folder: Path | None = None) -> Path:
    """The result file of ``name`` (a :func:`result_name`) in ``folder`` (default: :func:`results_dir`)."""
    return Path(folder or results_dir()) / f"{name}.json"


def save_result(result: ExperimentResult, path: Path | None = None) -> Path:
    """Write ``result`` (lean: no checkpoint paths) to ``path`` (default: its own result file), atomically."""
    path = Path(path or result_path(result.name))
    write_json_atomic(path, result.to_dict())
    return path


def load_result(name: str, folder: Path | None = None) -> ExperimentResult:
    """A shipped (or saved) result by experiment name; a missing or unreadable file is a clear error."""
    path = result_path(name, folder)
    if not path.is_file():
        raise FileNotFoundError(f"no result file for experiment {name!r} ({path})")
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object is needed, not {type(data).__name__}")
        return ExperimentResult.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a readable experiment result ({error})") from None


# --------------------------------------------------------------------------- summaries
def stats(values) -> dict:
    """Mean and sample standard deviation (0 for one value), with the values."""
    v = [float(x) for x in values]
    arr = np.array(v, dtype=float)
    return {"mean": float(arr.mean()) if len(v) else float("nan"),
            "std": float(arr.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v), "values": v}


def changes_from_first(table: list[dict], key: str = "acc") -> list[dict]:
    """Each row after the first against the first, seed by seed (the rows' ``values`` in the same
    seed order), in accuracy points: ``{"member", "mean", "std", "n", "values"}`` per row. Paired
    differences, because a seed's generations share its data order and initial weights."""
    first = table[0][key]["values"]
    return [{"member": row.get("member"), **stats(100 * (v - f) for v, f in zip(row[key]["values"], first))}
            for row in table[1:]]


def decode_images(encoded: dict) -> np.ndarray:
    """The uint8 array (N,C,H,W) that :func:`kdviz.experiments.encode_images` wrote."""
    return np.frombuffer(base64.b64decode(encoded["b64"]), dtype=np.uint8).reshape(encoded["shape"])
