"""FitNets: hints from a teacher's middle layer."""
from __future__ import annotations

from torch import nn

from kdviz import losses
from kdviz.methods import _parts
from kdviz.methods.base import Hyperparam, Method, MethodError, Phase, register
from kdviz.methods.kd import kd_hyperparams, kd_label_weight, kd_term


def make_regressor(student_shape: tuple, teacher_shape: tuple, kernel: int) -> nn.Module:
    """FitNets' regressor r from the guided (student) layer to the hint (teacher) layer's
    channels: a convolution for maps (the paper's convolutional regressor; "same" padding
    keeps the student's spatial size, pooling then settles any remaining mismatch),
    a linear layer for the vector stages of MLPs."""
    if len(student_shape) == 1:
        return nn.Linear(student_shape[0], teacher_shape[0])
    return nn.Conv2d(student_shape[0], teacher_shape[0], kernel, padding=kernel // 2, bias=False)


@register
class FitNet(Method):
    """Romero et al. 2015, "FitNets: Hints for Thin Deep Nets".

    A regressor r maps the student's *guided* layer v_g to the shape of the teacher's
    *hint* layer u_h, and L_hint = mean((r(v_g) − u_h)²) (the paper's ½‖u_h − r(v_g)‖²
    up to a constant). Spatial mismatch is settled by adaptive average pooling.

    ``stages=2`` is the paper's schedule: a first phase ("hint", ``hint_epochs``) trains
    only the student's layers up to the guided layer and the regressor on L_hint, then the
    main phase trains the whole student with KD (α·T²·KL + (1−α)·CE). ``stages=1`` is the
    common single-stage form: w·L_hint + CE, all at once.
    The paper's names are kept: the hint is the teacher's layer, the guided layer the student's."""

    name = "fitnet"
    title = "FitNets hints (Romero et al. 2015)"
    formula = (r"\mathcal{L}_{hint} = \mathrm{mean}\left(r(v_g) - u_h\right)^2;\quad"
               r"\text{2-stage: } \min_{W_{\le g},\,r} \mathcal{L}_{hint},\ \text{then } "
               r"\alpha T^2\mathrm{KL}(p_t^T\|p_s^T) + (1-\alpha)\mathrm{CE};\quad"
               r"\text{1-stage: } \mathrm{CE} + w\,\mathcal{L}_{hint}")
    hyperparams = (
        Hyperparam("stages", 2, help="2: hint pre-training then KD (the paper); 1: CE + w·hint together",
                   kind="choice", choices=(1, 2)),
        Hyperparam("hint_epochs", 1, 0, 100, "epochs of the hint phase (2-stage form)", kind="int"),
        Hyperparam("weight", 1.0, 0.0, 1e4, "w: weight of the hint term (1-stage form)", log=True),
        Hyperparam("guided_stage", -1, -1, 15, "student stage that is guided (-1 = middle)", kind="int"),
        Hyperparam("hint_stage", -1, -1, 15, "teacher stage that gives the hint (-1 = middle)", kind="int"),
        Hyperparam("regressor_kernel", 1, help="kernel of the conv regressor (the paper used a conv; 1 = 1x1)",
                   kind="choice", choices=(1, 3)),
        *kd_hyperparams(T_help="temperature of the KD stage (2-stage form)",
                        alpha_help="weight of the soft targets in the KD stage (2-stage form)"),
    )
    needs_features = True

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        s_shapes, t_shapes = _parts.stage_shapes(student), _parts.stage_shapes(teacher)
        if len(s_shapes[0]) != len(t_shapes[0]):
            raise MethodError(f"method 'fitnet' needs student and teacher stages of one kind (both conv maps or "
                              f"both MLP vectors); {student.spec.name!r} and {teacher.spec.name!r} differ")
        self.guided = _parts.resolve_stage(self.name, "student", self.params["guided_stage"], len(s_shapes))
        self.hint = _parts.resolve_stage(self.name, "teacher", self.params["hint_stage"], len(t_shapes))
        self.regressor = make_regressor(s_shapes[self.guided], t_shapes[self.hint], self.params["regressor_kernel"])
        # 2-stage: the hint phase asks for features itself; the KD phase needs only logits (cacheable)
        self.needs_features = self.params["stages"] == 1

    def hint_term(self, step):
        regressed = self.regressor(step.student_features.stages[self.guided])
        regressed, target = losses.pool_to_common_size(regressed, step.teacher_features.stages[self.hint])
        return losses.hint_loss(regressed, target)

    def phases(self):
        if self.params["stages"] == 1:
            return []
        parameters = [*_parts.parameters_up_to(self.student, self.guided), *self.regressor.parameters()]
        return [Phase("hint", self.params["hint_epochs"], parameters, lambda step: {"hint": self.hint_term(step)})]

    def losses(self, step):
        if self.params["stages"] == 1:
            return {"hint": self.params["weight"] * self.hint_term(step)}
        return {"fitnet_kd": kd_term(self.params, step)}

    def label_weight(self):
        return 1.0 if self.params["stages"] == 1 else kd_label_weight(self.params)

    def trainable_parameters(self):
        # the regressor only matters while hints are given: in the 2-stage form the main phase ignores it
        return list(self.regressor.parameters()) if self.params["stages"] == 1 else []
