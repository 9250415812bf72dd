"""A training run from a plain config: data, teacher, student, method, loop, record.

``Experiment(RunConfig(...)).events()`` is what the CLI, the app's worker thread
and the benchmarks iterate; when it finishes, ``experiment.record`` holds the
run record, already saved (with the student's checkpoint) under the runs
directory.
"""
from __future__ import annotations

import numbers
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from kdviz import data as datasets
from kdviz.evaluation import predict_logits, resolve_device, resolve_precision
from kdviz.methods import build_method, check_method
from kdviz.models import ALIASES, MODELS, build_model, model_summary
from kdviz.runs import check_writable, default_runs_dir, new_run_id, save_run, versions
from kdviz.teacher_cache import teacher_logits
from kdviz.teachers import TeacherRef
from kdviz.teachers import resolve as resolve_teacher
from kdviz.train import Finished, TrainSettings, fit


@dataclass
class RunConfig:
    dataset: str
    student: str
    method: str = "baseline"
    params: dict = field(default_factory=dict)
    teacher: str | None = None          # pretrained name, run id, or checkpoint path (kdviz.teachers.TeacherRef)
    train: TrainSettings = field(default_factory=TrainSettings)
    fraction: float = 1.0               # transfer set: part of the training data used
    omit_classes: tuple[int, ...] = ()  # transfer set: classes left out
    hide_labels: bool = False           # transfer set: the student sees the teacher only
    holdout: int = 0                    # transfer set: training images kept out (a validation slice)
    save_model: bool = True
    data_seed: int | None = None        # transfer set: the seed that picks the ``fraction`` (None: the training seed)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Every check that needs neither data nor a teacher, so a bad setting costs nothing:
        the training settings, names, hyperparameters (finite, in range), transfer-set options."""
        if not isinstance(self.train, TrainSettings):
            raise ValueError(f"train must be TrainSettings (kdviz.train), got {self.train!r}")
        epochs = self.train.epochs
        if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs} (a run without training "
                             "would save an untrained model)")
        self.train.validate()
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(f"dataset must be a name or a folder, got {self.dataset!r}")
        num_classes = datasets.num_classes_of(self.dataset)
        if num_classes is None:
            raise ValueError(datasets.unknown_dataset(self.dataset))
        if num_classes < 2:
            raise ValueError(f"dataset {self.dataset!r} has {num_classes} class folder(s) in train/: a classifier "
                             "needs at least two")
        if not isinstance(self.student, str) or ALIASES.get(self.student, self.student) not in MODELS:
            raise ValueError(f"unknown model {self.student!r}; choose one of: {', '.join(MODELS)}")
        if not isinstance(self.params, dict) or not all(isinstance(k, str) for k in self.params):
            raise ValueError(f"method parameters must be a mapping of names to values, got {self.params!r}")
        needs_teacher = check_method(self.method, self.params)
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher.strip()):
            raise ValueError(f"teacher must be a pretrained name, run id or checkpoint path, got {self.teacher!r}")
        if needs_teacher and not self.teacher:
            raise ValueError(f"method {self.method!r} needs a teacher (a pretrained name, run id or checkpoint path)")
        for name in ("hide_labels", "save_model"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.omit_classes, (tuple, list)):
            raise ValueError(f"omit_classes must be a list of class indices, got {self.omit_classes!r}")
        datasets.check_transfer_options(self.fraction, tuple(self.omit_classes), num_classes)
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, int) or self.holdout < 0:
            raise ValueError(f"holdout must be a whole number of images >= 0, got {self.holdout!r}")
        if self.data_seed is not None and (isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int)
                                           or not 0 <= self.data_seed < 2**31):
            raise ValueError(f"data seed must be a whole number in [0, 2**31) or None, got {self.data_seed!r}")

    @property
    def subset_seed(self) -> int:
        """The seed that picks the transfer set's images: ``data_seed``, or the training seed."""
        return self.train.seed if self.data_seed is None else self.data_seed

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        d["train"] = TrainSettings(**d.get("train", {}))
        d["omit_classes"] = tuple(d.get("omit_classes", ()))
        return cls(**d)


class RunSaveError(OSError):
    """A finished run could not be written where it belonged (the message says where it went)."""


