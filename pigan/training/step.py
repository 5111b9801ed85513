"""One optimiser step over ``batch_split`` sub-batches, shared by the discriminator and the generator:
accumulate the averaged sub-batch losses, unscale (AMP), clip in pi-GAN's scale, step. Also the
precision choice."""
from __future__ import annotations

from contextlib import nullcontext

import torch


def pick_precision(device: torch.device, precision: str):
    """The autocast dtype for ``--precision`` on ``device``; None for fp32 (always on the CPU)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, amp_dtype):
    if amp_dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=amp_dtype)


def pigan_scale(split: int, summed_in_pigan: bool) -> int:
    """How many times our gradient pi-GAN's is. We always average the sub-batch losses (the update
    does not depend on batch_split). pi-GAN sums its generator's sub-batch losses, so its gradient
    is ``split`` times ours; its discriminator loss is one mean over the whole batch, which our
    averaged sub-batch means equal, so there the gradients are the same."""
    return split if summed_in_pigan else 1


def clip_threshold(grad_clip: float, split: int, summed_in_pigan: bool) -> float:
    """The norm to clip our gradient at so that clipping engages exactly when pi-GAN's does and the
    clipped update is pi-GAN's: ``grad_clip`` in pi-GAN's scale, brought to ours."""
    return grad_clip / pigan_scale(split, summed_in_pigan)


def accumulate_and_step(loss_fn, split: int, optimizer, params, scaler, grad_clip: float, ddp=None, *,
                        summed_in_pigan: bool):
    """``loss_fn(i)`` -> (loss tensor, {name: scalar tensor or float}) for sub-batch i. Backpropagates
    loss / split for each sub-batch (DDP gradient sync only on the last), then unscales, clips and
    steps. ``summed_in_pigan``: whether pi-GAN sums this network's sub-batch losses (the generator)
    rather than taking one full-batch mean (the discriminator); see ``pigan_scale``.

    Returns ({name: mean over sub-batches}, gradient norm before clipping in pi-GAN's scale)."""
    scale = pigan_scale(split, summed_in_pigan)
    optimizer.zero_grad(set_to_none=True)
    logged = []  # per sub-batch {name: value}; read back to the host after the step, not per sub-batch
    for i in range(split):
        sync = ddp is None or i == split - 1
        with (nullcontext() if sync else ddp.no_sync()):
            loss, parts = loss_fn(i)
            scaler.scale(loss / split).backward()
        logged.append({k: v.detach() if torch.is_tensor(v) else v for k, v in parts.items()})
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, clip_threshold(grad_clip, split, summed_in_pigan))
    scaler.step(optimizer)
    totals = {}
    for parts in logged:
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + float(value) / split
    return totals, float(norm) * scale
