"""Input validation shared by the ops: clear errors that name the argument and what was expected."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, t, ndim: int | tuple[int, ...] | None = None, dtypes=FLOAT_DTYPES):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have a floating dtype ({names}), got {t.dtype}")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else ndim
        if t.dim() not in dims:
            raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, "
                             f"got shape {tuple(t.shape)}")
    return t


def check_same_device(**tensors):
    devs = {k: v.device for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    if len(set(devs.values())) > 1:
        desc = ", ".join(f"{k} on {v}" for k, v in devs.items())
        raise ValueError(f"all tensors must be on one device, got {desc}")


def check_same_dtype(**tensors):
    dts = {k: v.dtype for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    if len(set(dts.values())) > 1:
        desc = ", ".join(f"{k} is {v}" for k, v in dts.items())
        raise TypeError(f"all tensors must share one dtype, got {desc}")
