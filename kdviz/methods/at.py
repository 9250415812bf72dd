"""Attention transfer."""
from __future__ import annotations

from kdviz import losses
from kdviz.methods import _parts
from kdviz.methods.base import Hyperparam, Method, register


@register
class AttentionTransfer(Method):
    """Zagoruyko & Komodakis 2017, "Paying More Attention to Attention" (activation-based AT).

    Q = vec(mean_c |A_c|^p) / ‖·‖₂ per stage, and L = CE + β·Σ_j mean((Q_s^j − Q_t^j)²)
    over the stage outputs paired in order (student stage j with teacher stage j, so both
    nets need as many stages; a spatial mismatch is pooled away by ``at_loss``).
    The paper writes β/2·‖Q_s − Q_t‖_p with β = 10³ divided by the attention map's size and
    the batch size; β = 1000 on the mean of squares (which does that division) is the
    reference code's scaling of that β/2 term (szagoruyko/attention-transfer), used here."""

    name = "at"
    title = "Attention transfer (Zagoruyko & Komodakis 2017; β = 1000, the reference code's scaling of the paper's β/2)"
    formula = (r"Q = \frac{\mathrm{vec}\left(\frac{1}{C}\sum_c |A_c|^p\right)}{\left\|\mathrm{vec}"
               r"\left(\frac{1}{C}\sum_c |A_c|^p\right)\right\|_2},\quad "
               r"\mathcal{L} = \mathrm{CE} + \beta \sum_j \mathrm{mean}\left(Q_s^j - Q_t^j\right)^2")
    hyperparams = (
        Hyperparam("beta", 1000.0, 0.0, 1e5, "β: weight of the attention term (1000 as in the reference code)", log=True),
        Hyperparam("p", 2.0, 1.0, 4.0, "power of |activation| in the attention map (the paper uses 2)"),
    )
    needs_features = True
    needs_spatial_features = True

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        _parts.require_same_stage_count(self.name, _parts.stage_shapes(student), _parts.stage_shapes(teacher))

    def losses(self, step):
        pairs = zip(step.student_features.stages, step.teacher_features.stages)
        total = sum(losses.at_loss(s, t, self.params["p"]) for s, t in pairs)
        return {"at": self.params["beta"] * total}
