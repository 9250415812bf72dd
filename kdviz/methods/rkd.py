"""Relational knowledge distillation."""
from __future__ import annotations

from kdviz import losses
from kdviz.methods.base import Hyperparam, Method, MethodError, register


@register
class RelationalKD(Method):
    """Park, Kim, Lu & Cho 2019, "Relational Knowledge Distillation".

    On the penultimate embeddings of a batch, the student copies the teacher's structure
    rather than its outputs: L = CE + λ_D·L_dist + λ_A·L_angle, with distances normalised
    by their batch mean and angles ∠(x_i, x_j, x_k), each compared by the Huber loss.
    λ_D = 25 and λ_A = 50 as in the paper; either can be 0 to use the other alone.
    Embedding sizes of student and teacher may differ (only relations are compared)."""

    name = "rkd"
    title = "Relational KD: distances and angles (Park et al. 2019)"
    formula = (r"\mathcal{L} = \mathrm{CE} + \lambda_D \sum_{i,j} \ell_\delta\!\left(\frac{\|t_i - t_j\|}{\mu_t},"
               r" \frac{\|s_i - s_j\|}{\mu_s}\right) + \lambda_A \sum_{i,j,k} \ell_\delta\!\left("
               r"\cos\angle t_i t_j t_k, \cos\angle s_i s_j s_k\right)")
    hyperparams = (
        Hyperparam("distance_weight", 25.0, 0.0, 1000.0, "λ_D: weight of the distance term (25 in the paper; 0 = off)"),
        Hyperparam("angle_weight", 50.0, 0.0, 1000.0, "λ_A: weight of the angle term (50 in the paper; 0 = off)"),
    )
    needs_features = True

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        if self.params["distance_weight"] == 0 and self.params["angle_weight"] == 0:
            raise MethodError("method 'rkd' needs distance_weight or angle_weight above 0")

    def losses(self, step):
        s, t = step.student_features.embedding, step.teacher_features.embedding
        terms = {}
        if self.params["distance_weight"] > 0:
            terms["rkd_distance"] = self.params["distance_weight"] * losses.rkd_distance_loss(s, t)
        if self.params["angle_weight"] > 0:
            terms["rkd_angle"] = self.params["angle_weight"] * losses.rkd_angle_loss(s, t)
        return terms
