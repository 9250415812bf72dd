"""The one training loop, for teachers and students alike.

:func:`fit` is a generator of events (:class:`StepDone`, :class:`EpochDone`,
:class:`PhaseStarted`, and last :class:`Finished`) that a progress bar, a log or
a live chart consumes. Pulling events drives the training, so a consumer that
stops pulling pauses it; setting the ``stop`` event ends it between two steps.
A divergence guard checks every step: a non-finite loss or gradient (or weights
at the end of an epoch) ends the run, puts the last good weights back (those of
the last finite epoch, or the starting ones) and says where in
``Finished.diverged``. A step's logged values (its loss terms, right answers and
gradient norm) reach the host in one read; on a GPU that read comes after the next
step is queued (:func:`read_lag`), so the chip does not wait for the host.
Teacher training is distillation with the ``baseline`` method and no teacher.

When the method needs only the teacher's logits and the data is not augmented,
the teacher runs once over the transfer set before the first epoch (or its
logits are handed in, e.g. from the disk cache), so an epoch of logit
distillation costs about what a plain student epoch costs.
"""
from __future__ import annotations

import copy
import math
import numbers
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from kdviz.data import ImageData, batches, on_device
from kdviz.evaluation import as_layout, autocast, evaluate, fast_layout, predict_logits, resolve_device, resolve_precision
from kdviz.files import write_atomic
from kdviz.methods import Method, Phase, Step
from kdviz.models import Features, ZooModel
from kdviz.optim import SGD, Adam


