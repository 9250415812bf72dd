"""Label-only training and Hinton's knowledge distillation."""
from __future__ import annotations

from kdviz import losses
from kdviz.methods.base import Hyperparam, Method, register


@register
class Baseline(Method):
    """Cross-entropy on the true labels only: how a teacher is trained, and the
    student's reference point."""

    name = "baseline"
    title = "Baseline (labels only)"
    formula = r"\mathcal{L} = \mathrm{CE}(y, \mathrm{softmax}(z_s))"
    needs_teacher = False

    def losses(self, step):
        return {}


@register
class HintonKD(Method):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network":
    L = α·T²·KL(p_t^T ‖ p_s^T) + (1−α)·CE(y, p_s), with p^T = softmax(z/T).
    The T² keeps the soft term's gradients in scale as T changes (§2.1)."""

    name = "kd"
    title = "Knowledge distillation (Hinton, Vinyals & Dean 2015)"
    formula = (r"\mathcal{L} = \alpha\,T^2\,\mathrm{KL}\!\left(\mathrm{softmax}(z_t/T)\,\|\,"
               r"\mathrm{softmax}(z_s/T)\right) + (1-\alpha)\,\mathrm{CE}(y, \mathrm{softmax}(z_s))")
    hyperparams = (
        Hyperparam("T", 4.0, 0.5, 50.0, "temperature: higher T spreads the teacher's probability over wrong classes", log=True),
        Hyperparam("alpha", 0.9, 0.0, 1.0, "weight of the soft-target term; 1 − alpha goes to the true labels"),
    )

    def losses(self, step):
        soft = losses.kd_loss(step.student_logits, step.teacher_logits, self.params["T"])
        return {"kd": self.params["alpha"] * soft}

    def label_weight(self):
        return 1.0 - self.params["alpha"]
