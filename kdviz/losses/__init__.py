"""Pure loss functions of knowledge distillation, one module per idea."""
from kdviz.losses.adversarial import (
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    logit_l1_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)
from kdviz.losses.attention import at_loss, attention_difference, attention_map
from kdviz.losses.factor import factor_loss
from kdviz.losses.fsp import fsp_loss, fsp_matrix, fsp_pair_losses
from kdviz.losses.hint import hint_loss
from kdviz.losses.kd import entropy, kd_loss, soften
from kdviz.losses.logits import logit_mse_loss
from kdviz.losses.pooling import pool_to_common_size
from kdviz.losses.rkd import angle_cosines, normalised_distances, pairwise_distances, rkd_angle_loss, rkd_distance_loss

__all__ = [
    "soften", "kd_loss", "entropy",
    "pool_to_common_size",
    "logit_mse_loss",
    "hint_loss",
    "attention_map", "attention_difference", "at_loss",
    "fsp_matrix", "fsp_pair_losses", "fsp_loss",
    "factor_loss",
    "pairwise_distances", "normalised_distances", "rkd_distance_loss", "angle_cosines", "rkd_angle_loss",
    "gan_discriminator_loss", "gan_generator_loss",
    "wgan_critic_loss", "wgan_generator_loss", "gradient_penalty", "logit_l1_loss",
]
