"""The papers' dark-knowledge experiments, each a function from settings to a result.

Every experiment trains ordinary runs (:class:`kdviz.experiment.RunConfig`, saved as run
records that the Compare page lists too), measures what the paper measured, and returns an
:class:`ExperimentResult`: its run records, the summary numbers, and the small extras a
page draws (curves, image galleries). Each has two presets: ``quick`` (runs live on a
2-core CPU in under a minute) and ``full`` (the budget behind the result files shipped in
``results/experiments/``, read back by :func:`load_result`). The catalogue (names, titles, papers,
presets' names) and what reading a result needs are in :mod:`kdviz.experiment_results`, without torch
(the Experiments page draws a shipped result before torch's import); they are re-exported here.

- ``missing-class``: Hinton, Vinyals & Dean 2015, §3 — a student that never saw a 3.
- ``no-labels``: the student learns from the teacher's outputs only.
- ``temperature``: accuracy against T at α = 0.9, and the α × T grid.
- ``little-data``: accuracy against the fraction of the training set, labels vs KD.
- ``born-again``: Furlanello et al. 2018, generations of one architecture and their ensemble.
- ``data-free``: Yin et al. 2020, a student taught on images the teacher dreamed (no real training image).
- ``fast-optimisation``: Yim et al. 2017, a student initialised by FSP matching, then labels.

Runs go through :func:`run_configs`, which hands them to the one sweep runner
(:mod:`kdviz.sweep`): finished runs found in the runs directory are reused, so an
interrupted experiment resumes where it stopped.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import platform
import shutil
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdviz import data as datasets
from kdviz import dream, pretrained, sweep
from kdviz.data import ImageData
from kdviz.dream import DreamSettings
from kdviz.evaluation import predict_logits
from kdviz.experiment import RunConfig
from kdviz.experiment_results import (  # noqa: F401 - reading results and the catalogue (torch-free), under the names kdviz uses
    CATALOGUE,
    ExperimentInfo,
    ExperimentResult,
    changes_from_first,
    cost_note,
    decode_images,
    experiment_info,
    load_result,
    result_name,
    result_path,
    results_dir,
    save_result,
    shipped_presets,
    stats,
)
from kdviz.files import write_json_atomic
from kdviz.generations import MAX_GENERATIONS, born_again
from kdviz.methods import check_method
from kdviz.runs import default_runs_dir, load_checkpoint, run_checkpoint
from kdviz.teacher_cache import tensor_digest
from kdviz.train import PhaseStarted, StepDone, TrainSettings

# --------------------------------------------------------------------------- settings


MAX_SEEDS = 100  # seeds in one experiment: each is a full set of runs


@dataclass
class Budget:
    """What every experiment's students share: data, teacher, student, optimisation budget."""

    dataset: str = "mnist"
    teacher: str = "mnist-cnn"
    student: str = "mlp-800"
    epochs: int = 3
    lr: float = 0.1
    batch_size: int = 128
    seeds: tuple[int, ...] = (0,)
    fraction: float = 1.0
    precision: str = "auto"
    device: str = "auto"
    augment: bool = False        # random crop + flip of every training batch (CIFAR); the teacher then runs per batch

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if len(self.seeds) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seeds in one experiment, got {len(self.seeds):,}")
        if len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds must differ (a seed given twice trains the same runs twice), got {self.seeds}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        for seed in self.seeds:
            self.train(seed).validate()
        soft = {k: getattr(self, k) for k in ("T", "alpha") if hasattr(self, k)}
        if soft:  # Hinton's T and α, checked before any run or dreaming starts, not at the run that uses them
            check_method("kd", soft)

    def check_range(self, name: str, low, high) -> None:
        """One setting within [low, high] (a number, not NaN; a tuple: 1 to 100 values, each within)."""
        value = getattr(self, name)
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not 1 <= len(value) <= 100:
            raise ValueError(f"{name} needs 1 to 100 values, got {len(value):,}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {v!r}")

    def train(self, seed: int, epochs: int | None = None) -> TrainSettings:
        return TrainSettings(epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size, lr=self.lr,
                             seed=seed, precision=self.precision, device=self.device, augment=self.augment)


@dataclass
class MissingClassSettings(Budget):
    """Hinton et al. 2015 §3: every training image of class ``missing`` left out of the transfer set."""

    missing: int = 3
    T: float = 20.0
    alpha: float = 0.9
    holdout: int = 5000          # training images kept out of every transfer set: the bias is chosen on them
    bias_max: float = 10.0
    bias_step: float = 0.25
    gallery: int = 24

    def validate(self) -> None:
        super().validate()
        if self.holdout < 100:
            raise ValueError(f"holdout must be >= 100 images (the bias is chosen on them), got {self.holdout}")
        self.check_range("bias_max", 0.0, 1000.0)  # the bias curve is computed after every run has trained:
        self.check_range("gallery", 0, 1000)       # a grid too large to compute is refused now
        if not 0 < self.bias_step <= self.bias_max or self.bias_max / self.bias_step > 100_000:
            raise ValueError(f"bias_step must be in (0, bias_max] and at least bias_max / 100000, got {self.bias_step}")


@dataclass
class NoLabelsSettings(Budget):
    """The student sees the teacher's outputs on the training images, never a label."""

    T: float = 4.0


@dataclass
class TemperatureSettings(Budget):
    """Student accuracy over an α × T grid of Hinton KD (the α = 0.9 row is the T curve)."""

    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 20.0)
    alphas: tuple[float, ...] = (0.1, 0.5, 0.9, 1.0)
    curve_alpha: float = 0.9

    def validate(self) -> None:
        super().validate()
        if any(t <= 0 for t in self.temperatures) or not self.temperatures:
            raise ValueError("temperatures must be > 0")
        if any(not 0 <= a <= 1 for a in self.alphas) or not self.alphas:
            raise ValueError("alphas must be in [0, 1]")
        self.check_range("temperatures", 0.0, 1000.0)
        self.check_range("alphas", 0.0, 1.0)


