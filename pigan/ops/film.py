"""FiLM-modulated sine layer: y = sin(freq * (x W^T + b) + phase) (PIGAN.md section 1).

``film_siren`` dispatches to the fastest backend; ``_film_siren`` is the pure-PyTorch reference twin.
``x`` may be one tensor [B, N, K] or a tuple of tensors [B, N, K_i] that stand for their concatenation
along the last dimension (the colour layer's cat([directions, features])): fast paths then never
store the concatenated copy for backward.
"""
from __future__ import annotations

import torch

from . import _backend
from ._checks import check_same_device, check_tensor


def _as_parts(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _check_film_args(x, weight, bias, freq, phase):
    parts = _as_parts(x)
    if not parts:
        raise ValueError("x must be a tensor or a non-empty tuple of tensors")
    for i, p in enumerate(parts):
        check_tensor("x" if len(parts) == 1 else f"x[{i}]", p, ndim=3)
        if p.shape[:2] != parts[0].shape[:2]:
            raise ValueError(f"x[{i}] must share the leading [B, N] dims {tuple(parts[0].shape[:2])}, "
                             f"got {tuple(p.shape)}")
    B, N = parts[0].shape[:2]
    K = sum(p.shape[-1] for p in parts)
    check_tensor("weight", weight, ndim=2)
    H = weight.shape[0]
    if weight.shape[1] != K:
        raise ValueError(f"weight must have shape [H, K] with K = {K} (the last dim of x), "
                         f"got {tuple(weight.shape)}")
    if bias is not None:
        check_tensor("bias", bias, ndim=1)
        if bias.shape[0] != H:
            raise ValueError(f"bias must have shape [{H}], got {tuple(bias.shape)}")
    for name, t in (("freq", freq), ("phase", phase)):
        check_tensor(name, t, ndim=2)
        if tuple(t.shape) != (B, H):
            raise ValueError(f"{name} must have shape [B, H] = [{B}, {H}], got {tuple(t.shape)}")
    check_same_device(**{f"x{i}": p for i, p in enumerate(parts)}, weight=weight, bias=bias,
                      freq=freq, phase=phase)
    return parts


def _film_siren(x, weight, bias, freq, phase):
    """Reference twin: eager PyTorch, as pi-GAN's FiLMLayer computes it."""
    parts = _as_parts(x)
    x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    y = torch.nn.functional.linear(x, weight, bias)                 # [B, N, H]
    freq = freq.unsqueeze(1).expand_as(y)
    phase = phase.unsqueeze(1).expand_as(y)
    return torch.sin(freq * y + phase)


def film_siren(x, weight, bias, freq, phase):
    """FiLM-SIREN layer. x [B, N, K] (or a tuple of parts), weight [H, K], bias [H] or None,
    freq and phase [B, H] (broadcast over the N points) -> y [B, N, H]."""
    parts = _check_film_args(x, weight, bias, freq, phase)
    _, impl = _backend.select("film_siren", parts[0].device, _FILM_IMPLS)
    return impl(x, weight, bias, freq, phase)


_FILM_IMPLS = {"reference": _film_siren}
