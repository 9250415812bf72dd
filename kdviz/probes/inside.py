"""Inside the networks: the numbers behind the attention, FSP, factor, relation and
soft-target pages (the confusion page's are in :mod:`kdviz.probes.confusions`, the replay of
recorded frames in :mod:`kdviz.probes.temperatures`: both numpy, no torch).

Pure functions over models and tensors (no UI, no training). Each section names the
paper whose quantity it measures:

- attention maps and AT distances (Zagoruyko & Komodakis 2017);
- FSP matrices and FSP distances (Yim, Joo, Bae & Kim 2017);
- factor embeddings of the FT paraphraser / translator (Kim, Park & Kwak 2018), and t-SNE
  (van der Maaten & Hinton 2008) to draw them;
- normalised pairwise distances, angles and their teacher–student correlation
  (Park, Kim, Lu & Cho 2019, relational KD);
- a student's softened outputs on fixed images during a KD run (Hinton, Vinyals & Dean 2015;
  the recorder is :mod:`kdviz.recording`).

The distances reuse the loss modules' own per-term functions, so a page shows the very
quantity a method minimises.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from kdviz import losses
from kdviz.models import ZooModel, forward_features


# --------------------------------------------------------------------------- running a model
def embeddings(model: ZooModel, x: torch.Tensor, batch_size: int = 256, stage: int | None = None) -> torch.Tensor:
    """Penultimate embeddings (or, with ``stage``, that stage's maps flattened) of ``x``, (N, D),
    computed in batches so thousands of images never hold every stage map in memory at once."""
    out = []
    for start in range(0, len(x), batch_size):
        _, feats = forward_features(model, x[start:start + batch_size])
        out.append(feats.embedding if stage is None else feats.stages[stage].flatten(1))
    return torch.cat(out)


# --------------------------------------------------------------------------- attention (AT)
def stage_attention(stages: list[torch.Tensor], p: float = 2) -> list[torch.Tensor]:
    r"""Attention map of every spatial stage, reshaped to (N, H, W).

    Zagoruyko & Komodakis (2017), "Paying More Attention to Attention":
    :math:`Q = \mathrm{vec}(\frac{1}{C}\sum_c |A_c|^p) / \lVert\cdot\rVert_2`
    (:func:`kdviz.losses.attention_map`), each map of unit L2 norm over its H·W positions.
    """
    maps = []
    for stage in stages:
        if stage.dim() != 4:
            raise ValueError("attention maps need convolutional (N, C, H, W) stages; this net has vector stages")
        n, _, h, w = stage.shape
        maps.append(losses.attention_map(stage, p).view(n, h, w))
    return maps


def rms_scaled(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each unit-norm map times √(H·W), so a uniform map is 1 everywhere at every stage:
    maps of different sizes can then share one colour scale."""
    return [m * (m.shape[-2] * m.shape[-1]) ** 0.5 for m in maps]


def at_distances(student_stages: list[torch.Tensor], teacher_stages: list[torch.Tensor], p: float = 2) -> np.ndarray:
    r"""Per stage and image, :math:`\lVert Q_s - Q_t\rVert_2` between the student's and the teacher's
    attention maps (stages paired in order), shape (stages, N).

    0 means the same map; √2 means maps with no overlap at all. The larger map is
    average-pooled to the smaller size first, as in :func:`kdviz.losses.at_loss`, which is
    this distance squared divided by H·W and averaged over the batch.
    """
    if len(student_stages) != len(teacher_stages):
        raise ValueError(f"{len(student_stages)} student stages cannot be paired with {len(teacher_stages)} teacher stages")
    rows = [losses.attention_difference(s, t, p).norm(dim=1).numpy() for s, t in zip(student_stages, teacher_stages)]
    return np.stack(rows) if rows else np.zeros((0, 0))


# --------------------------------------------------------------------------- FSP
def fsp_matrices(stages: list[torch.Tensor], adapters=None) -> list[torch.Tensor]:
    r"""The FSP matrix of every consecutive pair of stages, averaged over the batch: (C_i, C_{i+1}) each.

    Yim, Joo, Bae & Kim (2017), "A Gift from Knowledge Distillation":
    :math:`G_{ij} = \frac{1}{hw}\sum_{s,t} F^1_{s,t,i} F^2_{s,t,j}` (:func:`kdviz.losses.fsp_matrix`).
    ``adapters`` (one module per stage, e.g. the FSP method's 1×1 convolutions) map a
    student's stages to the teacher's channel counts first.
    """
    if adapters is not None:
        with torch.no_grad():
            stages = [a.cpu().float()(s) for a, s in zip(adapters, stages)]
    return [losses.fsp_matrix(a, b).mean(0) for a, b in zip(stages, stages[1:])]


def fsp_distances(student_stages: list[torch.Tensor], teacher_stages: list[torch.Tensor], adapters=None) -> list[float]:
    """Per pair of consecutive stages, the mean squared difference between the student's and the
    teacher's per-image FSP matrices, averaged over the batch: the terms of :func:`kdviz.losses.fsp_loss`.
    ``None`` for a pair whose matrices have different shapes (channel counts differ, no adapter)."""
    if adapters is not None:
        with torch.no_grad():
            student_stages = [a.cpu().float()(s) for a, s in zip(adapters, student_stages)]
    return [None if d is None else d.item() for d in losses.fsp_pair_losses(student_stages, teacher_stages)]


def matrix_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation between the entries of two matrices of one shape (NaN if shapes differ):
    whether a student's FSP matrix has the teacher's *pattern*, whatever its overall size."""
    if a.shape != b.shape:
        return float("nan")
    return _pearson(a.flatten(), b.flatten())


# --------------------------------------------------------------------------- factors (FT)
@torch.no_grad()
def factor_embeddings(method, student: ZooModel, teacher: ZooModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flattened FT factors for ``x``: the teacher's paraphraser code and the student's translator output.

    Kim, Park & Kwak (2018), "Paraphrasing Complex Network: Network Compression via Factor
    Transfer": F_t = encoder_P(last teacher map), F_s = translator(last student map); the
    student is trained to make F_s/‖F_s‖ match F_t/‖F_t‖. Both are L2-normalised here, as the
    loss compares them. ``method`` is a trained ``ft`` method (it owns both modules)."""
    method = method.cpu().float().eval()
    teachers, students = [], []
    for start in range(0, len(x), 256):
        batch = x[start:start + 256]
        teacher_factor = method.paraphraser.encoder(forward_features(teacher, batch)[1].stages[-1])
        student_factor = method.translator(forward_features(student, batch)[1].stages[-1])
        student_factor, teacher_factor = losses.pool_to_common_size(student_factor, teacher_factor)
        teachers.append(F.normalize(teacher_factor.flatten(1), dim=1))
        students.append(F.normalize(student_factor.flatten(1), dim=1))
    return {"teacher": torch.cat(teachers), "student": torch.cat(students)}


def factor_agreement(student_factors: torch.Tensor, teacher_factors: torch.Tensor) -> dict[str, float]:
    """How close the FT student's factors are to the teacher's, on the same images (rows): the
    correlation of their pairwise distances (:func:`distance_correlation`; 1 = the same geometry up
    to scale) and the mean L1 distance between matching rows, FT's own loss on L2-normalised
    factors (Kim, Park & Kwak 2018; :func:`kdviz.losses.factor_loss` with p = 1)."""
    return {"distance correlation": distance_correlation(student_factors, teacher_factors),
            "mean L1 distance": float(losses.factor_loss(student_factors, teacher_factors, p=1))}


def tsne(points: np.ndarray | torch.Tensor, perplexity: float = 30.0, seed: int = 0, max_iter: int = 500) -> np.ndarray:
    """2-D t-SNE (van der Maaten & Hinton 2008, scikit-learn's Barnes–Hut version) of (N, D) points.

    PCA initialisation and a fixed seed make the picture repeatable; 500 iterations (250 of
    them with early exaggeration) are enough for a few thousand points. The perplexity is
    capped below N/3 (scikit-learn requires < N). Runs on one OpenMP thread (set in the calling
    thread): on a busy 2-core machine two spinning OpenMP threads were 5-7x slower."""
    from sklearn.manifold import TSNE  # late: scikit-learn takes seconds to import, and only t-SNE needs it
    from threadpoolctl import threadpool_limits

    points = np.asarray(points, dtype=np.float32)
    n = len(points)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = float(min(perplexity, (n - 1) / 3))
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=max_iter,
                    random_state=seed).fit_transform(points)