@dataclass
class LittleDataSettings(Budget):
    """Labels only against KD as the transfer set shrinks. ``epochs`` is the budget at 100%;
    a fraction f trains ``min(max_epochs, epochs / f)`` epochs (about the same number of steps)."""

    fractions: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
    max_epochs: int = 30
    T: float = 4.0
    alpha: float = 0.9

    def validate(self) -> None:
        super().validate()
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError("fractions must be in (0, 1]")
        self.check_range("fractions", 0.0, 1.0)
        self.check_range("max_epochs", 1, 10_000)

    def epochs_for(self, fraction: float) -> int:
        return int(min(max(self.epochs, self.max_epochs), max(self.epochs, round(self.epochs / fraction))))


@dataclass
class BornAgainSettings(Budget):
    """Generation 0 on labels, then ``generations`` more, each taught by the last (BAN: α = 1, T = 1)."""

    generations: int = 3
    T: float = 1.0
    alpha: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.generations < 1:
            raise ValueError(f"generations must be >= 1, got {self.generations}")
        self.check_range("generations", 1, MAX_GENERATIONS)


@dataclass
class FastOptimisationSettings(Budget):
    """Yim et al. 2017 §4.1: FSP matching first (``fsp_epochs``), then labels, against labels from scratch."""

    student: str = "cnn5-small"
    fsp_epochs: int = 1
    weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.fsp_epochs < 1:
            raise ValueError(f"fsp_epochs must be >= 1, got {self.fsp_epochs}")
        self.check_range("fsp_epochs", 1, 10_000)


@dataclass
class DataFreeSettings(Budget):
    """Yin et al. 2020: ``per_class`` images per class dreamed from the teacher's batch-norm
    statistics (:mod:`kdviz.dream`), then a student distilled on them (α = 1: the teacher's soft
    targets only) and scored on the real test set. No real training image is read."""

    student: str = "cnn5-small"
    epochs: int = 20
    batch_size: int = 64
    per_class: int = 100
    dream_steps: int = 150
    dream_lr: float = 0.1
    bn_weight: float = 1.0
    tv_weight: float = 1e-3
    l2_weight: float = 1e-4
    jitter: int = 2
    dream_batch: int = 250
    T: float = 20.0
    gallery: int = 8

    def validate(self) -> None:
        super().validate()
        if self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        self.check_range("per_class", 1, 10_000)      # images dreamed per class
        self.check_range("dream_steps", 1, 100_000)
        self.check_range("dream_batch", 1, 4096)
        self.check_range("gallery", 0, 1000)
        self.dream().validate()

    def dream(self) -> DreamSettings:
        return DreamSettings(steps=self.dream_steps, lr=self.dream_lr, bn_weight=self.bn_weight,
                             tv_weight=self.tv_weight, l2_weight=self.l2_weight, jitter=self.jitter,
                             batch_size=self.dream_batch)


@dataclass
class DreamStep:
    """Progress of the dreaming (before any student trains)."""

    step: int
    steps: int
    losses: dict


