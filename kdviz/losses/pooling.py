"""Bringing two feature maps to one spatial size (the one helper for it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pool_to_common_size(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the larger of two (N, C, H, W) maps to the smaller height and width
    (each dimension separately); maps already of one size, and vectors, pass through unchanged.
    Used where AT, FSP, FitNets, FT and recasting compare maps of nets with other resolutions."""
    if a.dim() != 4 or b.dim() != 4 or a.shape[-2:] == b.shape[-2:]:
        return a, b
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    pool = lambda t: t if tuple(t.shape[-2:]) == size else F.adaptive_avg_pool2d(t, size)  # noqa: E731
    return pool(a), pool(b)
