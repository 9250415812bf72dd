"""Label-only training and Hinton's knowledge distillation."""
from __future__ import annotations

from kdviz import losses
from kdviz.methods.base import Hyperparam, Method, register


def kd_hyperparams(T: float = 4.0, alpha: float = 0.9, T_help: str = "", alpha_help: str = "",
                   ) -> tuple[Hyperparam, Hyperparam]:
    """The two knobs of Hinton's soft-target term, T and α, with their valid ranges; a method
    that ends with a KD stage (FitNets, recasting, born-again) declares them through this."""
    return (Hyperparam("T", T, 0.5, 50.0, T_help or "temperature: higher T spreads the teacher's probability "
                                                    "over wrong classes", log=True),
            Hyperparam("alpha", alpha, 0.0, 1.0, alpha_help or "weight of the soft-target term; 1 − alpha goes "
                                                               "to the true labels"))


def kd_term(params: dict, step):
    """α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) for one batch (Hinton, Vinyals & Dean 2015),
    with T and α from a method's ``params``; the labels get 1 − α (:func:`kd_label_weight`)."""
    return params["alpha"] * losses.kd_loss(step.student_logits, step.teacher_logits, params["T"])


def kd_label_weight(params: dict) -> float:
    return 1.0 - params["alpha"]


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
    hyperparams = kd_hyperparams()

    def losses(self, step):
        return {"kd": kd_term(self.params, step)}

    def label_weight(self):
        return kd_label_weight(self.params)
