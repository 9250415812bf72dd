"""Born-again networks: a net taught by an earlier generation of itself."""
from __future__ import annotations

from kdviz.methods.base import register
from kdviz.methods.kd import HintonKD, kd_hyperparams, kd_term


@register
class BornAgain(HintonKD):
    """Furlanello, Lipton, Tschannen, Itti & Anandkumar 2018, "Born-Again Neural Networks".

    Generation k+1 has the same architecture as generation k and learns from it:
    L = α·T²·KL(p_k^T ‖ p_{k+1}^T) + (1−α)·CE. The paper's BAN matches the teacher's
    outputs only (α = 1, T = 1: the default; KL and cross-entropy to the teacher have the
    same gradient); lower α adds the labels. As a single method it distils from the given
    teacher; :func:`kdviz.generations.born_again` runs the whole sequence of generations and
    evaluates their ensemble (the paper's BANE: mean of the generations' softmax outputs)."""

    name = "ban"
    title = "Born-again networks (Furlanello et al. 2018)"
    formula = (r"\mathcal{L}_{k+1} = \alpha\,T^2\,\mathrm{KL}\!\left(\mathrm{softmax}(z_k/T)\,\|\,"
               r"\mathrm{softmax}(z_{k+1}/T)\right) + (1-\alpha)\,\mathrm{CE};\quad "
               r"\hat p_{ens} = \frac{1}{K}\sum_k \mathrm{softmax}(z_k)")
    hyperparams = kd_hyperparams(1.0, 1.0, "temperature (1 in the paper)",
                                 "weight of teacher matching; 1 − alpha goes to the labels (1 in the paper)")

    def losses(self, step):
        return {"ban": kd_term(self.params, step)}
