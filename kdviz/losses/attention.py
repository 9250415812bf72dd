"""Attention transfer."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdviz.losses.pooling import pool_to_common_size


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


def attention_difference(student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2) -> torch.Tensor:
    r""":math:`Q_s - Q_t`, (N, H·W): the student's attention map minus the teacher's
    (Zagoruyko & Komodakis 2017), after pooling the larger map to the smaller spatial size
    (:func:`~kdviz.losses.pool_to_common_size`). The teacher is detached. Its squared mean is
    :func:`at_loss`; its L2 norm per image is the distance the attention page shows."""
    student_feature, teacher_feature = pool_to_common_size(student_feature, teacher_feature.detach())
    return attention_map(student_feature, p) - attention_map(teacher_feature, p)


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
    return attention_difference(student_feature, teacher_feature, p).pow(2).mean()
