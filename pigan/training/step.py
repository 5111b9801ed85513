"""One optimiser step over ``batch_split`` sub-batches, shared by the discriminator and the generator:
accumulate the averaged sub-batch losses, unscale (AMP), clip, step. Also the precision choice."""
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


def clip_threshold(grad_clip: float, split: int) -> float:
    """The norm to clip the averaged gradient at. pi-GAN sums its sub-batch losses; we average them
    (the update does not depend on batch_split), so our gradient is 1/split of pi-GAN's and the
    threshold shrinks alike: clipping engages exactly when pi-GAN's would."""
    return grad_clip / split


def accumulate_and_step(loss_fn, split: int, optimizer, params, scaler, grad_clip: float, ddp=None):
    """``loss_fn(i)`` -> (loss tensor, {name: scalar tensor or float}) for sub-batch i. Backpropagates loss / split
    for each sub-batch (DDP gradient sync only on the last), then unscales, clips and steps.

    Returns ({name: mean over sub-batches}, gradient norm before clipping in pi-GAN's scale, i.e.
    of the summed sub-batch losses)."""
    optimizer.zero_grad(set_to_none=True)
    logged = []  # per sub-batch {name: value}; read back to the host after the step, not per sub-batch
    for i in range(split):
        sync = ddp is None or i == split - 1
        with (nullcontext() if sync else ddp.no_sync()):
            loss, parts = loss_fn(i)
            scaler.scale(loss / split).backward()
        logged.append({k: v.detach() if torch.is_tensor(v) else v for k, v in parts.items()})
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, clip_threshold(grad_clip, split))
    scaler.step(optimizer)
    totals = {}
    for parts in logged:
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + float(value) / split
    return totals, float(norm) * split
