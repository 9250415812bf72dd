"""FitNets hint loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def hint_loss(student_feature_regressed: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    r"""FitNets hint loss: mean squared error between a regressed student feature
    and the teacher's hint feature.

    Romero, Ballas, Kahou, Chassang, Gatta & Bengio (2015), "FitNets: Hints for
    Thin Deep Nets": :math:`\mathcal{L} = \tfrac{1}{2}\lVert u_h - r(v_g)\rVert^2`;
    here averaged over all elements, :math:`\mathrm{mean}\big((r(v_g) - u_h)^2\big)`.
    The regressor r (which maps the thinner student feature to the teacher's shape)
    is a trainable layer and belongs to the method, not to this function.
    Teacher detached.
    """
    if student_feature_regressed.shape != teacher_feature.shape:
        raise ValueError(f"hint shapes differ: regressed student {tuple(student_feature_regressed.shape)}, "
                         f"teacher {tuple(teacher_feature.shape)}; the regressor must map to the teacher's shape")
    return F.mse_loss(student_feature_regressed, teacher_feature.detach())
