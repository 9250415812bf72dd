"""Flow of solution procedure (FSP) matrices."""
from __future__ import annotations

from kdviz import losses
from kdviz.methods import _parts
from kdviz.methods.base import Hyperparam, Method, Phase, register


@register
class FSP(Method):
    """Yim, Joo, Bae & Kim 2017, "A Gift from Knowledge Distillation: Fast Optimization,
    Network Minimization and Transfer Learning".

    G_i = F_i·F_{i+1}ᵀ/(h·w) between consecutive stages i, i+1 (the "flow" of the
    solution), L_FSP = mean_i mean((G_i^s − G_i^t)²). Where a student stage has another
    channel count than the teacher's, a learned 1×1 convolution (an adapter, not in the
    paper) maps the student's map to the teacher's channels first, so every pair of
    matrices has one shape; stages pair in order, so both nets need as many stages.

    ``stages=2`` is the paper's schedule: a first phase ("fsp", ``fsp_epochs``) trains the
    student (and adapters) on w·L_FSP alone, then the main phase trains on the labels
    (CE). ``stages=1``: CE + w·L_FSP together."""

    name = "fsp"
    title = "FSP matrices (Yim et al. 2017; 1×1 adapters where channels differ)"
    formula = (r"G_{ij}(F_1, F_2) = \frac{1}{hw}\sum_{s,t} F_1^{s,t,i} F_2^{s,t,j},\quad "
               r"\mathcal{L}_{FSP} = \frac{1}{K}\sum_{k} \mathrm{mean}\left(G_k^s - G_k^t\right)^2;\quad "
               r"\text{2-stage: } \min w\,\mathcal{L}_{FSP}\text{, then CE};\ \text{1-stage: CE} + w\,\mathcal{L}_{FSP}")
    hyperparams = (
        Hyperparam("stages", 2, help="2: FSP pre-training then labels (the paper); 1: CE + w·FSP together",
                   kind="choice", choices=(1, 2)),
        Hyperparam("fsp_epochs", 1, 0, 100, "epochs of the FSP phase (2-stage form)", kind="int"),
        Hyperparam("weight", 1.0, 0.0, 1e4, "w: weight of the FSP term", log=True),
    )
    needs_features = True
    needs_spatial_features = True

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        self.adapters = _parts.stage_adapters(self.name, student, teacher)
        # 2-stage: the FSP phase asks for features itself; the label phase needs none
        self.needs_features = self.params["stages"] == 1

    def fsp_term(self, step):
        adapted = [adapter(stage) for adapter, stage in zip(self.adapters, step.student_features.stages)]
        return self.params["weight"] * losses.fsp_loss(adapted, step.teacher_features.stages)

    def phases(self):
        if self.params["stages"] == 1:
            return []
        parameters = [*self.student.parameters(), *self.adapters.parameters()]
        return [Phase("fsp", self.params["fsp_epochs"], parameters, lambda step: {"fsp": self.fsp_term(step)})]

    def losses(self, step):
        return {"fsp": self.fsp_term(step)} if self.params["stages"] == 1 else {}

    def trainable_parameters(self):
        return list(self.adapters.parameters()) if self.params["stages"] == 1 else []