@dataclass
class TrainSettings:
    """The optimisation budget. Defaults: SGD with Nesterov momentum 0.9, weight decay
    5e-4 and a one-cycle schedule peaking at ``lr`` (99.25% on MNIST in 3 epochs for the CNN).

    ``grad_clip`` caps the global gradient norm of each step (0 = off). Distillation terms
    scaled by T² (KD) or by large weights (AT's β, RKD's λ) give gradients several times
    the label term's; on short runs at lr 0.1 one such spike could wreck a small student
    (``kdviz distill --teacher mnist-cnn --student cnn5-small --method kd --epochs 2 --fraction
    0.05 --seed 0 --grad-clip 0``: 77.7% test accuracy in fp32, 28.5% in bf16; with the default
    cap of 5, 97.3% in fp32; labels-only training is hardly touched)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"      # "sgd" | "adam"
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # "onecycle" | "cosine" | "constant"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"     # "fp32" | "bf16" | "auto" (bf16 where the hardware has it natively)
    augment: bool = False       # random crop + flip (CIFAR)
    jitter: int = 0             # shift each training image by up to this many pixels (Hinton et al. 2015 §3: 2)
    grad_clip: float = 5.0      # max global gradient norm per step; 0 = no clipping

    def validate(self) -> None:
        """Refuse settings that cannot train (one clear line each), before anything is loaded.
        (``epochs=0`` is allowed here, for methods' own phases; a saved run needs at least 1.)"""
        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number, got {value!r}")
        if not 0 <= self.epochs <= 10_000:
            raise ValueError(f"epochs must be in [0, 10000], got {self.epochs}")
        if not 1 <= self.batch_size <= 65_536:
            raise ValueError(f"batch size must be in [1, 65536], got {self.batch_size}")
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {self.seed}")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{'learning rate' if name == 'lr' else name.replace('_', ' ')} must be a finite number, "
                                 f"got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "cosine", "constant"):
            raise ValueError(f"schedule must be onecycle, cosine or constant, got {self.schedule!r}")
        if self.grad_clip < 0:
            raise ValueError(f"gradient clip must be >= 0 (0 = off), got {self.grad_clip}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        resolve_precision(self.precision, resolve_device(self.device))  # unknown names are one-line errors
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be true or false, got {self.augment!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, numbers.Integral) or not 0 <= self.jitter <= 8:
            raise ValueError(f"jitter must be 0..8 pixels, got {self.jitter}")

    @property
    def random_inputs(self) -> bool:
        """True when every epoch sees different pixels (augmentation or jitter): the teacher
        must then run on each batch instead of from cached logits."""
        return self.augment or self.jitter > 0

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- events
@dataclass
class PhaseStarted:
    phase: str
    epochs: int
    steps_per_epoch: int


@dataclass
class StepDone:
    phase: str
    epoch: int
    step: int                   # 1-based within the epoch
    steps_per_epoch: int
    losses: dict[str, float]    # each named term, and "total"
    images_per_s: float
    elapsed: float


@dataclass
class EpochDone:
    phase: str
    epoch: int
    epochs: int
    losses: dict[str, float]    # means over the epoch
    train_acc: float            # on the training batches as seen (labels hidden or not)
    test_acc: float
    images_per_s: float
    elapsed: float


@dataclass
class Finished:
    test_acc: float
    confusion: list[list[int]]
    stopped: bool
    elapsed: float
    history: list[dict] = field(default_factory=list)  # one EpochDone as a dict per epoch
    diverged: dict | None = None  # where and why a non-finite value stopped the run (see Divergence)


@dataclass
class Divergence:
    """A non-finite loss, gradient or weight that stopped a run; the weights left in the
    student are the last good ones (the end of the last finite epoch, or the start)."""

    phase: str
    epoch: int
    step: int
    what: str           # "loss", "gradient", "weights" or "auxiliary loss"
    values: dict        # the step's logged values (non-finite ones included)
    restored: str       # which weights were kept

    @property
    def message(self) -> str:
        bad = ", ".join(f"{k}={v}" for k, v in self.values.items() if not math.isfinite(v)) or "non-finite values"
        return (f"training diverged: non-finite {self.what} in phase {self.phase!r}, epoch {self.epoch}, "
                f"step {self.step} ({bad}); kept the weights from {self.restored}. "
                "Lower the learning rate or the loss weights.")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


Event = PhaseStarted | StepDone | EpochDone | Finished


@dataclass
class _Reading:
    """A step taken, with what it logs still where it was computed (on a GPU: not yet read)."""
    step: int
    names: list[str]
    values: torch.Tensor          # the named terms, the total, the right answers, the gradient norm
    auxiliary: dict[str, float]   # a second player's losses (read at once)
    images: int
    rate: float


def read_lag(device: torch.device) -> int:
    """Steps between taking a step and reading its logged values on the host. On a GPU one: the step
    after is queued first, so the chip is never idle while the host waits for the values (the read
    cost 19% of a cnn5 step and 36% of an mlp-800 step on an H200 when every step waited for its own,
    BENCHMARKS.md). On the CPU none: the values are there when the step returns."""
    return 1 if device.type == "cuda" else 0


# --------------------------------------------------------------------------- optimisation
def make_optimizer(parameters, settings: TrainSettings, lr: float) -> torch.optim.Optimizer:
    """SGD (Nesterov) or Adam, fused into one kernel per parameter where torch has one (CPU and
    CUDA): the same numbers as the step written out op by op, 4x faster on CPU (mlp-800: 0.8 ms
    against 3.3 ms a step, a fifth of a whole training step at batch 128). The classes are
    :mod:`kdviz.optim`'s: torch's without the guards that import torch._dynamo (1.3 s of CPU)."""
    parameters = list(parameters)
    fused = bool(parameters) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)
    if settings.optimizer == "adam":
        return Adam(parameters, lr=lr, weight_decay=settings.weight_decay, fused=fused or None)
    return SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay,
               fused=fused or None)


def make_schedule(optimizer, settings: TrainSettings, total_steps: int):
    total_steps = max(total_steps, 1)
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total_steps)
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _float_features(features: Features | None) -> Features | None:
    if features is None:
        return None
    return Features([s.float() for s in features.stages], features.embedding.float())


def label_term(method: Method):
    """The loop's own term: cross-entropy on true labels, weighted by the method."""

    def losses(step: Step) -> dict[str, torch.Tensor]:
        terms = method.losses(step)
        weight = method.label_weight()
        if step.y is not None and weight > 0:
            terms = {"ce": weight * F.cross_entropy(step.student_logits, step.y), **terms}
        return terms

    return losses