# --------------------------------------------------------------------------- what a result records
def machine() -> str:
    """The CPU (model, bf16 instructions, cores) or GPU; every experiment's run trains with one torch thread."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.partition(":")[2].strip()
                elif line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
    except OSError:
        pass
    extras = [f for f in ("amx_bf16", "avx512_bf16") if f in flags] or (["avx2"] if "avx2" in flags else [])
    return f"{name} ({', '.join(extras) or 'no bf16'}); {os.cpu_count()} cores visible, 1 torch thread per run"


def encode_images(pixels: torch.Tensor) -> dict:
    """uint8 images (N,C,H,W) as base64 text, small enough for a JSON result file."""
    array = pixels.to(torch.uint8).contiguous().numpy()
    return {"shape": list(array.shape), "b64": base64.b64encode(array.tobytes()).decode()}


# --------------------------------------------------------------------------- running the runs
@dataclass
class RunEvent:
    """Progress of run ``index`` (0-based) of ``total``: a training event, or ``event=None`` with
    ``reused`` set when a finished record was found and the run skipped."""

    index: int
    total: int
    label: str
    event: object = None
    reused: bool = False


def run_label(config: RunConfig) -> str:
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.params.items())
    extra = [f"{100 * config.fraction:g}% data"] if config.fraction < 1 else []
    extra += [f"no {','.join(map(str, config.omit_classes))}"] if config.omit_classes else []
    extra += ["labels hidden"] if config.hide_labels else []
    extra += [f"seed {config.train.seed}"]
    return f"{config.method}" + (f" ({params})" if params else "") + f" · {config.student} · {', '.join(extra)}"


def run_configs(configs: list[RunConfig], runs_dir: Path | None = None,
                on_event: Callable[[RunEvent], None] | None = None,
                stop: threading.Event | None = None, check: bool = True) -> list[dict]:
    """Run each config through the one sweep runner (:func:`kdviz.sweep.run_sweep`, in this
    process, one torch thread per run) and return their records in order. A config whose
    finished record is already in ``runs_dir`` is not trained again (``on_event`` hears it as
    ``reused``); a failed run ends the experiment with its message, a ``stop`` with
    :class:`InterruptedError`."""
    runs_dir = Path(runs_dir or default_runs_dir())
    keys = [sweep.run_key(c) for c in configs]
    labels = {k: run_label(c) for k, c in zip(keys, configs)}
    order = list(dict.fromkeys(keys))  # the sweep runs each distinct config once, in this order
    done: dict[str, dict] = {}
    for event in sweep.run_sweep(configs, sweep.LocalExecutor(), runs_dir, stop=stop, check=check):
        if isinstance(event, sweep.RunFailed):
            raise ValueError(f"run {event.index + 1} of {len(order)} ({labels[event.key]}) failed: {event.error}")
        if isinstance(event, sweep.RunFinished):
            done[event.key] = event.record
            if event.skipped and on_event:
                on_event(RunEvent(event.index, len(order), labels[event.key], None, reused=True))
        elif isinstance(event, sweep.RunProgress) and on_event:
            on_event(RunEvent(event.index, len(order), labels[event.key], event.event))
    if any(k not in done or done[k].get("stopped") for k in keys):
        raise InterruptedError("experiment stopped before all its runs finished")
    return [done[k] for k in keys]


def _checkpoint(record: dict, runs_dir: Path):
    return load_checkpoint(record.get("checkpoint") or run_checkpoint(record["id"], runs_dir))


def _acc(record: dict) -> float:
    return float(record["test_acc"])


# --------------------------------------------------------------------------- 1. missing class
def bias_curve(logits: torch.Tensor, labels: torch.Tensor, cls: int, biases) -> dict:
    """Hinton et al. 2015 §3: add b to the output bias (= the logit) of class ``cls`` and classify
    again. For each b: accuracy on the images of ``cls`` and on all images. A student that never
    saw ``cls`` learned its shape from soft targets, but its bias for it stays too low."""
    biases = torch.as_tensor(list(biases), dtype=torch.float32)
    shifted = logits.float().unsqueeze(0).repeat(len(biases), 1, 1)
    shifted[:, :, cls] += biases.view(-1, 1)
    correct = shifted.argmax(2) == labels.view(1, -1)
    is_cls = labels == cls
    return {"bias": biases.tolist(), "class_acc": correct[:, is_cls].float().mean(1).tolist(),
            "overall_acc": correct.float().mean(1).tolist()}


def best_bias(curve: dict) -> float:
    """The bias with the highest overall accuracy (the smallest such bias on ties)."""
    return curve["bias"][int(np.argmax(curve["overall_acc"]))]


def missing_class(s: MissingClassSettings, runs_dir: Path | None = None,
                  on_event: Callable[[RunEvent], None] | None = None, stop: threading.Event | None = None) -> ExperimentResult:
    """Labels only, KD at T, and KD + bias correction, on a transfer set without class ``missing``.

    The bias is chosen on ``holdout`` training images that no student trained on (never the test
    set); the test set only scores it."""
    s.validate()
    splits = datasets.load(s.dataset)
    if not 0 <= s.missing < splits.train.num_classes:
        raise ValueError(f"missing class must be in 0..{splits.train.num_classes - 1}, got {s.missing}")
    common = dict(dataset=s.dataset, student=s.student, fraction=s.fraction, omit_classes=(s.missing,), holdout=s.holdout)
    configs = []
    for seed in s.seeds:
        configs.append(RunConfig(method="baseline", train=s.train(seed), save_model=False, **common))
        configs.append(RunConfig(method="kd", params={"T": s.T, "alpha": s.alpha}, teacher=s.teacher,
                                 train=s.train(seed), **common))
    records = run_configs(configs, runs_dir, on_event, stop)
    runs_dir = Path(runs_dir or default_runs_dir())
    validation = datasets.holdout_split(splits.train, s.holdout)[1]
    test = splits.test
    is_missing = test.labels == s.missing
    biases = np.round(np.arange(0.0, s.bias_max + s.bias_step / 2, s.bias_step), 6).tolist()
    rows = {"labels only": [], "KD": [], "KD + bias": []}
    per_seed, gallery = [], {}
    for base, kd in zip(records[0::2], records[1::2]):
        student = _checkpoint(kd, runs_dir)
        val_logits = predict_logits(student, validation, device=s.device)
        test_logits = predict_logits(student, test, device=s.device)
        val_curve = bias_curve(val_logits, validation.labels, s.missing, biases)
        test_curve = bias_curve(test_logits, test.labels, s.missing, biases)
        b = best_bias(val_curve)
        j = biases.index(b)
        base_conf = np.array(base["confusion"])
        base_missing = base_conf[s.missing, s.missing] / max(base_conf[s.missing].sum(), 1)
        rows["labels only"].append((base_missing, _acc(base)))
        rows["KD"].append((test_curve["class_acc"][0], test_curve["overall_acc"][0]))
        rows["KD + bias"].append((test_curve["class_acc"][j], test_curve["overall_acc"][j]))
        per_seed.append({"seed": kd["seed"], "bias": b, "validation_curve": val_curve, "test_curve": test_curve,
                         "kd_id": kd["id"], "baseline_id": base["id"]})
        if not gallery:
            right = is_missing & (test_logits.argmax(1) == s.missing)
            index = torch.nonzero(right).flatten()[: s.gallery]
            prob = torch.softmax(test_logits[index], 1)[:, s.missing]
            gallery = {"images": encode_images(test.pixels[index]), "test_index": index.tolist(),
                       "probability": prob.tolist(), "right": int(right.sum()), "of": int(is_missing.sum()),
                       "seed": kd["seed"]}
    table = [{"student": name, "missing_acc": stats([m for m, _ in v]), "overall_acc": stats([o for _, o in v])}
             for name, v in rows.items()]
    summary = {
        "missing": s.missing, "missing_name": test.classes[s.missing], "missing_test_images": int(is_missing.sum()),
        "validation_images": len(validation), "bias": stats([p["bias"] for p in per_seed]),
        "table": table,
        "paper": {"source": "Hinton, Vinyals & Dean 2015, §3 (MNIST, no 3s in the transfer set, T = 20)",
                  "kd_missing_acc": 1 - 133 / 1010, "kd_bias_missing_acc": 0.986, "bias": 3.5,
                  "note": "206 test errors, 133 of them on the 1010 test 3s; raising the 3's bias by 3.5: "
                          "109 errors, 14 on 3s (98.6% of 3s right)"},
    }
    return ExperimentResult("missing-class", None, _settings_dict(s), summary, records,
                            {"per_seed": per_seed, "gallery": gallery})


# --------------------------------------------------------------------------- 2. no labels
def no_labels(s: NoLabelsSettings, runs_dir: Path | None = None,
              on_event: Callable[[RunEvent], None] | None = None, stop: threading.Event | None = None) -> ExperimentResult:
    """A student trained on the teacher's soft targets only (α = 1, labels hidden), beside one on labels."""
    s.validate()
    datasets.load(s.dataset)
    configs = []
    for seed in s.seeds:
        configs.append(RunConfig(dataset=s.dataset, student=s.student, method="baseline", fraction=s.fraction,
                                 train=s.train(seed), save_model=False))
        configs.append(RunConfig(dataset=s.dataset, student=s.student, method="kd", params={"T": s.T, "alpha": 1.0},
                                 teacher=s.teacher, fraction=s.fraction, hide_labels=True, train=s.train(seed),
                                 save_model=False))
    records = run_configs(configs, runs_dir, on_event, stop)
    table = [{"student": "labels only", "acc": stats(_acc(r) for r in records[0::2])},
             {"student": f"teacher only (KD T={s.T:g}, no labels)", "acc": stats(_acc(r) for r in records[1::2])}]
    summary = {"table": table, "no_labels_acc": table[1]["acc"], "labels_acc": table[0]["acc"],
               "paper": {"source": "the seeds' dark-knowledge poster (MLP-800 student on MNIST, no labels)",
                         "acc_lr_0.01": 0.9769, "acc_lr_0.1": 0.9816}}
    return ExperimentResult("no-labels", None, _settings_dict(s), summary, records, {})


