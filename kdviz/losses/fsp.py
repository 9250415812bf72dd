"""Flow of solution procedure (FSP) matrices."""
from __future__ import annotations

from typing import Sequence

import torch

from kdviz.losses.pooling import pool_to_common_size


def fsp_matrix(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    r"""Gram matrix between the channels of two feature maps ("flow" between layers).

    Yim, Joo, Bae & Kim (2017), "A Gift from Knowledge Distillation: Fast
    Optimization, Network Minimization and Transfer Learning":
    :math:`G_{ij} = \frac{1}{h w}\sum_{s=1}^{h}\sum_{t=1}^{w} F^1_{s,t,i}\,F^2_{s,t,j}`.
    Inputs (N, C1, H, W) and (N, C2, H', W'); the larger map is adaptive-average-pooled
    to the smaller spatial size first. Output (N, C1, C2).
    """
    first, second = pool_to_common_size(first, second)
    return torch.einsum("nihw,njhw->nij", first, second) / (first.shape[-2] * first.shape[-1])


def fsp_pair_losses(student_features: Sequence[torch.Tensor],
                    teacher_features: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    r"""Per pair of consecutive stages (i, i+1), :math:`\mathrm{mean}\big((G^s_i - G^t_i)^2\big)`
    over the batch and the matrix entries (Yim et al. 2017); ``None`` for a pair whose student
    and teacher matrices differ in shape. Pairs up to the shorter list; the teacher is detached."""
    out = []
    for i in range(min(len(student_features), len(teacher_features)) - 1):
        g_s = fsp_matrix(student_features[i], student_features[i + 1])
        g_t = fsp_matrix(teacher_features[i].detach(), teacher_features[i + 1].detach())
        out.append(None if g_s.shape != g_t.shape else (g_s - g_t).pow(2).mean())
    return out


def fsp_loss(student_features: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Match the FSP matrices of consecutive stages.

    Yim et al. (2017), "A Gift from Knowledge Distillation":
    :math:`\mathcal{L} = \frac{1}{K}\sum_{i=1}^{K} \mathrm{mean}\big((G^s_i - G^t_i)^2\big)`,
    where :math:`G_i` = fsp_matrix(stage i, stage i+1) and K = (number of stages − 1).
    (The paper weights every pair equally, λ_i = 1/K, and sums squared entries; the
    per-pair mean only rescales.) Student and teacher must have the same channel
    counts at each stage, since the matrices are compared entry by entry.
    The teacher is detached.
    """
    if len(student_features) != len(teacher_features):
        raise ValueError(f"fsp_loss needs as many student as teacher stages, got "
                         f"{len(student_features)} and {len(teacher_features)}")
    if len(student_features) < 2:
        raise ValueError("fsp_loss needs at least two stages to form a pair")
    pair_losses = fsp_pair_losses(student_features, teacher_features)
    for i, loss in enumerate(pair_losses):
        if loss is None:
            g_s = fsp_matrix(student_features[i], student_features[i + 1])
            g_t = fsp_matrix(teacher_features[i], teacher_features[i + 1])
            raise ValueError(f"FSP pair {i} (stages {i} and {i + 1}): student matrix shape "
                             f"{tuple(g_s.shape)} != teacher matrix shape {tuple(g_t.shape)}")
    return torch.stack(pair_losses).mean()
