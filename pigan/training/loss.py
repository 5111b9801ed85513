"""pi-GAN's losses: non-saturating softplus GAN losses, R1 on reals, the position / latent
(identity) loss on fakes, and the generator's top-k schedule. Every function returns float32 losses
whatever the autocast dtype of its inputs."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def identity_penalty(meta: dict, pred_latent, z, pred_pos, pos):
    """z_lambda * MSE(predicted z, z) + pos_lambda * MSE(predicted pose, pose); 0.0 when both are off."""
    pen = 0.0
    if meta.get("z_lambda", 0) > 0:
        pen = pen + F.mse_loss(pred_latent.float(), z.float()) * meta["z_lambda"]
    if meta.get("pos_lambda", 0) > 0:
        pen = pen + F.mse_loss(pred_pos.float(), pos.float()) * meta["pos_lambda"]
    return pen


def r1_penalty(real_preds, real, r1_lambda: float, scaler):
    """0.5 * r1_lambda * E ||d D(real) / d real||^2, the graph kept for the backward. Under a grad
    scaler the gradient is taken of the scaled sum and unscaled (fp16 would underflow otherwise)."""
    grad_real, = torch.autograd.grad(scaler.scale(real_preds.sum()), real, create_graph=True)
    grad_real = grad_real / scaler.get_scale()
    return 0.5 * r1_lambda * grad_real.float().pow(2).flatten(1).sum(1).mean()


def topk_fraction(meta: dict, step: int) -> float:
    """Fraction of the fakes the generator loss keeps (its best-scored ones): 0.99^(step / interval),
    floored at topk_v; 1 when the curriculum has no top-k schedule."""
    if "topk_interval" in meta and "topk_v" in meta:
        return max(0.99 ** (step / meta["topk_interval"]), meta["topk_v"])
    return 1.0


def discriminator_loss(real_preds, fake_preds, r1, identity):
    """softplus(D(fake)) + softplus(-D(real)), means over the batch, plus the penalties."""
    return F.softplus(fake_preds).mean() + F.softplus(-real_preds).mean() + r1 + identity


def generator_loss(fake_preds, fraction: float, identity):
    """softplus(-D(fake)) over the top ``fraction`` of the fakes by score, plus the identity loss."""
    k = math.ceil(fraction * fake_preds.shape[0])
    top = torch.topk(fake_preds, k, dim=0).values
    return F.softplus(-top).mean() + identity