# --------------------------------------------------------------------------- 3. temperature
def temperature(s: TemperatureSettings, runs_dir: Path | None = None,
                on_event: Callable[[RunEvent], None] | None = None, stop: threading.Event | None = None) -> ExperimentResult:
    """KD over α × T (the poster's "impact of distilling temperature"), with a labels-only reference."""
    s.validate()
    datasets.load(s.dataset)
    alphas = sorted(set(s.alphas) | {s.curve_alpha})
    configs = []
    for seed in s.seeds:
        configs.append(RunConfig(dataset=s.dataset, student=s.student, method="baseline", fraction=s.fraction,
                                 train=s.train(seed), save_model=False))
        for a in alphas:
            for t in s.temperatures:
                configs.append(RunConfig(dataset=s.dataset, student=s.student, method="kd",
                                         params={"T": float(t), "alpha": float(a)}, teacher=s.teacher,
                                         fraction=s.fraction, train=s.train(seed), save_model=False))
    records = run_configs(configs, runs_dir, on_event, stop)
    cells: dict[tuple[float, float], list[float]] = {}
    baseline = []
    for r in records:
        if r["method"] == "baseline":
            baseline.append(_acc(r))
        else:
            cells.setdefault((float(r["method_params"]["alpha"]), float(r["method_params"]["T"])), []).append(_acc(r))
    temps = [float(t) for t in s.temperatures]
    grid = [[stats(cells[(a, t)])["mean"] for t in temps] for a in alphas]
    grid_std = [[stats(cells[(a, t)])["std"] for t in temps] for a in alphas]
    curve = [stats(cells[(s.curve_alpha, t)]) for t in temps]
    best = max(((a, t) for a in alphas for t in temps), key=lambda k: stats(cells[k])["mean"])
    worst = min(((a, t) for a in alphas for t in temps), key=lambda k: stats(cells[k])["mean"])
    summary = {
        "alphas": alphas, "temperatures": temps, "grid_acc": grid, "grid_std": grid_std,
        "curve_alpha": s.curve_alpha, "curve": curve, "baseline_acc": stats(baseline),
        "best": {"alpha": best[0], "T": best[1], "acc": stats(cells[best])["mean"]},
        "worst": {"alpha": worst[0], "T": worst[1], "acc": stats(cells[worst])["mean"]},
        "table": [{"T": t, "acc": c} for t, c in zip(temps, curve)],
        "paper": {"source": "the seeds' dark-knowledge poster, \"impact of distilling temperature\""},
    }
    return ExperimentResult("temperature", None, _settings_dict(s), summary, records, {})


# --------------------------------------------------------------------------- 4. little data
def little_data(s: LittleDataSettings, runs_dir: Path | None = None,
                on_event: Callable[[RunEvent], None] | None = None, stop: threading.Event | None = None) -> ExperimentResult:
    """Labels only and KD on a shrinking random part of the training set (same-sized budgets in steps)."""
    s.validate()
    datasets.load(s.dataset)
    fractions = sorted({float(f) for f in s.fractions})
    configs = []
    for seed in s.seeds:
        for f in fractions:
            settings = s.train(seed, s.epochs_for(f))
            configs.append(RunConfig(dataset=s.dataset, student=s.student, method="baseline", fraction=f,
                                     train=settings, save_model=False))
            configs.append(RunConfig(dataset=s.dataset, student=s.student, method="kd",
                                     params={"T": s.T, "alpha": s.alpha}, teacher=s.teacher, fraction=f,
                                     train=settings, save_model=False))
    records = run_configs(configs, runs_dir, on_event, stop)
    by = {(r["method"], float(r["config"]["fraction"])): [] for r in records}
    for r in records:
        by[(r["method"], float(r["config"]["fraction"]))].append(_acc(r))
    table = [{"fraction": f, "images": next(r["dataset"]["transfer_size"] for r in records
                                            if float(r["config"]["fraction"]) == f),
              "epochs": s.epochs_for(f), "labels_only": stats(by[("baseline", f)]), "kd": stats(by[("kd", f)])}
             for f in fractions]
    summary = {"dataset": s.dataset, "table": table,
               "paper": {"source": "the seeds' dark-knowledge poster: CIFAR-10 at 5% of the data, 5-layer CNN",
                         "labels_only_5pct": 0.6586, "kd_5pct": 0.6671}}
    return ExperimentResult("little-data", None, _settings_dict(s), summary, records, {})


