"""Adversarial distillation: a discriminator tells teacher outputs from student outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdviz import losses
from kdviz.methods.base import Hyperparam, Method, register


def discriminator(in_features: int, hidden: int) -> nn.Sequential:
    """A small MLP giving one score per sample (a logit for GAN, a critic value for WGAN)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
        nn.Linear(hidden, 1),
    )


@register
class Adversarial(Method):
    """Adversarial KD (the seeds' "Knowledge Distillation and its Variations"; Xu, Hsu &
    Huang 2017, "Training Shallow and Thin Networks for Acceleration via Knowledge
    Distillation with Conditional Adversarial Networks").

    A discriminator D sees output vectors (logits, or softmax probabilities) and learns to
    tell the teacher's ("real") from the student's ("fake"); the student, the generator,
    learns to fool it while also fitting the labels:
    L_student = λ·CE + w·L_G(D(s)), and D is updated after every student step with its
    own Adam optimizer (it is not among the parameters the student's optimizer sees).

    - ``form="gan"``: sigmoid cross-entropy, L_D = −log σ(D(t)) − log(1 − σ(D(s))),
      non-saturating L_G = −log σ(D(s)) (Goodfellow et al. 2014).
    - ``form="wgan"``: a critic, L_D = D(s) − D(t), L_G = −D(s) (Arjovsky et al. 2017), kept
      1-Lipschitz by the gradient penalty λ_gp·(‖∇D‖ − 1)² (Gulrajani et al. 2017; the
      default, ``lipschitz="gp"``) or by clipping D's weights to ±c (``lipschitz="clip"``).
    - ``conditional``: D also sees the one-hot label (Xu et al. 2017); where labels are
      hidden, the teacher's predicted class stands in for it."""

    name = "adversarial"
    title = "Adversarial KD: GAN / WGAN-GP discriminator on outputs (Xu et al. 2017)"
    formula = (r"\mathcal{L}_D = -\log\sigma(D(z_t)) - \log(1-\sigma(D(z_s)))\ \text{or}\ D(z_s) - D(z_t)"
               r" + \lambda_{gp}(\|\nabla D\|-1)^2;\quad \mathcal{L}_S = \lambda\,\mathrm{CE}(y, z_s)"
               r" + w\left(-\log\sigma(D(z_s))\ \text{or}\ -D(z_s)\right)")
    hyperparams = (
        Hyperparam("form", "gan", help="gan: sigmoid cross-entropy; wgan: Wasserstein critic",
                   kind="choice", choices=("gan", "wgan")),
        Hyperparam("lipschitz", "gp", help="WGAN only: gp = gradient penalty (default), clip = weight clipping",
                   kind="choice", choices=("gp", "clip")),
        Hyperparam("inputs", "logits", help="what the discriminator sees: logits or softmax probabilities",
                   kind="choice", choices=("logits", "softmax")),
        Hyperparam("conditional", False, help="the discriminator also sees the one-hot label (Xu et al. 2017)",
                   kind="bool"),
        Hyperparam("weight", 1.0, 0.0, 100.0, "w: weight of the student's adversarial (generator) term"),
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
        self.discriminator = discriminator(in_features, self.params["hidden"])
        self._optimizer: torch.optim.Optimizer | None = None

    def d_inputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.softmax(logits, dim=1) if self.params["inputs"] == "softmax" else logits
        if self.params["conditional"]:
            x = torch.cat([x, F.one_hot(labels, x.shape[1]).to(x.dtype)], dim=1)
        return x

    def condition(self, step) -> torch.Tensor:
        return step.y if step.y is not None else step.teacher_logits.argmax(1)

    def losses(self, step):
        score = self.discriminator(self.d_inputs(step.student_logits, self.condition(step))).squeeze(1)
        generator = losses.gan_generator_loss(score) if self.params["form"] == "gan" else losses.wgan_generator_loss(score)
        return {"adversarial": self.params["weight"] * generator}

    def label_weight(self):
        return self.params["label_weight"]

    def trainable_parameters(self):
        return []  # the discriminator is the other player: its own optimizer, in auxiliary_step

    def discriminator_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:  # made lazily: after the loop has moved the method to its device
            # β1 = 0.5 as is usual for GAN discriminators (Radford et al. 2016; Gulrajani et al. use 0.5, 0.9)
            self._optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.params["d_lr"],
                                               betas=(0.5, 0.9))
        return self._optimizer

    def discriminator_loss(self, teacher_in: torch.Tensor, student_in: torch.Tensor) -> torch.Tensor:
        d_t = self.discriminator(teacher_in).squeeze(1)
        d_s = self.discriminator(student_in).squeeze(1)
        if self.params["form"] == "gan":
            return losses.gan_discriminator_loss(d_t, d_s)
        loss = losses.wgan_critic_loss(d_t, d_s)
        if self.params["lipschitz"] == "gp":
            critic = lambda x: self.discriminator(x).squeeze(1)  # noqa: E731
            loss = loss + self.params["gp_weight"] * losses.gradient_penalty(critic, teacher_in, student_in)
        return loss

    def auxiliary_step(self, step):
        labels = self.condition(step)
        teacher_in = self.d_inputs(step.teacher_logits.detach(), labels)
        student_in = self.d_inputs(step.student_logits.detach(), labels)
        optimizer = self.discriminator_optimizer()
        for _ in range(self.params["d_steps"]):
            loss = self.discriminator_loss(teacher_in, student_in)
            optimizer.zero_grad(set_to_none=True)  # also drops what the student's backward left in D
            loss.backward()
            optimizer.step()
            if self.params["form"] == "wgan" and self.params["lipschitz"] == "clip":
                with torch.no_grad():
                    for p in self.discriminator.parameters():
                        p.clamp_(-self.params["clip"], self.params["clip"])
        return {"discriminator": loss.item()}
