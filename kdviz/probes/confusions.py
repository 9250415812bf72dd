"""Confusion matrices read as the Confusion page reads them, in plain numpy: rows normalised, per-class
accuracy, and which cells a method improved or worsened.

The matrices themselves are counts ``[true, predicted]`` on a test split: a run's and a shipped
student's are in their record and card, a shipped teacher's in its card (``test_confusion``, made with
its shipped test-set logits by ``kdviz pretrained make-logits``), so the page's first chart needs no
torch (:func:`kdviz.evaluation.confusion_matrix` counts them from logits).
"""
from __future__ import annotations

import numpy as np


def row_normalised(confusion) -> np.ndarray:
    """Each row of a ``[true, predicted]`` count matrix divided by its sum (rows with no images stay 0)."""
    c = np.asarray(confusion, dtype=np.float64)
    totals = c.sum(axis=1, keepdims=True)
    return np.divide(c, totals, out=np.zeros_like(c), where=totals > 0)


def per_class_accuracy(confusion) -> np.ndarray:
    """The diagonal of the row-normalised confusion matrix (NaN for a class with no examples)."""
    c = np.asarray(confusion, dtype=np.float64)
    totals = c.sum(axis=1)
    return np.divide(np.diag(c), totals, out=np.full(len(c), np.nan), where=totals > 0)


def accuracy_table(confusions: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per model, its accuracy (%) on every class and, last, on all images: the rows of a per-class table."""
    table = {}
    for name, c in confusions.items():
        c = np.asarray(c, dtype=np.float64)
        table[name] = [*(100 * per_class_accuracy(c)).tolist(), 100 * float(np.trace(c) / max(c.sum(), 1))]
    return table


def confusion_change(before, after, min_count: int = 1) -> dict[str, np.ndarray]:
    """Which cells a method improved or worsened, comparing two confusion matrices of the same test set.

    A diagonal cell improves when more images of the class are right; an off-diagonal cell
    (true i, predicted j) improves when fewer i's are taken for j. Only changes of at least
    ``min_count`` images count (one image either way is often noise). Returns ``delta``
    (row-normalised after − before), and boolean ``improved`` / ``worsened`` masks."""
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"confusion matrices must be square and of one shape, got {b.shape} and {a.shape}")
    counts = a - b
    diagonal = np.eye(len(a), dtype=bool)
    gain = np.where(diagonal, counts, -counts)  # > 0: better, whatever the cell
    better, worse = gain >= max(min_count, 1), gain <= -max(min_count, 1)
    return {"delta": row_normalised(a) - row_normalised(b), "improved": better, "worsened": worse}
