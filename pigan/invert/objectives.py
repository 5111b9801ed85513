"""What an inversion minimises: pi-GAN's pixel MSE, or FENeRF's weighted sum of a pixel MSE and an MSE
between the rendered semantic planes and the target label map's planes; and the checks of a target
label map against a generator.

An objective is called with ``generator.render``'s dict (pixels [1, 3, H, W] in [-1, 1]; a semantic
generator's ``semantic`` [1, K, H, W], its composited logits x2-1, and ``opacity``) and returns
(loss, {name: value}): the loss a scalar tensor, the values scalar tensors (the parts of the loss, for
the trace).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common import UsageError
from ..model.fenerf import label_planes

__all__ = ["PixelObjective", "SemanticObjective", "check_mask", "FENERF_IMAGE_WEIGHT", "FENERF_SEMANTIC_WEIGHT",
           "FENERF_OFFSET_NORM"]

# FENeRF's inversion of a portrait and its mask (its README's command for inverse_render_double_semantic.py):
# MSE on the semantic planes x1, MSE on the pixels x0.2 (plus LPIPS x1, which needs weights this project
# does not ship), and x1 the sum over the four offset blocks (geometry / appearance frequencies / phase
# shifts) of each block's mean square (its --latent_normalize). Its editing step keeps the semantic term
# and the offset norm and drops the pixel terms.
FENERF_IMAGE_WEIGHT = 0.2
FENERF_SEMANTIC_WEIGHT = 1.0
FENERF_OFFSET_NORM = 1.0


class PixelObjective:
    """pi-GAN's inversion loss: the MSE between the render's pixels and ``target`` [1, 3, H, W]."""

    def __init__(self, target: torch.Tensor):
        self.target = target

    def __call__(self, out: dict):
        mse = F.mse_loss(out["pixels"].float(), self.target)
        return mse, {"mse": mse}


class SemanticObjective:
    """FENeRF's loss: ``image_weight`` x MSE(pixels, ``image``) + ``semantic_weight`` x MSE(semantic
    planes, ``label_planes(labels, K)``), the planes of the target label map ``labels`` [1, H, W] (0 the
    background, 1..K the classes) in {-1, 1}, as FENeRF encodes a real mask. ``image`` may be None when
    ``image_weight`` is 0 (editing). The values: "mse" (pixels; absent without an image),
    "semantic_mse"."""

    def __init__(self, image: torch.Tensor | None, labels: torch.Tensor, num_classes: int,
                 image_weight: float = FENERF_IMAGE_WEIGHT, semantic_weight: float = FENERF_SEMANTIC_WEIGHT):
        if image is None and image_weight:
            raise ValueError("image_weight > 0 needs a target image")
        self.image, self.image_weight, self.semantic_weight = image, float(image_weight), float(semantic_weight)
        self.labels = labels
        self.planes = label_planes(labels, num_classes)                               # [1, K, H, W]

    def __call__(self, out: dict):
        sem = F.mse_loss(out["semantic"].float(), self.planes)
        parts = {"semantic_mse": sem}
        loss = self.semantic_weight * sem
        if self.image is not None:
            parts["mse"] = F.mse_loss(out["pixels"].float(), self.image)
            loss = loss + self.image_weight * parts["mse"]
        return loss, parts


def check_mask(mask, generator, size: int | None = None, name: str = "mask") -> torch.Tensor:
    """``mask`` (an integer label map [H, W] or [1, H, W]) as int64 [1, H, W], after checking that
    ``generator`` renders semantic maps, that the mask is ``size`` x ``size`` when ``size`` is given and
    that its classes lie in 0..K (K = generator.num_classes; 0 the background). A UsageError naming
    ``name`` otherwise."""
    k = getattr(generator, "num_classes", None)
    if not k:
        raise UsageError(f"a {name} needs a semantic (FENeRF) generator, one that renders part labels; "
                         f"{type(generator).__name__} does not")
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3) or (mask.dim() == 3 and mask.shape[0] != 1):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise UsageError(f"{name} must be a label map [H, W] or [1, H, W], got {got}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex or mask.dtype == torch.bool:
        raise UsageError(f"{name} must hold integer class indices, got dtype {mask.dtype}")
    mask = mask.reshape(1, *mask.shape[-2:]).long()
    if size is not None and tuple(mask.shape[-2:]) != (size, size):
        raise UsageError(f"{name} is {mask.shape[-1]}x{mask.shape[-2]} pixels; the image is fitted at {size}x{size}")
    if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) > k):
        raise UsageError(f"{name} holds class indices {int(mask.min())}..{int(mask.max())}, but the generator "
                         f"has {k} classes besides the background: expected values in 0..{k}")
    return mask
