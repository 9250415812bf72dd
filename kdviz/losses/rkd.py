"""Relational knowledge distillation: distances and angles between samples."""
from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-12


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    r"""Euclidean distances between all rows: (N, D) → (N, N), :math:`d_{ij} = \lVert x_i - x_j\rVert_2`.

    The squared distance is clamped at a tiny eps before the square root, because
    d/dx √x is infinite at 0 (coincident points would give NaN gradients); the
    diagonal is then set to exactly zero.
    """
    squared = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(dim=-1)
    distances = squared.clamp_min(_EPS).sqrt()
    off_diagonal = ~torch.eye(emb.shape[0], dtype=torch.bool, device=emb.device)
    return distances * off_diagonal


def _normalised_distances(emb: torch.Tensor) -> torch.Tensor:
    n = emb.shape[0]
    if n < 2:
        raise ValueError(f"RKD needs at least 2 samples in the batch, got {n}")
    d = pairwise_distances(emb)
    mean_off_diagonal = d.sum() / (n * (n - 1))  # the diagonal is zero
    return d / mean_off_diagonal


def rkd_distance_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    r"""RKD distance-wise loss.

    Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation":
    :math:`\psi_D(x_i, x_j) = \frac{1}{\mu}\lVert x_i - x_j\rVert_2`, μ = mean distance
    over the off-diagonal pairs of the batch, and
    :math:`\mathcal{L} = \frac{1}{N^2}\sum_{i,j} \ell_\delta(\psi_D^s(i,j), \psi_D^t(i,j))`
    with the Huber loss :math:`\ell_\delta` (smooth L1, δ = 1), averaged over all N×N
    entries as in the reference code. Dividing by μ makes the loss invariant to the
    embeddings' scale, so student and teacher embeddings may live on different scales
    (their dimensions may differ too). Teacher detached.
    """
    psi_s = _normalised_distances(student_emb)
    psi_t = _normalised_distances(teacher_emb.detach())
    return F.smooth_l1_loss(psi_s, psi_t, beta=1.0)


def angle_cosines(emb: torch.Tensor) -> torch.Tensor:
    r"""Cosines of all angles formed by triplets of rows: (N, D) → (N, N, N).

    Entry [i, j, k] is :math:`\cos\angle x_i x_j x_k = \langle e_{ij}, e_{kj}\rangle`,
    :math:`e_{ij} = (x_i - x_j)/\lVert x_i - x_j\rVert_2`: the angle at vertex j.
    Degenerate triplets (i = j or k = j) have a zero vector and give 0.
    """
    unit = F.normalize(emb.unsqueeze(1) - emb.unsqueeze(0), p=2, dim=-1)  # unit[i, j] = e_ij
    return torch.einsum("ijd,kjd->ijk", unit, unit)


def rkd_angle_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    r"""RKD angle-wise loss.

    Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation":
    :math:`\psi_A(x_i, x_j, x_k) = \cos\angle x_i x_j x_k` and
    :math:`\mathcal{L} = \frac{1}{N^3}\sum_{i,j,k} \ell_\delta(\psi_A^s, \psi_A^t)`,
    Huber (smooth L1, δ = 1), averaged over all N×N×N triplets. Angles are
    scale-invariant by nature. Teacher detached.
    """
    return F.smooth_l1_loss(angle_cosines(student_emb), angle_cosines(teacher_emb.detach()), beta=1.0)