def tsne_many(point_sets: list, perplexity: float = 30.0, seed: int = 0, max_iter: int = 500,
              workers: int = 2) -> list[np.ndarray]:
    """:func:`tsne` of several point sets at once, in ``workers`` threads (scikit-learn's Barnes–Hut
    gradient releases the GIL: 4 maps took 0.65x the sequential time on 2 cores)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda points: tsne(points, perplexity, seed, max_iter), point_sets))


# --------------------------------------------------------------------------- relations (RKD)
def distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all rows, (N, D) → (N, N), zero diagonal. The same numbers as
    :func:`kdviz.losses.pairwise_distances` (which goes through the Gram matrix, as the loss
    needs), summed as differences here so that close points of large embeddings keep every digit."""
    d = torch.cdist(emb.float(), emb.float(), compute_mode="donot_use_mm_for_euclid_dist")
    return d.fill_diagonal_(0)


def normalised_distances(emb: torch.Tensor) -> torch.Tensor:
    r"""Pairwise Euclidean distances divided by their mean over off-diagonal pairs, (N, N).

    Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation": the distance potential
    :math:`\psi_D(x_i, x_j) = \lVert x_i - x_j\rVert_2 / \mu`, what RKD's distance loss compares
    (:func:`kdviz.losses.normalised_distances`, here in float64 so the Gram form loses nothing).
    Mean 1 off the diagonal, 0 on it, whatever the embedding's scale or size."""
    if emb.shape[0] < 2:
        raise ValueError(f"need at least 2 points, got {emb.shape[0]}")
    return losses.normalised_distances(emb.double()).float()


