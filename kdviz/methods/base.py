"""What every distillation method is: a small module that owns its extra parts
(regressors, paraphrasers, discriminators), declares its hyperparameters, and
turns one batch of student/teacher outputs into named, weighted loss terms.

The training loop (:mod:`kdviz.train`) knows nothing about any method: it asks
``method.losses(step)`` for the terms, adds the label term with
``method.label_weight()``, sums, and backpropagates. Methods that need work
before the main training (FitNets' hint stage, the FT paraphraser, recasting)
return :class:`Phase` objects from ``method.phases()``; methods with a second
player (the adversarial discriminator) update it in ``method.auxiliary_step``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from kdviz.models import Features, ZooModel


class MethodError(ValueError):
    """A method was asked for something it cannot do (bad name, hyperparameter, or model)."""


@dataclass(frozen=True)
class Hyperparam:
    """One knob of a method: default, valid range (inclusive) and a one-line explanation.

    ``kind`` is "float", "int", "bool" or "choice" (then ``choices`` lists the values);
    ``log`` says a slider should be logarithmic."""

    name: str
    default: float | int | bool | str
    low: float | None = None
    high: float | None = None
    help: str = ""
    kind: str = "float"
    choices: tuple = ()
    log: bool = False

    def validate(self, value):
        if self.kind == "choice":
            # the CLI and URLs hand every value over as text: "2" selects the choice 2
            value = next((c for c in self.choices if str(c) == str(value)), value)
            if value not in self.choices:
                raise MethodError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
            return value
        if self.kind == "bool":
            text = str(value).strip().lower() if isinstance(value, (str, bool, int)) else None
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise MethodError(f"{self.name} must be true or false, got {value!r}")
        try:
            if isinstance(value, bool):  # True is an int to Python, not a temperature
                raise TypeError
            number = float(value)
            if self.kind == "int" and number != int(number):  # 3.7 steps is refused, not cut to 3
                raise ValueError
            value = int(number) if self.kind == "int" else number
        except (TypeError, ValueError, OverflowError):
            kind = "a whole number" if self.kind == "int" else "a number"
            raise MethodError(f"{self.name} must be {kind}, got {value!r}") from None
        if not math.isfinite(value):  # NaN passes every comparison, so it is refused by name
            raise MethodError(f"{self.name} must be a finite number, got {value}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise MethodError(f"{self.name} must be in [{self.low}, {self.high}], got {value}")
        return value


@dataclass
class Step:
    """What a method sees for one batch. ``y`` is None when the labels are hidden;
    features are None unless the method set ``needs_features``."""

    x: torch.Tensor
    y: torch.Tensor | None
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    student_features: Features | None = None
    teacher_features: Features | None = None


@dataclass
class Phase:
    """A stage of training before (or instead of) the main one.

    ``losses(step)`` returns the terms to minimise; only ``parameters`` are updated;
    ``epochs`` is the phase's own budget. ``train_student`` says whether the student
    is put in train mode (the FT paraphraser phase trains no part of the student)."""

    name: str
    epochs: int
    parameters: list[nn.Parameter]
    losses: Callable[[Step], dict[str, torch.Tensor]]
    needs_features: bool = True
    train_student: bool = True
    lr_scale: float = 1.0


class Method(nn.Module):
    """Base class. Subclasses set the class attributes and implement :meth:`losses`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""          # e.g. "Hinton KD (Hinton, Vinyals & Dean 2015)"
    formula: ClassVar[str] = ""        # LaTeX, shown by the app next to the controls
    hyperparams: ClassVar[tuple[Hyperparam, ...]] = ()
    needs_teacher: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False      # per-step stage maps / embeddings of both nets
    needs_spatial_features: ClassVar[bool] = False  # stage maps must be (N,C,H,W)

    def __init__(self, student: ZooModel, teacher: ZooModel | None = None, **params):
        super().__init__()
        # The nets are not submodules: the method's own parameters must not include them.
        object.__setattr__(self, "student", student)
        object.__setattr__(self, "teacher", teacher)
        self.params = self.resolve_params(params)
        if self.needs_teacher and teacher is None:
            raise MethodError(f"method {self.name!r} needs a teacher")
        if self.needs_spatial_features:
            for role, net in (("student", student), ("teacher", teacher)):
                if net is not None and net.stage_kind != "spatial":
                    raise MethodError(
                        f"method {self.name!r} needs convolutional feature maps; the {role} "
                        f"{net.spec.name!r} is an MLP with none"
                    )

    @classmethod
    def resolve_params(cls, params: dict) -> dict:
        """Defaults filled in, every value checked against its range; unknown names refused."""
        known = {h.name: h for h in cls.hyperparams}
        unknown = set(params) - set(known)
        if unknown:
            raise MethodError(
                f"method {cls.name!r} has no hyperparameter {', '.join(sorted(unknown))}; "
                f"it has: {', '.join(known) or 'none'}"
            )
        return {name: h.validate(params.get(name, h.default)) for name, h in known.items()}

    def losses(self, step: Step) -> dict[str, torch.Tensor]:
        """Named, already weighted distillation terms for one batch (no label term)."""
        raise NotImplementedError

    def label_weight(self) -> float:
        """Weight of the cross-entropy on true labels that the loop adds when labels are shown."""
        return 1.0

    def phases(self) -> list[Phase]:
        """Stages to run before the main training (none by default)."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The method's own parameters trained together with the student (e.g. a regressor).
        A second player with its own optimizer (a discriminator) is left out."""
        return list(self.parameters())

    def auxiliary_step(self, step: Step) -> dict[str, float]:
        """Update a second player (e.g. a discriminator) after the student's step."""
        return {}


class Combined(Method):
    """A weighted sum of methods, e.g. ``at+kd``. The label term keeps the smallest weight
    any part asks for, so KD's (1−α) is respected when combined with AT."""

    name = "combined"

    def __init__(self, parts: list[Method]):
        nn.Module.__init__(self)
        self.parts = nn.ModuleList(parts)
        object.__setattr__(self, "student", parts[0].student)
        object.__setattr__(self, "teacher", parts[0].teacher)
        self.params = {f"{p.name}.{k}": v for p in parts for k, v in p.params.items()}

    @property
    def needs_features(self) -> bool:  # type: ignore[override]
        return any(p.needs_features for p in self.parts)

    @property
    def needs_teacher(self) -> bool:  # type: ignore[override]
        return any(p.needs_teacher for p in self.parts)

    def losses(self, step):
        terms: dict[str, torch.Tensor] = {}
        for part in self.parts:
            terms.update(part.losses(step))
        return terms

    def label_weight(self):
        return min(p.label_weight() for p in self.parts)

    def phases(self):
        return [phase for p in self.parts for phase in p.phases()]

    def trainable_parameters(self):
        return [param for p in self.parts for param in p.trainable_parameters()]

    def auxiliary_step(self, step):
        logs: dict[str, float] = {}
        for part in self.parts:
            logs.update(part.auxiliary_step(step))
        return logs


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method reachable by its ``name`` from the CLI, app and benchmarks."""
    REGISTRY[cls.name] = cls
    return cls
