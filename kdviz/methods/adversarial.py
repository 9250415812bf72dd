"""Adversarial distillation: a discriminator on output vectors plays against the student.

Xu, Hsu & Huang (2017), "Training Shallow and Thin Networks for Acceleration via Knowledge
Distillation with Conditional Adversarial Networks" (arXiv 1709.00513; v1 "Learning Loss for
Knowledge Distillation with Conditional Adversarial Networks"), is the default form; the
plain GAN and WGAN forms stay as options. The losses are the pure functions of
:mod:`kdviz.losses.adversarial`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdviz import losses
from kdviz.methods.base import Hyperparam, Method, register
from kdviz.optim import Adam


class Discriminator(nn.Module):
    """A small MLP on an output vector (optionally with the one-hot class beside it) with two
    heads: one real/fake score per sample and, for Xu et al.'s form, ``classes`` class logits."""

    def __init__(self, in_features: int, hidden: int, classes: int = 0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        self.score = nn.Linear(hidden, 1)
        self.classify = nn.Linear(hidden, classes) if classes else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.body(x)
        return self.score(h).squeeze(1), (self.classify(h) if self.classify is not None else None)


@register
class Adversarial(Method):
    r"""Adversarial KD. The student is the generator, the teacher's logits are the real data.

    **Xu et al. (2017), ``form="xu"`` (default).** Their §3 learns the distillation loss with
    a *conditional* adversarial network on logits, with one more term for each player:

    - the discriminator :math:`D(z, y)` sees a logit vector :math:`z` and the one-hot class
      :math:`y` of the image (the condition; the teacher's predicted class where labels are
      hidden), and has two heads: a real/fake score :math:`D_{adv}` and class logits
      :math:`D_{cls}`;
    - adversarial objective (GAN, teacher = real):
      :math:`\mathcal{L}_{GAN} = \mathbb{E}\log D_{adv}(t(x), y) + \mathbb{E}\log(1 - D_{adv}(s(x), y))`,
      maximised by D, while the student minimises the non-saturating
      :math:`-\mathbb{E}\log D_{adv}(s(x), y)`;
    - the student's extra term, sample-level knowledge: :math:`\mathcal{L}_{L1} = \mathbb{E}\lVert t(x) - s(x)\rVert_1`
      (:func:`kdviz.losses.logit_l1_loss`), so each image's logits follow the teacher's, not just
      their distribution;
    - the discriminator's extra term, category-level knowledge: D's class head learns the class
      from the teacher's logits, :math:`\mathcal{L}_{DS} = \mathrm{CE}(y, D_{cls}(t(x)))`, and the student
      is asked to produce logits that head classifies right, :math:`\mathrm{CE}(y, D_{cls}(s(x)))`
      (an auxiliary-classifier discriminator, Odena et al. 2017).

    Student: :math:`\lambda\,\mathrm{CE}(y, s) + w\,(-\log D_{adv}(s, y)) + \lambda_{L1}\,\mathcal{L}_{L1}
    + \lambda_{DS}\,\mathrm{CE}(y, D_{cls}(s))`; discriminator: :math:`-\mathcal{L}_{GAN} + \lambda_{DS}\,\mathcal{L}_{DS}`.
    Schedule: alternating updates, ``d_steps`` discriminator steps (Adam, β = (0.5, 0.9)) after
    every student step, the student with the run's own optimizer and schedule.

    (The copies of the paper this project could reach held its abstract and introduction only;
    the terms above are the method as §3 describes it, written out here rather than quoted by
    equation number.)

    **Plain forms** (``form="gan"`` / ``"wgan"``): only the adversarial term beside the labels.
    GAN: sigmoid cross-entropy, :math:`\mathcal{L}_D = -\log\sigma(D(t)) - \log(1 - \sigma(D(s)))`,
    non-saturating :math:`\mathcal{L}_G = -\log\sigma(D(s))` (Goodfellow et al. 2014). WGAN: a critic,
    :math:`\mathcal{L}_D = D(s) - D(t)`, :math:`\mathcal{L}_G = -D(s)` (Arjovsky et al. 2017), kept
    1-Lipschitz by the gradient penalty :math:`\lambda_{gp}(\lVert\nabla D\rVert - 1)^2` (Gulrajani
    et al. 2017; ``lipschitz="gp"``) or by clipping D's weights to ±c (``lipschitz="clip"``).
    ``conditional`` gives them the class condition too."""

    name = "adversarial"
    title = "Adversarial KD: conditional discriminator on logits (Xu et al. 2017), or plain GAN / WGAN-GP"
    formula = (r"\mathcal{L}_S = \lambda\,\mathrm{CE}(y, z_s) - w\log D_{adv}(z_s, y) + \lambda_{L1}\lVert z_t - z_s\rVert_1"
               r" + \lambda_{DS}\,\mathrm{CE}(y, D_{cls}(z_s));\quad"
               r"\mathcal{L}_D = -\log D_{adv}(z_t, y) - \log(1 - D_{adv}(z_s, y)) + \lambda_{DS}\,\mathrm{CE}(y, D_{cls}(z_t))")
    hyperparams = (
        Hyperparam("form", "xu", help="xu: Xu et al.'s conditional D with the L1 and class terms; gan: plain sigmoid "
                   "cross-entropy; wgan: Wasserstein critic", kind="choice", choices=("xu", "gan", "wgan")),
        Hyperparam("lipschitz", "gp", help="WGAN only: gp = gradient penalty (default), clip = weight clipping",
                   kind="choice", choices=("gp", "clip")),
        Hyperparam("inputs", "logits", help="what the discriminator sees: logits or softmax probabilities",
                   kind="choice", choices=("logits", "softmax")),
        Hyperparam("conditional", True, help="the discriminator also sees the one-hot class (Xu et al. 2017)",
                   kind="bool"),
        Hyperparam("weight", 1.0, 0.0, 100.0, "w: weight of the student's adversarial (generator) term"),
        Hyperparam("l1_weight", 1.0, 0.0, 100.0, "λ_L1 (form xu): weight of the L1 distance to the teacher's logits"),
        Hyperparam("class_weight", 1.0, 0.0, 100.0, "λ_DS (form xu): weight of the discriminator's class terms"),
        Hyperparam("label_weight", 1.0, 0.0, 10.0, "λ: weight of cross-entropy on the true labels"),
        Hyperparam("d_lr", 1e-4, 1e-6, 1e-1, "learning rate of the discriminator's Adam", log=True),
        Hyperparam("d_steps", 1, 1, 10, "discriminator updates per student step", kind="int"),
        Hyperparam("hidden", 64, 8, 1024, "width of the discriminator's two hidden layers", kind="int"),
        Hyperparam("gp_weight", 10.0, 0.0, 100.0, "λ_gp: weight of the gradient penalty (10 in Gulrajani et al.)"),
        Hyperparam("clip", 0.01, 1e-4, 1.0, "c: weight-clipping bound (0.01 in Arjovsky et al.)", log=True),
    )

    def __init__(self, student, teacher=None, **params):
        super().__init__(student, teacher, **params)
        classes = student.spec.num_classes
        in_features = classes * (2 if self.params["conditional"] else 1)
        self.xu = self.params["form"] == "xu"
        self.discriminator = Discriminator(in_features, self.params["hidden"], classes if self.xu else 0)
        self._optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ inputs
    def d_inputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.softmax(logits, dim=1) if self.params["inputs"] == "softmax" else logits
        if self.params["conditional"]:
            x = torch.cat([x, F.one_hot(labels, x.shape[1]).to(x.dtype)], dim=1)
        return x

    def condition(self, step) -> torch.Tensor:
        return step.y if step.y is not None else step.teacher_logits.argmax(1)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[0]

    # ------------------------------------------------------------------ the student's terms
    def losses(self, step):
        labels = self.condition(step)
        score, classes = self.discriminator(self.d_inputs(step.student_logits, labels))
        generator = losses.wgan_generator_loss(score) if self.params["form"] == "wgan" else losses.gan_generator_loss(score)
        terms = {"adversarial": self.params["weight"] * generator}
        if self.xu:
            terms["l1"] = self.params["l1_weight"] * losses.logit_l1_loss(step.student_logits, step.teacher_logits)
            terms["d_class"] = self.params["class_weight"] * F.cross_entropy(classes, labels)
        return terms

    def label_weight(self):
        return self.params["label_weight"]

    def trainable_parameters(self):
        return []  # the discriminator is the other player: its own optimizer, in auxiliary_step

    # ------------------------------------------------------------------ the discriminator's step
    def discriminator_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:  # made lazily: after the loop has moved the method to its device
            # β1 = 0.5 as is usual for GAN discriminators (Radford et al. 2016; Gulrajani et al. use 0.5, 0.9)
            self._optimizer = Adam(self.discriminator.parameters(), lr=self.params["d_lr"], betas=(0.5, 0.9))
        return self._optimizer

    def discriminator_loss(self, teacher_in: torch.Tensor, student_in: torch.Tensor,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
        d_t, class_t = self.discriminator(teacher_in)
        d_s, _ = self.discriminator(student_in)
        if self.params["form"] == "wgan":
            loss = losses.wgan_critic_loss(d_t, d_s)
            if self.params["lipschitz"] == "gp":
                loss = loss + self.params["gp_weight"] * losses.gradient_penalty(self._score, teacher_in, student_in)
            return loss
        loss = losses.gan_discriminator_loss(d_t, d_s)
        if self.xu and labels is not None:
            loss = loss + self.params["class_weight"] * F.cross_entropy(class_t, labels)
        return loss

    def auxiliary_step(self, step):
        labels = self.condition(step)
        teacher_in = self.d_inputs(step.teacher_logits.detach(), labels)
        student_in = self.d_inputs(step.student_logits.detach(), labels)
        optimizer = self.discriminator_optimizer()
        for _ in range(self.params["d_steps"]):
            loss = self.discriminator_loss(teacher_in, student_in, labels)
            optimizer.zero_grad(set_to_none=True)  # also drops what the student's backward left in D
            loss.backward()
            optimizer.step()
            if self.params["form"] == "wgan" and self.params["lipschitz"] == "clip":
                with torch.no_grad():
                    for p in self.discriminator.parameters():
                        p.clamp_(-self.params["clip"], self.params["clip"])
        return {"discriminator": loss.item()}