def _off_diagonal(n: int) -> torch.Tensor:
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)


def distance_correlation(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> float:
    """Pearson correlation between the student's and the teacher's pairwise distances over
    the pairs i < j: 1 when the student's batch has the teacher's geometry (up to scale)."""
    mask = _off_diagonal(student_emb.shape[0])
    a = distances(student_emb)[mask]
    b = distances(teacher_emb)[mask]
    return _pearson(a, b)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = (a.norm() * b.norm()).item()
    return float((a @ b).item() / denominator) if denominator > 0 else float("nan")


def _triplets(n: int) -> torch.Tensor:
    """Mask of (i, j, k) with i, j, k all different (angle at vertex j)."""
    eye = torch.eye(n, dtype=torch.bool)
    return ~(eye.unsqueeze(2) | eye.unsqueeze(0) | eye.unsqueeze(1))


def angles(emb: torch.Tensor) -> torch.Tensor:
    """Every angle ∠(x_i, x_j, x_k) in degrees, over triplets of distinct points (flattened).
    RKD's angle loss compares their cosines (:func:`kdviz.losses.angle_cosines`)."""
    cosines = losses.angle_cosines(emb.float())[_triplets(emb.shape[0])]
    return torch.rad2deg(torch.arccos(cosines.clamp(-1, 1)))


def angle_histogram(emb: torch.Tensor, bins: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """Share of triplet angles in each of ``bins`` equal bins over [0°, 180°]: (shares, edges)."""
    counts, edges = np.histogram(angles(emb).numpy(), bins=bins, range=(0.0, 180.0))
    return counts / max(counts.sum(), 1), edges


def angle_correlation(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> float:
    """Pearson correlation between the student's and the teacher's angle cosines over distinct triplets."""
    mask = _triplets(student_emb.shape[0])
    return _pearson(losses.angle_cosines(student_emb.float())[mask], losses.angle_cosines(teacher_emb.float())[mask])


# --------------------------------------------------------------------------- soft targets during training
def soft_targets(model: ZooModel, x: torch.Tensor, T: float) -> torch.Tensor:
    """``soften(model(x), T)`` in eval mode, float32 on the CPU (Hinton et al. 2015)."""
    logits, _ = forward_features(model, x)
    return losses.soften(logits, T)