# --------------------------------------------------------------------------- 5. born-again
def born_again_generations(s: BornAgainSettings, runs_dir: Path | None = None,
                           on_event: Callable[[RunEvent], None] | None = None,
                           stop: threading.Event | None = None) -> ExperimentResult:
    """Furlanello et al. 2018: generation k+1 (same architecture) learns from generation k; the
    ensemble averages every generation's softmax. Mean ± std over seeds."""
    s.validate()
    datasets.load(s.dataset)
    records, per_seed = [], []
    total = len(s.seeds) * (s.generations + 1)
    for n, seed in enumerate(s.seeds):
        config = RunConfig(dataset=s.dataset, student=s.student, method="ban", params={"T": s.T, "alpha": s.alpha},
                           fraction=s.fraction, train=s.train(seed))

        def forward(k, event, n=n, seed=seed):
            if on_event:
                on_event(RunEvent(n * (s.generations + 1) + k, total, f"generation {k} · {s.student} · seed {seed}",
                                  event))

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread per run, as the sweep runner trains the other experiments
        try:
            generation_records = born_again(config, s.generations, runs_dir, on_event=forward)
        finally:
            torch.set_num_threads(threads)
        records.extend(generation_records)
        last = generation_records[-1]
        per_seed.append({"seed": seed, "generation_accs": last["generation_accs"], "ensemble_acc": last["ensemble_acc"]})
    generations = [stats(p["generation_accs"][k] for p in per_seed) for k in range(s.generations + 1)]
    ensemble = stats(p["ensemble_acc"] for p in per_seed)
    table = [{"member": f"generation {k}" + (" (labels)" if k == 0 else ""), "acc": g} for k, g in enumerate(generations)]
    table.append({"member": f"ensemble of {s.generations + 1}", "acc": ensemble})
    summary = {"generations": generations, "ensemble": ensemble, "table": table,
               "paper": {"source": "Furlanello et al. 2018 (CIFAR-10/100; BAN students beat their teachers, "
                                   "the ensemble more)"}}
    return ExperimentResult("born-again", None, _settings_dict(s), summary, records, {"per_seed": per_seed})


# --------------------------------------------------------------------------- 6. data-free
def _class_folder(classes, c: int) -> str:
    return f"{c:02d}-{classes[c].replace('/', '_')}"  # sorts in class order


