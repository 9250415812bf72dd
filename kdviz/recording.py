"""Recording a student's outputs on fixed images while it trains (an event consumer beside the loop).

Hinton, Vinyals & Dean (2015): the KD student is trained to match softmax(z_t/T). A
:class:`SoftTargetRecorder` keeps *frames* of the student's logits on a few fixed images
during training, so softmax(z_s/T) can later be drawn at any T moving toward the
teacher's target (:func:`kdviz.probes.temperatures.frame_probs`).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch

from kdviz import pretrained
from kdviz.models import ZooModel, forward_features
from kdviz.train import EpochDone, PhaseStarted, StepDone


class SoftTargetRecorder:
    """An event consumer that records a student's logits on fixed images during training.

    Call it with every training event and the student being trained (a
    :class:`~kdviz.live.LiveRun` does, between two steps); it records a frame before the
    first step of the main phase, every ``every_steps`` steps (0 = never) and at the end of
    every epoch. Safe to read from another thread."""

    def __init__(self, images: torch.Tensor, every_steps: int = 0, phase: str = "train"):
        self.images, self.every_steps, self.phase = images, every_steps, phase
        self._frames: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, event, student: ZooModel) -> None:
        if getattr(event, "phase", None) != self.phase:
            return
        if isinstance(event, PhaseStarted):
            self._take(student, epoch=0.0)
        elif isinstance(event, StepDone) and self.every_steps and event.step % self.every_steps == 0 \
                and event.step != event.steps_per_epoch:
            self._take(student, epoch=event.epoch - 1 + event.step / event.steps_per_epoch)
        elif isinstance(event, EpochDone):
            self._take(student, epoch=float(event.epoch), test_acc=event.test_acc)

    def _take(self, student, **info) -> None:
        logits, _ = forward_features(student, self.images)
        with self._lock:
            self._frames.append({**info, "logits": logits.tolist()})

    @property
    def frames(self) -> list[dict]:
        """The frames so far: ``{"epoch": float, "logits": [[...]], "test_acc"?: float}`` each."""
        with self._lock:
            return list(self._frames)


def frame_every(train_size: int, batch_size: int = 128, per_epoch: int = 10) -> int:
    """Steps between two frames so that an epoch gives about ``per_epoch`` of them."""
    steps = -(-train_size // batch_size)
    return max(1, round(steps / per_epoch))


def images_to_follow(labels: torch.Tensor, kinds: np.ndarray | None, order: tuple[int, ...] = (2, 0)) -> list[int]:
    """Probe images to follow during training: per class, the first image of each kind in ``order``
    (codes of ``kdviz.pretrained.PROBE_KINDS``; by default a "typical" one, then an "ambiguous" one)
    or, without kinds, the first ``len(order)`` images of the class.

    Typical images come first because there the KD student's softened outputs end much closer to the
    teacher's than the baseline's (MNIST, T = 4: KL 0.012 vs 0.105); on the teacher's most ambiguous
    images neither student gets close (0.10 vs 0.14), which is worth seeing too."""
    labels = labels.numpy()
    chosen = []
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]
        if kinds is None:
            chosen += members[: len(order)].tolist()
            continue
        for kind in order:
            of_kind = members[kinds[members] == kind]
            if len(of_kind):
                chosen.append(int(of_kind[0]))
    return chosen


def follow_probe(teacher: str, train_size: int, batch_size: int = 128) -> tuple[Callable[[], SoftTargetRecorder], dict]:
    """What a soft-target recording of students of the shipped ``teacher`` follows: its probe images
    chosen by :func:`images_to_follow`, a frame about ten times an epoch of ``train_size`` images.
    Returns a factory of recorders (one per student; all follow the same images) and the metadata
    saved with their frames (``{"probe": teacher, "index": [...]}``)."""
    probe = pretrained.probe_set(teacher)
    try:
        kinds = pretrained.probe_details(teacher)["kind"].numpy()
    except Exception:  # noqa: BLE001 - older probe files carry no kinds
        kinds = None
    index = images_to_follow(probe.labels, kinds)
    images = probe.images(torch.tensor(index))
    every = frame_every(train_size, batch_size)
    return (lambda: SoftTargetRecorder(images, every)), {"probe": teacher, "index": index}