# --------------------------------------------------------------------------- the loop
class _Trainer:
    """State of one call to :func:`fit` (the nets, the data, the clock)."""

    def __init__(self, student, method, train, test, settings, teacher, stop, teacher_logits, resume=None):
        self.student, self.method, self.teacher = student, method, teacher
        self.resume_path = None if resume is None else Path(resume)
        self.resumed = load_resume_state(self.resume_path, settings) if self.resume_path else None
        self.stop = stop or threading.Event()
        self.device = resolve_device(settings.device)
        # on a GPU the images live there: batches are gathered, augmented and normalised on the chip
        self.train, self.test, self.settings = on_device(train, self.device), on_device(test, self.device), settings
        # conv nets in channels-last layout where it is faster (the CPU, a GPU): weights here, inputs per batch
        self.channels_last = fast_layout(student, self.device)
        for module in (teacher, method):
            if module is not None:
                fast_layout(module, self.device)
        self.start = time.perf_counter() - (self.resumed["elapsed"] if self.resumed else 0.0)
        self.stopped = False
        self.diverged: Divergence | None = None
        self.good_state = self._weights_copy()  # the last weights known to be finite
        self.good_label = "before training"
        self.history: list[dict] = list(self.resumed["history"]) if self.resumed else []
        self.scores: dict | None = None  # the last end-of-epoch test scores of the main phase
        needs_live_teacher = method.needs_features or settings.random_inputs
        if teacher is not None and method.needs_teacher and not needs_live_teacher and teacher_logits is None:
            teacher_logits = predict_logits(teacher, self.train, device=self.device, precision=settings.precision)
        self.teacher_logits = None if teacher_logits is None else teacher_logits.to(self.device)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    # ----------------------------------------------------------------- divergence guard
    def _weights_copy(self) -> dict:
        return {"student": copy.deepcopy(self.student.state_dict()), "method": copy.deepcopy(self.method.state_dict())}

    def _weights_finite(self) -> bool:
        tensors = [*self.student.state_dict().values(), *self.method.state_dict().values()]
        return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())

    def _diverge(self, phase: str, epoch: int, step: int, what: str, values: dict) -> None:
        """Stop the run and put the last good weights back."""
        self.student.load_state_dict(self.good_state["student"])
        self.method.load_state_dict(self.good_state["method"])
        self.diverged = Divergence(phase, epoch, step, what, values, self.good_label)

    def forward(self, batch, needs_features: bool) -> Step:
        """Student (and, when needed, teacher) outputs for one batch."""
        s = self.settings
        x = as_layout(batch.x, self.channels_last)
        with autocast(self.device, s.precision):
            if needs_features:
                logits, features = self.student(x, with_features=True)
            else:
                logits, features = self.student(x), None
            teacher_logits = teacher_features = None
            if self.teacher is not None and self.method.needs_teacher:
                if self.teacher_logits is not None and not needs_features:
                    teacher_logits = self.teacher_logits[batch.index.to(self.device)]
                else:
                    with torch.no_grad():
                        teacher_logits, teacher_features = self.teacher(x, with_features=True)
        y = None if self.train.labels_hidden else batch.y
        return Step(batch.x, y, logits.float(), None if teacher_logits is None else teacher_logits.float(),
                    _float_features(features), _float_features(teacher_features))

    def run_phase(self, phase: Phase, index: int, is_main: bool) -> Iterator[Event]:
        s = self.settings
        steps_per_epoch = -(-len(self.train) // s.batch_size)
        yield PhaseStarted(phase.name, phase.epochs, steps_per_epoch)
        if phase.epochs == 0:
            return
        optimizer = make_optimizer(phase.parameters, s, s.lr * phase.lr_scale)
        schedule = make_schedule(optimizer, s, phase.epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(s.seed * 1000 + index)
        first = 1
        if is_main and self.resumed:
            first = self.restore(self.resumed, optimizer, schedule, generator) + 1
        lag = read_lag(self.device)
        for epoch in range(first, phase.epochs + 1):
            self.student.train(phase.train_student)
            self.method.train()
            sums: dict[str, float] = {}
            counts = {"correct": 0, "seen": 0}
            epoch_start = time.perf_counter()
            pending: list[_Reading] = []  # steps taken whose logged values are not read yet (at most ``lag``)

            def settle(reading: _Reading, epoch: int = epoch) -> StepDone | None:
                """One step's logged values read on the host: its event, or None when the loss or the
                gradient was not finite (the run has diverged: the last good weights are back)."""
                *values, total_value, hit_count, norm = reading.values.tolist()
                logged = dict(zip(reading.names, values))
                logged["total"] = total_value
                if not math.isfinite(total_value):
                    self._diverge(phase.name, epoch, reading.step, "loss", logged)
                    return None
                if not math.isfinite(norm):
                    self._diverge(phase.name, epoch, reading.step, "gradient", {**logged, "grad_norm": norm})
                    return None
                logged.update(reading.auxiliary)
                for name, value in logged.items():
                    sums[name] = sums.get(name, 0.0) + value
                counts["correct"] += int(hit_count)
                counts["seen"] += reading.images
                return StepDone(phase.name, epoch, reading.step, steps_per_epoch, logged, reading.rate, self.elapsed())

            def report(readings: list[_Reading]) -> Iterator[StepDone]:
                """The events of ``readings``, in order; returns False at the first that diverged."""
                for reading in readings:
                    if (done := settle(reading)) is None:
                        return False
                    yield done
                return True

            for i, batch in enumerate(batches(self.train, s.batch_size, True, generator, s.augment, self.device,
                                              s.jitter), 1):
                if self.stop.is_set():
                    self.stopped = True
                    yield from report(pending)  # the steps already taken are reported
                    return
                step_start = time.perf_counter()
                step = self.forward(batch, phase.needs_features)
                terms = phase.losses(step)
                if not terms:
                    raise ValueError(f"phase {phase.name!r} has no loss term (labels hidden and no teacher term?)")
                total = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                grads = [p.grad for p in phase.parameters if p.grad is not None]
                if s.grad_clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(phase.parameters, s.grad_clip)
                else:
                    norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=total.device)
                if is_main and i == 1 and epoch == 1 and self.train.labels_hidden and norm.item() == 0:
                    raise ValueError("with the labels hidden the student gets no gradient: every teacher term is "
                                     "weighted 0 (KD's alpha = 0?), so it would learn nothing")
                # Taken before its loss and gradient are known to be finite: a step that was not is found
                # when its values are read (below), and then the last good weights are put back anyway.
                optimizer.step()
                schedule.step()
                hits = (step.student_logits.argmax(1) == batch.y).sum()
                # everything logged in one tensor: one host sync a step (each .item() would be one)
                values = torch.stack([*(v.detach().float() for v in terms.values()), total.detach().float(),
                                      hits.float(), norm.detach().float().to(total.device)])
                auxiliary = self.method.auxiliary_step(step) if is_main else {}
                reading = _Reading(i, list(terms), values, auxiliary, len(batch.y),
                                   len(batch.y) / max(time.perf_counter() - step_start, 1e-9))
                if not all(math.isfinite(v) for v in auxiliary.values()):
                    # the steps before this one, then this step's own loss and gradient, are named first
                    if not (yield from report(pending)):
                        return
                    if (done := settle(replace(reading, auxiliary={}))) is not None:
                        self._diverge(phase.name, epoch, i, "auxiliary loss", {**done.losses, **auxiliary})
                    return
                pending.append(reading)
                ready, pending = pending[:len(pending) - lag], pending[len(pending) - lag:]
                if not (yield from report(ready)):
                    return
            if not (yield from report(pending)):
                return
            correct, seen = counts["correct"], counts["seen"]
            if not self._weights_finite():
                self._diverge(phase.name, epoch, steps_per_epoch, "weights", {k: v / steps_per_epoch for k, v in sums.items()})
                return
            self.good_state, self.good_label = self._weights_copy(), f"the end of epoch {epoch} of phase {phase.name!r}"
            self.scores = evaluate(self.student, self.test, self.device, s.precision) if is_main else None
            test_acc = self.scores["accuracy"] if is_main else float("nan")
            done = EpochDone(phase.name, epoch, phase.epochs, {k: v / steps_per_epoch for k, v in sums.items()},
                             correct / max(seen, 1), test_acc, seen / (time.perf_counter() - epoch_start), self.elapsed())
            self.history.append(asdict(done))
            if is_main and self.resume_path:
                write_atomic(self.resume_path, lambda f: torch.save(self.resume_state(epoch, optimizer, schedule, generator), f))
            yield done

    # ----------------------------------------------------------------------- resuming
    def resume_state(self, epoch, optimizer, schedule, generator) -> dict:
        """Everything the next epoch depends on, so a resumed run matches an uninterrupted one."""
        return {"epoch": epoch, "settings": self.settings.to_dict(),
                "student": self.student.state_dict(), "method": self.method.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "history": self.history, "elapsed": self.elapsed()}

    def restore(self, state: dict, optimizer, schedule, generator) -> int:
        self.student.load_state_dict(state["student"])
        self.method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.good_state, self.good_label = self._weights_copy(), f"the end of epoch {state['epoch']} (resumed)"
        return int(state["epoch"])


def load_resume_state(path: Path, settings: TrainSettings) -> dict | None:
    """The state saved after the last finished epoch at ``path``, or None when there is none yet.

    A state saved under other settings is refused: resuming it would silently mix two runs."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["settings"]
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be resumed from
        raise ValueError(f"{path} is not a resumable training state ({type(error).__name__}: {error}); "
                         "delete it to start over") from None
    if saved != settings.to_dict():
        changed = sorted(k for k in set(saved) | set(settings.to_dict()) if saved.get(k) != settings.to_dict().get(k))
        raise ValueError(f"{path} was saved by a run with other settings ({', '.join(changed)} differ); "
                         "delete it to start over")
    return state


def fit(
    student: ZooModel,
    method: Method,
    train: ImageData,
    test: ImageData,
    settings: TrainSettings | None = None,
    teacher: ZooModel | None = None,
    stop: threading.Event | None = None,
    teacher_logits: torch.Tensor | None = None,
    resume: Path | str | None = None,
) -> Iterator[Event]:
    """Train ``student`` with ``method`` on ``train``; yields events, ends with :class:`Finished`.

    ``teacher_logits`` (one row per training image, in order) skips the teacher pass.
    ``resume``: a file where the state after each epoch of the main phase is saved; when it
    already holds a state (same settings), training goes on from there, and the run ends as
    the uninterrupted run would (same weights on the same CPU and thread count). Phases
    before the main one are not rerun (their result is in the saved weights). A second
    player's private optimizer (the adversarial discriminator's) starts afresh."""
    settings = settings or TrainSettings()
    settings.validate()
    torch.manual_seed(settings.seed)
    device = resolve_device(settings.device)
    student.to(device)
    method.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    trainer = _Trainer(student, method, train, test, settings, teacher, stop, teacher_logits, resume)
    main = Phase("train", settings.epochs, [*student.parameters(), *method.trainable_parameters()],
                 label_term(method), needs_features=method.needs_features)
    phases = [*method.phases(), main]
    for index, phase in enumerate(phases):
        if trainer.resumed and phase is not main:
            continue
        yield from trainer.run_phase(phase, index, is_main=phase is main)
        if trainer.stopped or trainer.diverged:
            break
    # a run that ended normally was just scored at the end of its last epoch: same weights, same numbers
    done_normally = trainer.scores is not None and not (trainer.stopped or trainer.diverged)
    final = trainer.scores if done_normally else evaluate(student, test, device, settings.precision)
    yield Finished(final["accuracy"], final["confusion"], trainer.stopped, trainer.elapsed(), trainer.history,
                   trainer.diverged.to_dict() if trainer.diverged else None)
