"""Attention transfer."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_map(feature: torch.Tensor, p: float = 2) -> torch.Tensor:
    r"""Activation-based spatial attention map, flattened and L2-normalised.

    Zagoruyko & Komodakis (2017), "Paying More Attention to Attention: Improving the
    Performance of Convolutional Neural Networks via Attention Transfer":
    :math:`Q = \mathrm{vec}\big(\frac{1}{C}\sum_c |A_c|^p\big) / \lVert\cdot\rVert_2`.
    Input (N, C, H, W), output (N, H·W) with unit-norm rows. Averaging over channels
    makes maps of networks with different widths comparable.
    """
    if feature.dim() != 4:
        raise ValueError(f"attention_map expects a 4-D (N, C, H, W) feature map, "
                         f"got shape {tuple(feature.shape)}")
    q = feature.abs().pow(p).mean(dim=1).flatten(start_dim=1)
    return F.normalize(q, p=2, dim=1)


def at_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2) -> torch.Tensor:
    r"""Attention-transfer loss between one student and one teacher feature map.

    Zagoruyko & Komodakis (2017), "Paying More Attention to Attention":
    :math:`\mathcal{L} = \frac{1}{N\,HW}\sum_{n,j} (Q^s_{nj} - Q^t_{nj})^2`,
    Q = :func:`attention_map`. The paper writes
    :math:`\frac{\beta}{2}\lVert Q_s/\lVert Q_s\rVert - Q_t/\lVert Q_t\rVert\rVert_p`
    with β = 10³ divided by the map size and batch size; the reference code takes
    this mean of squares (which supplies that division) and multiplies by β = 1000.
    No β here: the method applies it.

    If the spatial sizes differ, the larger map is adaptive-average-pooled to the
    smaller size before Q is computed. The teacher is detached.
    """
    size = (min(student_feature.shape[-2], teacher_feature.shape[-2]),
            min(student_feature.shape[-1], teacher_feature.shape[-1]))
    student_feature = _pool_to(student_feature, size)
    teacher_feature = _pool_to(teacher_feature.detach(), size)
    return (attention_map(student_feature, p) - attention_map(teacher_feature, p)).pow(2).mean()


def _pool_to(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return feature if tuple(feature.shape[-2:]) == size else F.adaptive_avg_pool2d(feature, size)
