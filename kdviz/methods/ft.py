"""Factor transfer: paraphraser and translator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdviz import losses
from kdviz.methods import _parts
from kdviz.methods.base import Hyperparam, Method, Phase, register


def conv_stack(channels: list[int], transpose: bool = False) -> nn.Sequential:
    """3x3 (transposed) convolutions that keep the spatial size, each followed by
    LeakyReLU(0.1), as in the authors' paraphraser and translator (their batch norms are
    commented out, so there are none here either)."""
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers = []
    for cin, cout in zip(channels, channels[1:]):
        layer = conv(cin, cout, 3, padding=1)
        # He initialisation for LeakyReLU: with PyTorch's default the signal fades through the
        # six layers of the autoencoder and SGD barely moves it in a one-epoch phase
        nn.init.kaiming_normal_(layer.weight, a=0.1, nonlinearity="leaky_relu")
        nn.init.zeros_(layer.bias)
        layers += [layer, nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """Convolutional autoencoder over the teacher's last feature map: C → C → k·C → k·C
    (the "teacher factor") and back."""

    def __init__(self, channels: int, factor_channels: int):
        super().__init__()
        self.encoder = conv_stack([channels, channels, factor_channels, factor_channels])
        self.decoder = conv_stack([factor_channels, factor_channels, channels, channels], transpose=True)

    def forward(self, x):
        return self.decoder(self.encoder(x))


@register
class FactorTransfer(Method):
    """Kim, Park & Kwak 2018, "Paraphrasing Complex Network: Network Compression via Factor Transfer".

    1. A paraphraser (conv autoencoder, factor channels k·C with k = 0.5) is trained in its own
       phase ("paraphraser", ``paraphraser_epochs``) to reconstruct the teacher's last stage map
       x, L_rec = ‖x − P(x)‖² as in the paper (mean over elements; the authors' code uses L1);
       the student is not trained there.
    2. The paraphraser is frozen; a translator (3 convs) on the student's last stage map is
       trained with the student: L = CE + β·‖F_s/‖F_s‖₂ − F_t/‖F_t‖₂‖_p / D, with F_t the
       paraphraser's encoding of the teacher map, F_s the translator's output, D the factor
       size per image and p = 1. Dividing by D is what the authors' code does (nn.L1Loss
       averages over elements), and β = 500 is their code's default (train_student.py
       ``--beta 500``): the released value is the one used here (the paper's own text could
       not be checked offline). A spatial mismatch is pooled to the smaller map."""

    name = "ft"
    title = "Factor transfer (Kim et al. 2018; β = 500 on the element-mean L1, as in the authors' code)"
    formula = (r"\min_P \|x_t - P(x_t)\|^2;\quad \mathcal{L} = \mathrm{CE} + \frac{\beta}{D}\left\|"
               r"\frac{F_s}{\|F_s\|_2} - \frac{F_t}{\|F_t\|_2}\right\|_1,\ F_t = \mathrm{enc}_P(x_t),\ "
               r"F_s = \mathrm{Tr}(x_s)")
    hyperparams = (
        Hyperparam("beta", 500.0, 0.0, 1e5, "β: weight of the factor term (500 in the authors' code)", log=True),
        Hyperparam("k", 0.5, 0.1, 2.0, "paraphrase rate: factor channels = k × teacher channels (0.5 in the paper)"),
        Hyperparam("paraphraser_epochs", 1, 1, 100, "epochs to train the paraphraser before the student", kind="int"),
        Hyperparam("p", 1, help="norm of the factor distance (1 in the paper)", kind="choice", choices=(1, 2)),
    )
    needs_features = True
    needs_spatial_features = True

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        s_channels = _parts.stage_shapes(student)[-1][0]
        t_channels = _parts.stage_shapes(teacher)[-1][0]
        factor_channels = max(1, round(self.params["k"] * t_channels))
        self.paraphraser = Paraphraser(t_channels, factor_channels)
        self.translator = conv_stack([s_channels, s_channels, factor_channels, factor_channels])

    def reconstruction(self, step):
        x = step.teacher_features.stages[-1]
        return {"reconstruction": F.mse_loss(self.paraphraser(x), x)}

    def phases(self):
        return [Phase("paraphraser", self.params["paraphraser_epochs"], list(self.paraphraser.parameters()),
                      self.reconstruction, train_student=False)]

    def losses(self, step):
        with torch.no_grad():  # the paraphraser is frozen once trained
            teacher_factor = self.paraphraser.encoder(step.teacher_features.stages[-1])
        student_factor = self.translator(step.student_features.stages[-1])
        student_factor, teacher_factor = losses.pool_to_common_size(student_factor, teacher_factor)
        size = student_factor[0].numel()
        distance = losses.factor_loss(student_factor, teacher_factor, p=self.params["p"])
        return {"factor": self.params["beta"] * distance / size}

    def trainable_parameters(self):
        return list(self.translator.parameters())