class Experiment:
    """One run: builds everything from the config up front, so bad input fails before training."""

    def __init__(self, config: RunConfig, runs_dir: Path | None = None, stop: threading.Event | None = None,
                 resume: Path | str | None = None):
        self._made = time.time()  # preparing (data, teacher, its cached logits) counts toward the wait
        self.config = config
        self.resume = resume  # a file for the state after each epoch (see kdviz.train.fit)
        self.runs_dir = Path(runs_dir or default_runs_dir())
        self.stop = stop or threading.Event()
        config.validate()  # settings first: nothing is loaded for a run that cannot start
        check_writable(self.runs_dir)  # a run that could not be saved is refused before it trains
        self.teacher, self.teacher_source, self.teacher_sha256 = None, None, None
        if config.teacher:
            self.teacher, self.teacher_source = resolve_teacher(config.teacher, self.runs_dir)
            self.teacher_sha256 = TeacherRef.parse(config.teacher, self.runs_dir).sha256(self.runs_dir)
        splits = datasets.load(config.dataset)
        self.train_data = datasets.transfer_set(splits.train, config.fraction, tuple(config.omit_classes),
                                                config.hide_labels, config.subset_seed, config.holdout)
        self.test_data = splits.test
        channels, size, width = splits.train.shape
        if size != width:  # every model of the zoo is built for square images
            raise ValueError(f"{config.dataset}: images are {width}x{size} pixels; kdviz trains on square images: "
                             "crop or resize them")
        if self.teacher is not None:
            spec = self.teacher.spec
            if (spec.in_channels, spec.image_size, spec.num_classes) != (channels, size, splits.train.num_classes):
                raise ValueError(f"teacher {config.teacher!r} was made for {spec.in_channels}x{spec.image_size}"
                                 f"x{spec.image_size} images with {spec.num_classes} classes, not {config.dataset}")
            probe = self.train_data.subset(torch.arange(min(64, len(self.train_data))))
            if not torch.isfinite(predict_logits(self.teacher, probe, device="cpu")).all():
                raise ValueError(f"teacher {config.teacher!r} gives non-finite outputs (inf or NaN logits) on "
                                 f"{config.dataset}'s images: its weights are not those of a usable teacher")
        torch.manual_seed(config.train.seed)
        self.student = build_model(config.student, channels, size, splits.train.num_classes)
        self.method = build_method(config.method, self.student, self.teacher, config.params)
        if config.hide_labels and self.method.label_weight() >= 1.0 and not self.method.needs_teacher:
            raise ValueError(f"method {config.method!r} learns from labels only; it cannot train with labels hidden")
        self.id = new_run_id(config.method if config.teacher else "teacher", config.dataset.split("/")[-1],
                             config.student, f"s{config.train.seed}")
        self.record: dict | None = None
        self.rescued_to: Path | None = None
        self.precision = resolve_precision(config.train.precision, config.train.device)  # "auto" made concrete

    def events(self) -> Iterator:
        cfg = self.config
        cached = None
        if self.teacher is not None and not cfg.train.random_inputs and not self.method.needs_features:
            cached = teacher_logits(self.teacher, self.train_data, cfg.train.device, self.precision)
        started = time.time()
        for event in fit(self.student, self.method, self.train_data, self.test_data, cfg.train,
                         self.teacher, self.stop, cached, resume=self.resume):
            if isinstance(event, Finished):
                self.record = self._save(event, started)
            yield event

    def run(self) -> dict:
        """Train to the end without a consumer; returns the record."""
        for _ in self.events():
            pass
        return self.record

    def _save(self, done: Finished, started: float) -> dict:
        cfg = self.config
        summary = model_summary(self.student.cpu())
        device = resolve_device(cfg.train.device)
        self.student.to(device)
        record = {
            "id": self.id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": cfg.to_dict(),
            "method": cfg.method,
            "method_params": self.method.params,
            "dataset": {"name": cfg.dataset, "source": self.train_data.source, "classes": list(self.test_data.classes),
                        "transfer_size": len(self.train_data), "test_size": len(self.test_data)},
            "student": self.student.spec.to_dict(),
            "teacher": self.teacher_source,
            "teacher_sha256": self.teacher_sha256,  # the weights that taught this run
            "history": done.history,
            "test_acc": done.test_acc,
            "confusion": done.confusion,
            "stopped": done.stopped,
            "diverged": done.diverged,  # None, or where a non-finite value stopped the run (weights: the last good ones)
            "status": "diverged" if done.diverged else "stopped" if done.stopped else "finished",
            "params": summary["params"],
            "latency_ms": summary["latency_ms"],
            "seed": cfg.train.seed,
            "device": str(device),
            **({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
            "precision": self.precision,
            "wall_time_s": round(time.time() - started, 3),
            "prepare_time_s": round(started - self._made, 3),
            "train_time_s": round(done.elapsed, 3),
            "versions": versions(),
        }
        self.record = record
        try:
            self._write(record, self.runs_dir)
        except OSError as error:
            raise RunSaveError(self._rescue(record, error)) from None
        return record

    def _write(self, record: dict, runs_dir: Path) -> None:
        save_run(record, self.student if self.config.save_model else None, runs_dir)

    def _rescue(self, record: dict, error: OSError) -> str:
        """The run could not be saved where it should go: keep it in a temporary folder and
        return the message that names both places."""
        reason = error.strerror or str(error) or type(error).__name__
        message = f"could not save run {self.id} in {self.runs_dir} ({reason})"
        rescue = Path(tempfile.gettempdir()) / "kdviz-rescued-runs"
        try:
            self._write(record, rescue)
        except OSError:
            return f"{message}; saving it in {rescue} failed too, the trained model is lost"
        self.rescued_to = rescue / self.id
        return f"{message}; the trained model and its record were saved in {self.rescued_to} instead"