def write_image_split(folder: Path, pixels: torch.Tensor, labels: torch.Tensor, classes) -> Path:
    """uint8 images as PNG files in ``folder/<class>/`` (ImageFolder layout), written under a
    temporary name and renamed: the folder is complete or absent."""
    from PIL import Image  # late: only a data-free run writes images

    folder = Path(folder)
    partial = folder.with_name(folder.name + f".partial{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for c in range(len(classes)):
        (partial / _class_folder(classes, c)).mkdir(parents=True, exist_ok=True)
    for i, (image, y) in enumerate(zip(pixels, labels.tolist())):
        array = image.numpy()
        picture = Image.fromarray(array[0]) if array.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
        picture.save(partial / _class_folder(classes, y) / f"{i:05d}.png", compress_level=1)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def write_dreamed_folder(folder: Path, dreamed: torch.Tensor, labels: torch.Tensor, test: ImageData) -> Path:
    """A data set :func:`kdviz.data.load` reads: ``train/`` the dreamed images, ``test/`` the real
    test split (written once per test set beside it and linked), ``normalisation.json`` the
    teacher's mean/std (the dreamed images must be normalised as the teacher's data was)."""
    folder = Path(folder)
    shared = folder.parent / f"test-{Path(test.name).name}-{tensor_digest([test.pixels, test.labels])[:12]}"
    if not shared.is_dir():
        write_image_split(shared, test.pixels, test.labels, test.classes)
    partial = folder.with_name(folder.name + f".partial{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    write_image_split(partial / "train", dreamed, labels, test.classes)
    (partial / "test").symlink_to(shared.resolve(), target_is_directory=True)
    (partial / datasets.NORMALISATION).write_text(json.dumps({"mean": list(test.mean), "std": list(test.std)}))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


DREAM_LOG = "dream.json"  # beside the dreamed images: how long dreaming them took, for a later command that reuses them


def data_free(s: DataFreeSettings, runs_dir: Path | None = None,
              on_event: Callable[[RunEvent], None] | None = None, stop: threading.Event | None = None) -> ExperimentResult:
    """A student distilled on images the teacher dreamed (Yin et al. 2020), scored on the real test
    set. Only the teacher, its card (data set, mean/std) and the test split are read; the dreamed
    set is kept under ``<runs dir>/dreams/`` and reused by a later call with the same settings."""
    s.validate()
    if s.teacher not in pretrained.names():
        raise ValueError(f"data-free needs a shipped teacher (its card names its data and normalisation); "
                         f"{s.teacher!r} is not one of {', '.join(pretrained.names())}")
    card = pretrained.card(s.teacher)
    if card["dataset"] != s.dataset:
        raise ValueError(f"teacher {s.teacher!r} was trained on {card['dataset']}, not {s.dataset}")
    teacher = pretrained.load(s.teacher)
    test = datasets.load_test(s.dataset, card["mean"], card["std"])
    runs_dir = Path(runs_dir or default_runs_dir())
    key = hashlib.sha256(json.dumps([card["sha256"], asdict(s.dream()), s.per_class, s.seeds[0]]).encode()).hexdigest()
    folder = (runs_dir / "dreams" / f"{s.teacher}-{key[:12]}").resolve()
    total_runs = len(s.seeds) + 1
    labels = dream.balanced_labels(test.num_classes, s.per_class)
    started = time.time()
    if not (folder / datasets.NORMALISATION).is_file():
        def step(k, steps, losses):
            if stop is not None and stop.is_set():
                raise InterruptedError("experiment stopped while dreaming")
            if on_event:
                on_event(RunEvent(0, total_runs, f"dreaming {len(labels)} images from {s.teacher}",
                                  DreamStep(k, steps, losses)))

        torch.manual_seed(s.seeds[0])
        pixels = dream.dream(teacher, labels, card["mean"], card["std"], test.shape, s.dream(), s.seeds[0], step)
        write_dreamed_folder(folder, pixels, labels, test)
        dream_s, reused = round(time.time() - started, 1), False
        write_json_atomic(folder / DREAM_LOG, {"seconds": dream_s, "images": len(labels), "machine": machine()})
    else:
        if on_event:
            on_event(RunEvent(0, total_runs, f"dreamed images from {s.teacher}", None, reused=True))
        try:  # how long the command that dreamed them took (None where it kept no log)
            dream_s, reused = float(json.loads((folder / DREAM_LOG).read_text())["seconds"]), True
        except (OSError, ValueError, KeyError, TypeError):
            dream_s, reused = None, True
    dreamed = datasets.load(str(folder)).train
    with torch.no_grad():
        teacher_says = predict_logits(teacher, dreamed, device=s.device).argmax(1)
    configs = [RunConfig(dataset=str(folder), student=s.student, method="kd", params={"T": s.T, "alpha": 1.0},
                         teacher=s.teacher, hide_labels=True, train=s.train(seed), save_model=False)
               for seed in s.seeds]
    shifted = None if on_event is None else (
        lambda e: on_event(RunEvent(e.index + 1, total_runs, e.label, e.event, e.reused)))
    records = run_configs(configs, runs_dir, shifted, stop)
    acc = stats(_acc(r) for r in records)
    gallery = {"dreamed": [], "real": [], "classes": list(test.classes)}
    for c in range(test.num_classes):
        gallery["dreamed"].append(encode_images(dreamed.pixels[dreamed.labels == c][: s.gallery]))
        gallery["real"].append(encode_images(test.pixels[test.labels == c][: s.gallery]))
    reference, reference_student = None, ""
    try:
        shipped = load_result("no-labels")
        reference, reference_student = shipped.summary["labels_acc"], shipped.settings["student"]
    except (FileNotFoundError, ValueError, KeyError):
        pass
    summary = {
        "student_acc": acc, "dreamed_images": len(dreamed), "dream_seconds": dream_s, "dreams_reused": reused,
        "teacher_agrees_on_dreams": float((teacher_says == dreamed.labels).float().mean()),
        "labels_only_real_data": reference,
        "table": [{"student": f"{s.student} on {len(dreamed)} dreamed images (KD T={s.T:g}, no labels)", "acc": acc}]
        + ([{"student": f"{reference_student} on the real labelled images (no-labels experiment)", "acc": reference}]
           if reference else []),
        "method": "batch-norm statistics (Yin et al. 2020, DeepInversion): the shipped teacher has batch norm, so "
                  "its running means and variances stand in for the data; nothing had to be recorded at training "
                  "time (Lopes et al. 2017 record activation statistics instead)",
        "paper": {"source": "Yin et al. 2020 (ImageNet); on MNIST, data-free KD papers report about 98% "
                            "(Chen et al. 2019 DAFL: 98.2% LeNet-5 student)"},
    }
    return ExperimentResult("data-free", None, _settings_dict(s), summary, records, {"gallery": gallery})


# --------------------------------------------------------------------------- 7. fast optimisation
def fast_optimisation(s: FastOptimisationSettings, runs_dir: Path | None = None,
                      on_event: Callable[[RunEvent], None] | None = None,
                      stop: threading.Event | None = None) -> ExperimentResult:
    """Yim et al. 2017: FSP matching initialises the student, then labels; against labels from scratch.
    Test accuracy after each label epoch (and at each second of training, the FSP stage included).

    A learning-rate schedule spans the whole run, so accuracy midway through a long run is not what a
    run of that length would reach. The paper's claim (the FSP student trained for a third of the
    iterations matches the scratch student trained for all of them) is therefore also tested as the
    paper did: both students again with their own schedule of ``epochs / 3`` label epochs."""
    s.validate()
    datasets.load(s.dataset)
    short = max(1, round(s.epochs / 3))

    def pair(seed, epochs):
        return [RunConfig(dataset=s.dataset, student=s.student, method="baseline", fraction=s.fraction,
                          train=s.train(seed, epochs), save_model=False),
                RunConfig(dataset=s.dataset, student=s.student, method="fsp", teacher=s.teacher,
                          params={"stages": 2, "fsp_epochs": s.fsp_epochs, "weight": s.weight},
                          fraction=s.fraction, train=s.train(seed, epochs), save_model=False)]

    configs = [c for seed in s.seeds for c in pair(seed, s.epochs)]
    configs += [c for seed in s.seeds for c in pair(seed, short)]
    every = run_configs(configs, runs_dir, on_event, stop)
    n = 2 * len(s.seeds)
    records, third = every[:n], every[n:]

    def curves(runs):
        mains = [[h for h in r["history"] if h["phase"] == "train"] for r in runs]
        epochs = min(len(m) for m in mains)
        return {"epoch": list(range(1, epochs + 1)),
                "acc": [stats(m[e]["test_acc"] for m in mains)["mean"] for e in range(epochs)],
                "acc_std": [stats(m[e]["test_acc"] for m in mains)["std"] for e in range(epochs)],
                "seconds": [stats(m[e]["elapsed"] for m in mains)["mean"] for e in range(epochs)]}

    scratch, fsp = curves(records[0::2]), curves(records[1::2])
    target = scratch["acc"][-1]
    reach = lambda c: next((e for e, a in zip(c["epoch"], c["acc"]) if a >= target), None)  # noqa: E731
    fsp_phase_s = stats(next((h["elapsed"] for h in r["history"] if h["phase"] == "fsp" and h["epoch"] == s.fsp_epochs), 0.0)
                        for r in records[1::2])
    short_runs = {"epochs": short, "scratch": stats(_acc(r) for r in third[0::2]), "fsp": stats(_acc(r) for r in third[1::2]),
                  "seconds": {"scratch": stats(r["history"][-1]["elapsed"] for r in third[0::2]),
                              "fsp": stats(r["history"][-1]["elapsed"] for r in third[1::2])}}
    short_runs["fsp_matches_full_scratch"] = short_runs["fsp"]["mean"] >= target
    summary = {"scratch": scratch, "fsp": fsp, "target_acc": target,
               "epochs_to_target": {"scratch": reach(scratch), "fsp": reach(fsp)}, "fsp_phase_s": fsp_phase_s,
               "third": short_runs,
               "table": [{"student": "labels from scratch", "label epochs": s.epochs,
                          "acc": stats(_acc(r) for r in records[0::2]), "epochs_to_target": reach(scratch)},
                         {"student": f"FSP stage ({s.fsp_epochs} epoch) then labels", "label epochs": s.epochs,
                          "acc": stats(_acc(r) for r in records[1::2]), "epochs_to_target": reach(fsp)},
                         {"student": "labels from scratch, a third of the budget", "label epochs": short,
                          "acc": short_runs["scratch"], "epochs_to_target": "–"},
                         {"student": f"FSP stage ({s.fsp_epochs} epoch) then labels, a third of the budget",
                          "label epochs": short, "acc": short_runs["fsp"], "epochs_to_target": "–"}],
               "paper": {"source": "Yim, Joo, Bae & Kim 2017, §4.1 (CIFAR-10, ResNet): the FSP-initialised "
                                   "student trained for a third of the iterations reaches the accuracy of the "
                                   "scratch student trained for all of them"}}
    return ExperimentResult("fast-optimisation", None, _settings_dict(s), summary, every, {})


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class ExperimentSpec:
    """A catalogue entry (:data:`kdviz.experiment_results.CATALOGUE`) with its run function and its presets' settings."""

    name: str
    title: str
    paper: str
    run: Callable
    presets: dict


def _settings_dict(s) -> dict:
    return asdict(s)


def _spec(name: str, run_fn: Callable, presets: dict) -> ExperimentSpec:
    """The catalogue's experiment ``name`` (its title and paper) with ``run_fn`` and ``presets``, whose
    names must be the catalogue's, in its order (the page lists the shipped ones without this module)."""
    info = CATALOGUE[name]
    if tuple(presets) != info.presets:
        raise ValueError(f"experiment {name!r}: presets {list(presets)} are not the catalogue's {list(info.presets)}")
    return ExperimentSpec(name, info.title, info.paper, run_fn, presets)


_RUNS: dict[str, tuple[Callable, dict]] = {  # each experiment's run function and presets' settings
    "missing-class": (missing_class, {
        "quick": MissingClassSettings(epochs=2, fraction=0.2, holdout=2000),
        "full": MissingClassSettings(epochs=8, seeds=(0, 1, 2))}),
    "no-labels": (no_labels, {
        "quick": NoLabelsSettings(epochs=2, fraction=0.2),
        "full": NoLabelsSettings(epochs=5, seeds=(0, 1, 2))}),
    "temperature": (temperature, {
        "quick": TemperatureSettings(epochs=2, fraction=0.02, temperatures=(1.0, 4.0, 20.0), alphas=(0.5, 1.0)),
        "full": TemperatureSettings(epochs=6, fraction=0.05, seeds=(0, 1, 2))}),
    "little-data": (little_data, {
        "quick": LittleDataSettings(epochs=1, max_epochs=4, fractions=(0.01, 0.05, 0.25)),
        "full": LittleDataSettings(epochs=5),
        # CIFAR-10 (the poster's 5% point) on one CPU core: 2 epochs at 100%, at most 15 at the small
        # fractions (the poster trained longer); random crop + flip, so the teacher runs on every batch.
        "full-cifar10": LittleDataSettings(dataset="cifar10", teacher="cifar10-resnet20", student="cnn5", epochs=2,
                                           max_epochs=15, augment=True)}),
    "born-again": (born_again_generations, {
        "quick": BornAgainSettings(epochs=2, fraction=0.05, generations=2),
        # 20 epochs a generation: generation 0 near convergence on its 6,000 images, as the paper's teachers were
        "full": BornAgainSettings(epochs=20, fraction=0.1, seeds=(0, 1, 2))}),
    "data-free": (data_free, {
        "quick": DataFreeSettings(per_class=10, dream_steps=40, dream_batch=100, epochs=10, batch_size=32),
        "full": DataFreeSettings(per_class=100, dream_steps=100, seeds=(0, 1, 2))}),
    "fast-optimisation": (fast_optimisation, {
        "quick": FastOptimisationSettings(epochs=2, fraction=0.02),
        "full": FastOptimisationSettings(epochs=6, fraction=0.1, seeds=(0, 1, 2))}),
}
EXPERIMENTS: dict[str, ExperimentSpec] = {name: _spec(name, *_RUNS[name]) for name in CATALOGUE}


def experiment_names() -> list[str]:
    return list(EXPERIMENTS)


def spec(name: str) -> ExperimentSpec:
    """The registry's entry for ``name``; an unknown name is a clear error."""
    return EXPERIMENTS[experiment_info(name).name]


def _cast(raw: str, default):
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ValueError(raw)
    if isinstance(default, tuple):
        kind = type(default[0]) if default else float
        return tuple(kind(v) for v in raw.replace(",", " ").split())
    return type(default)(raw)


def settings_for(name: str, preset: str = "quick", overrides: dict | None = None):
    """A preset's settings, with ``overrides`` (field name -> value or text) applied and checked."""
    entry = spec(name)
    if preset not in entry.presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(entry.presets)}")
    settings = entry.presets[preset]
    known = {f.name: getattr(settings, f.name) for f in fields(settings)}
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"experiment {name!r} has no setting {key!r}; it has: {', '.join(known)}")
        try:
            changes[key] = _cast(value, known[key]) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(f"setting {key} needs a value like {known[key]!r}, got {value!r}") from None
        if isinstance(changes[key], float) and not math.isfinite(changes[key]):
            raise ValueError(f"setting {key} must be finite, got {value!r}")
    settings = replace(settings, **changes)
    settings.validate()
    return settings


