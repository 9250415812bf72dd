"""Temperatures, and softmax(z/T) in plain numpy: what a page draws before torch is imported.

On a fresh server torch's import is most of a first view's wait (BENCHMARKS.md, app speed), so a
page's first picture is computed here, from shipped arrays (:mod:`kdviz.shipped`), with numpy only.
The numbers are those of :func:`kdviz.losses.soften`, the training code's softmax (tests pin them):
``p_i = exp(z_i / T) / sum_j exp(z_j / T)`` (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge
in a Neural Network"). Also the grid of temperatures a slider offers.
"""
from __future__ import annotations

import math

import numpy as np

# A log-spaced grid of round temperatures from 0.5 to 20 (what a slider offers).
T_GRID: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0,
                             8.0, 10.0, 12.0, 15.0, 20.0)


def log_grid(low: float, high: float) -> list[float]:
    """Round values spaced about evenly on a log scale from ``low`` to ``high`` (both included):
    1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times powers of ten (what a log slider offers)."""
    if not 0 < low <= high:
        raise ValueError(f"a log grid needs 0 < low <= high, got {low}, {high}")
    values = {float(low), float(high)}
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            v = float(f"{m * 10.0 ** exponent:.6g}")
            if low <= v <= high:
                values.add(v)
    return sorted(values)


def nearest(grid, value: float) -> float:
    """The grid value closest to ``value`` on a log scale (for snapping a T from a link)."""
    return min(grid, key=lambda g: abs(math.log(g) - math.log(value)))


def softmax_at(logits, temperatures) -> np.ndarray:
    """``softmax(z/T)`` over the last axis for each T: shape ``(len(temperatures), *logits.shape)``, float64."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] < 2:
        raise ValueError("logits need at least two classes in the last dimension")
    out = []
    for T in map(float, temperatures):
        if not T > 0:  # as kdviz.losses.soften: `not >` also rejects NaN
            raise ValueError(f"temperature T must be > 0, got {T}")
        scaled = z / T
        e = np.exp(scaled - scaled.max(axis=-1, keepdims=True))  # shifted: no overflow at small T
        out.append(e / e.sum(axis=-1, keepdims=True))
    return np.stack(out)


def showcase_example(logits, labels, target: float = 0.9) -> int:
    """A good first picture: an image the teacher gets right with a top probability (at T = 1)
    as close as possible to ``target``: sure, but not so sure that nothing else shows."""
    z = np.asarray(logits, dtype=np.float64)
    if not len(z):
        raise ValueError("no images")
    top = softmax_at(z, [1.0])[0].max(-1)
    right = z.argmax(-1) == np.asarray(labels)
    distance = np.abs(top - target) + 2.0 * ~right  # wrong answers only when nothing else is there
    return int(distance.argmin())
