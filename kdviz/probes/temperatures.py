"""Softened distributions and the dark-knowledge matrix, in plain numpy: what the Temperature page and
Home draw, before torch is imported; and the Soft targets page's replay of a student's recorded frames
(:func:`frame_probs`, :func:`frame_gaps`).

On a fresh server torch's import is most of a first view's wait (BENCHMARKS.md, app speed), so a
page's first picture is computed here, from shipped arrays (:mod:`kdviz.shipped`), with numpy only.
Inputs may be numpy arrays, lists or CPU tensors.
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


def logits_array(logits) -> np.ndarray:
    """Logits (an array, a list or a CPU tensor) as float64, checked: at least two classes in the last axis."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] < 2:
        raise ValueError("logits need at least two classes in the last dimension")
    return z


def softmax_at(logits, temperatures) -> np.ndarray:
    """``softmax(z/T)`` over the last axis for each T: shape ``(len(temperatures), *logits.shape)``, float64."""
    z = logits_array(logits)
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


def entropy(probs) -> np.ndarray:
    r"""Shannon entropy in nats over the last axis, :math:`H(p) = -\sum_c p_c \log p_c` (0·log 0 = 0):
    0 for a one-hot distribution, log C for the uniform one (as :func:`kdviz.losses.entropy`)."""
    p = np.asarray(probs, dtype=np.float64)
    return -(p * np.log(np.maximum(p, 1e-300))).sum(-1)


# --------------------------------------------------------------------------- one image
def softening_curves(logits, temperatures=T_GRID) -> dict:
    """For one image's logits: the distribution at every T, its entropy, its top-class probability.

    ``max_entropy`` is log C, what the entropy tends to as T → ∞ (the uniform distribution)."""
    z = logits_array(logits).ravel()
    probs = softmax_at(z, temperatures)
    return {
        "T": [float(T) for T in temperatures],
        "probs": probs.tolist(),
        "entropy": entropy(probs).tolist(),
        "top_prob": probs.max(-1).tolist(),
        "max_entropy": math.log(len(z)),
        "top_class": int(z.argmax()),
    }


def wrong_class_ranking(logits, k: int = 3) -> list[int]:
    """The ``k`` classes the teacher ranks highest after its own answer, most likely first: the key
    to the "predict, then reveal" question "which other classes does this image resemble?".

    ``softmax(z / T)`` never reorders the classes (dividing the logits by T > 0 keeps their order),
    so this ranking is the teacher's at every temperature; a high T only makes the small
    probabilities large enough to see (Hinton, Vinyals & Dean 2015, §2). It is *not* "which class
    rises most from T = 1 to T = 10": the runner-up is usually already high and falls as T grows."""
    z = logits_array(logits).ravel()
    return [int(i) for i in np.argsort(-z, kind="stable")[1:k + 1]]


# --------------------------------------------------------------------------- many images
def example_gallery(logits, labels, k: int = 8, T: float = 1.0) -> dict[str, list[int]]:
    """Indices of the ``k`` most "ambiguous" images (highest entropy of softmax(z/T)), ``k``
    confident ones (the lowest entropy of each class in turn, so the classes vary), and the
    misclassified ones (most ambiguous first)."""
    z = logits_array(logits)
    labels = np.asarray(labels)
    order = np.argsort(-entropy(softmax_at(z, [T])[0]), kind="stable").tolist()
    wrong = z.argmax(-1) != labels
    per_class = [[i for i in order[::-1] if labels[i] == c and not wrong[i]] for c in np.unique(labels).tolist()]
    confident = [i for rank in range(max(map(len, per_class), default=0)) for group in per_class
                 if rank < len(group) for i in [group[rank]]][:k]
    return {"ambiguous": order[:k], "confident": confident, "misclassified": [i for i in order if wrong[i]][:k]}


def dark_knowledge_matrix(logits, labels, T: float, num_classes: int | None = None) -> np.ndarray:
    """Row c: the teacher's mean softened distribution over the *other* classes, for images of true class c.

    Each image's distribution is ``softmax(z_j / T)`` over j ≠ c (the same as softmax(z/T) with the
    true class removed and renormalised, computed stably), so every row sums to 1 over its
    off-diagonal entries; the diagonal is NaN. A class with no images gives a NaN row. One pass, no
    per-class loop: the app calls it at every new T on a whole test set's logits."""
    if not (math.isfinite(float(T)) and float(T) > 0):
        raise ValueError(f"temperature T must be > 0, got {T}")
    z = logits_array(logits) / float(T)
    labels = np.asarray(labels).astype(np.int64)
    C = num_classes or z.shape[-1]
    z[np.arange(len(z)), labels] = -np.inf  # the true class is left out
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    sums = np.zeros((C, z.shape[1]))
    np.add.at(sums, labels, p)
    counts = np.bincount(labels, minlength=C)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(counts > 0, sums / counts, np.nan)
    np.fill_diagonal(matrix, np.nan)
    return matrix


def similar_pairs(matrix, classes=None, k: int = 5) -> list[dict]:
    """The ``k`` class pairs the teacher finds most alike: the largest entries of (M + Mᵀ)/2."""
    M = np.asarray(matrix, dtype=float)
    S = (M + M.T) / 2
    C = len(S)
    names = list(classes) if classes is not None else [str(i) for i in range(C)]
    pairs = [(S[i, j], i, j) for i in range(C) for j in range(i + 1, C) if np.isfinite(S[i, j])]
    pairs.sort(reverse=True)
    return [{"a": i, "b": j, "names": (names[i], names[j]), "similarity": float(s),
             "a_to_b": float(M[i, j]), "b_to_a": float(M[j, i])} for s, i, j in pairs[:k]]


# --------------------------------------------------------------------------- recorded frames (the Soft targets page)
def frame_probs(frames: list[dict], T: float) -> np.ndarray:
    """softmax(z/T) of every recorded frame's logits: (frames, images, classes)."""
    if not frames:
        return np.zeros((0, 0, 0))
    return softmax_at([f["logits"] for f in frames], [T])[0]


def soft_target_gap(student_probs: np.ndarray, teacher_probs: np.ndarray) -> np.ndarray:
    """KL(teacher ‖ student) between softened distributions, summed over the classes (last axis):
    the quantity Hinton's KD loss drives down (before its T² factor). Broadcasts over leading axes."""
    p_t = np.clip(np.asarray(teacher_probs, dtype=np.float64), 1e-12, None)
    p_s = np.clip(np.asarray(student_probs, dtype=np.float64), 1e-12, None)
    return (p_t * (np.log(p_t) - np.log(p_s))).sum(-1)


def frame_gaps(frames: dict[str, list[dict]], teacher_probs: np.ndarray, T: float) -> dict[str, np.ndarray]:
    """Per student, :func:`soft_target_gap` at T for every frame and followed image, (frames, images);
    every student cut to the frame count of the shortest recording, so the runs line up."""
    count = min(len(f) for f in frames.values())
    return {name: soft_target_gap(frame_probs(f[:count], T), teacher_probs) for name, f in frames.items()}


def mean_over_kind(gaps: np.ndarray, kinds: list[str] | None, kind: str | None) -> np.ndarray:
    """Mean over the followed images (axis 1) of one kind (all of them when ``kind`` or ``kinds`` is None)."""
    if kinds is None or kind is None:
        return gaps.mean(1)
    return gaps[:, [k == kind for k in kinds]].mean(1)