def run(name: str, preset: str = "quick", overrides: dict | None = None, runs_dir: Path | None = None,
        on_event: Callable[[RunEvent], None] | None = None, stop: threading.Event | None = None,
        command: str | None = None) -> ExperimentResult:
    """Run experiment ``name`` at ``preset`` (with ``overrides``); the result knows how it was made."""
    settings = settings_for(name, preset, overrides)
    started = time.time()
    result = spec(name).run(settings, runs_dir=runs_dir, on_event=on_event, stop=stop)
    result.preset = preset
    result.elapsed_s = round(time.time() - started, 1)
    result.date = time.strftime("%Y-%m-%dT%H:%M:%S")
    result.machine = machine()
    result.command = command or " ".join(["kdviz experiment", name, "--preset", preset,
                                          *(f"--set {k}={v}" for k, v in (overrides or {}).items())])
    return result


class LiveExperiment:
    """One experiment in a worker thread (for the app): :meth:`snapshot` reads its progress under a
    lock (state, run i of n, the current run's steps, elapsed seconds, the result or the error);
    :meth:`stop` ends it between two training steps. The worker makes no UI calls."""

    def __init__(self, name: str, preset: str = "quick", overrides: dict | None = None, runs_dir: Path | None = None):
        settings_for(name, preset, overrides)  # bad settings fail here, not in the thread
        self.name, self.preset, self.overrides, self.runs_dir = name, preset, dict(overrides or {}), runs_dir
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress = {"state": "queued", "run": 0, "runs": 0, "label": "", "step": 0, "steps": 0,
                          "reused": 0, "elapsed": 0.0, "result": None, "error": None, "queue_position": 0}
        self._started = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> "LiveExperiment":
        if self._thread is None:
            self._started = time.time()
            self._thread = threading.Thread(target=self._work, name=f"kdviz-experiment-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return self.snapshot()["state"] in ("finished", "stopped", "failed")

    def snapshot(self) -> dict:
        with self._lock:
            data = dict(self._progress)
        if data["state"] in ("starting", "running"):
            data["elapsed"] = time.time() - self._started
        return data

    def _set(self, **values) -> None:
        with self._lock:
            self._progress.update(values)

    def _on_event(self, progress: RunEvent) -> None:
        update = {"state": "running", "run": progress.index + 1, "runs": progress.total, "label": progress.label}
        if progress.reused:
            with self._lock:
                self._progress["reused"] += 1
        elif isinstance(progress.event, PhaseStarted):
            update.update(step=0, steps=progress.event.epochs * progress.event.steps_per_epoch)
        elif isinstance(progress.event, StepDone):
            with self._lock:
                update["step"] = self._progress["step"] + 1
        elif isinstance(progress.event, DreamStep):
            update.update(step=progress.event.step, steps=progress.event.steps)
        self._set(**update)

    def _work(self) -> None:
        slots = sweep.server_slots()  # an app job like any other: at most $KDVIZ_MAX_JOBS at once on the server
        while not slots.try_acquire(self):
            if self._stop.is_set():
                slots.release(self)
                self._set(state="stopped", queue_position=0)
                return
            self._set(state="queued", queue_position=slots.position(self))
            time.sleep(0.1)
        self._set(state="starting", queue_position=0)
        try:
            result = run(self.name, self.preset, self.overrides, self.runs_dir, self._on_event, self._stop)
            self._set(state="finished", result=result, elapsed=time.time() - self._started)
        except InterruptedError:
            self._set(state="stopped", elapsed=time.time() - self._started)
        except Exception as error:  # noqa: BLE001 - the reader shows the message; nothing may escape a thread
            self._set(state="failed", error=f"{type(error).__name__}: {error}", elapsed=time.time() - self._started)
        finally:
            slots.release(self)


__all__ = ["EXPERIMENTS", "ExperimentResult", "LiveExperiment", "RunEvent", "bias_curve", "best_bias", "decode_images",
           "cost_note", "encode_images", "experiment_names", "load_result", "machine", "result_name", "run", "run_configs",
           "save_result", "settings_for", "shipped_presets", "stats"]
