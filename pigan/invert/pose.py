"""Start poses for pose fitting (`pigan invert --fit-pose`): a grid around the mean pose, or the pose an
encoder discriminator's position head predicts; and ``one_image``, the image check the fit shares."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checkpoints import load_discriminator
from ..common import UsageError
from ..model import curriculums as C
from ..model.render_options import RenderOptions

__all__ = ["one_image", "pose_grid", "discriminator_pose", "checkpoint_pose_head"]


def one_image(image, square: bool = False) -> torch.Tensor:
    """``image`` ([3, H, W] or [1, 3, H, W]) as [1, 3, H, W] float; a UsageError (a ValueError) otherwise."""
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise UsageError(f"image must be a tensor [3, H, W] or [1, 3, H, W], got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    if image.dim() == 4 and image.shape[0] != 1:
        raise UsageError(f"image must hold one image, got a batch of {image.shape[0]}")
    if square and image.shape[-1] != image.shape[-2]:
        raise UsageError(f"image must be square, got {tuple(image.shape[-2:])}")
    return image.reshape(1, *image.shape[-3:]).float()


def pose_grid(options: RenderOptions, yaws: int = 3, pitches: int = 1) -> list[tuple[float, float]]:
    """Start poses (pitch, yaw) for pose fitting: the mean pose and +-1 training stddev around it."""
    def axis(mean, std, n):
        return [mean] if n == 1 else [mean + std * (2 * i / (n - 1) - 1) for i in range(n)]
    return [(p, y) for p in axis(options.pitch, options.v_stddev, pitches)
            for y in axis(options.yaw, options.h_stddev, yaws)]


def discriminator_pose(discriminator, image: torch.Tensor, alpha: float = 1.0, size: int | None = None):
    """(pitch, yaw) in radians of ``image`` ([3, H, W] or [1, 3, H, W] in [-1, 1]) as predicted by
    an encoder discriminator's position head (CCSEncoderDiscriminator, ProgressiveEncoderDiscriminator).

    Training with pos_lambda > 0 regresses D's last two outputs on the (pitch, yaw) the generator
    rendered each fake at (the pose ``ImplicitGenerator3d.forward`` returns; an MSE in radians, see
    ``training.loss.identity_penalty``), so they read directly as a pose. ``alpha``: the fade-in of
    the checkpoint's training step; ``size``: the resolution D was trained at (the image is resized
    to it, area-averaged or bilinear)."""
    image = one_image(image)
    if size is not None and size != image.shape[-1]:
        mode = "area" if size < image.shape[-1] else "bilinear"
        image = F.interpolate(image, size=(size, size), mode=mode)
    param = next(discriminator.parameters())
    was_training = discriminator.training
    discriminator.eval()
    try:
        with torch.no_grad():
            out = discriminator(image.to(device=param.device, dtype=param.dtype), alpha)
    finally:
        discriminator.train(was_training)
    if not isinstance(out, tuple) or len(out) != 3 or out[2] is None or out[2].shape[-1] != 2:
        raise UsageError(f"{type(discriminator).__name__} has no position head (it must return "
                         f"(prediction, latent, position [B, 2]))")
    pitch, yaw = out[2][0].float().tolist()
    return pitch, yaw


def checkpoint_pose_head(path, ckpt: dict, device):
    """(discriminator, alpha, size) of a checkpoint whose curriculum trained D's position head
    (pos_lambda > 0), with the fade-in and resolution of its saved step; None otherwise."""
    config = ckpt.get("config") or {}
    if not config.get("pos_lambda", 0) > 0 or "discriminator" not in ckpt:
        return None
    d = load_discriminator(path, map_location=device)
    cur = C.int_keys(config)
    step = int(ckpt.get("step") or 0)
    meta = C.stage_metadata(cur, step)      # a finished run is saved in the empty end stage
    fade = meta.get("fade_steps", 10000)
    alpha = min(1.0, (step - C.last_upsample_step(cur, step)) / fade) if fade > 0 else 1.0
    size = meta.get("img_size")
    if size not in d.img_size_to_layer:
        return None
    return d, alpha, size
