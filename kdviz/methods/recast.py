"""Network recasting: block-by-block imitation, then fine-tuning."""
from __future__ import annotations

import torch.nn.functional as F

from kdviz import losses
from kdviz.methods import _parts
from kdviz.methods.base import Hyperparam, Method, Phase, register
from kdviz.methods.kd import kd_hyperparams, kd_label_weight, kd_term


@register
class Recast(Method):
    """Yu, Kang & Choi 2019, "Network Recasting: A Universal Method for Network
    Architecture Transformation" (AAAI).

    The student replaces the teacher block by block: phase i ("recast block i",
    ``block_epochs``) trains only the student's stage i (and a 1×1 adapter where its
    channel count differs from the teacher's) so that its output matches the teacher's
    stage-i output, L_i = mean((a_i(S_i) − T_i)²), larger maps pooled to the smaller.
    Choice made here: the input of student stage i is the student's own, already recast
    prefix, not the teacher's activation, so block i learns to work with the blocks
    before it and the two nets may differ in width between blocks. Stages pair in order,
    so both nets need as many stages. Then the whole student, head included, is fine-tuned
    in the main phase with KD (α·T²·KL + (1−α)·CE) or with CE alone."""

    name = "recast"
    title = "Network recasting (Yu et al. 2019): block-wise MSE, then fine-tuning"
    formula = (r"\text{phase } i:\ \min_{W_i,\,a_i} \mathrm{mean}\left(a_i(S_i(S_{<i}(x))) - T_i(x)\right)^2;"
               r"\quad \text{then } \alpha T^2 \mathrm{KL}(p_t^T\|p_s^T) + (1-\alpha)\mathrm{CE}\ \text{or CE}")
    hyperparams = (
        Hyperparam("block_epochs", 1, 0, 100, "epochs of each block's recasting phase", kind="int"),
        Hyperparam("finetune", "kd", help="main phase: kd (soft targets + labels) or ce (labels only)",
                   kind="choice", choices=("kd", "ce")),
        *kd_hyperparams(T_help="temperature of the KD fine-tuning",
                        alpha_help="weight of the soft targets in the KD fine-tuning"),
    )
    needs_features = False  # only the block phases need features; they ask for them themselves
    needs_spatial_features = True

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        self.adapters = _parts.stage_adapters(self.name, student, teacher)

    def block_loss(self, index: int):
        def losses_of(step):
            student_out = self.adapters[index](step.student_features.stages[index])
            student_out, target = losses.pool_to_common_size(student_out, step.teacher_features.stages[index])
            return {f"recast{index + 1}": F.mse_loss(student_out, target.detach())}

        return losses_of

    def phases(self):
        groups = _parts.stage_parameter_groups(self.student)
        return [Phase(f"recast block {i + 1}", self.params["block_epochs"],
                      [*group, *self.adapters[i].parameters()], self.block_loss(i))
                for i, group in enumerate(groups)]

    def losses(self, step):
        if self.params["finetune"] == "ce":
            return {}
        return {"recast_kd": kd_term(self.params, step)}

    def label_weight(self):
        return 1.0 if self.params["finetune"] == "ce" else kd_label_weight(self.params)

    def trainable_parameters(self):
        return []  # the adapters only serve the block phases
