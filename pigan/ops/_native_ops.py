"""The "native" backend: autograd wrappers around the torch.library ops of ``pigan._C``.

``torch.ops.pigan.*`` (registered by importing pigan._C; see csrc/render_ops.cpp):
composite_fwd / composite_bwd (pi-GAN quadrature), midpoint_fwd / midpoint_bwd (EG3D),
sample_pdf and merge_samples. C++ kernels serve CPU tensors (float16 / bfloat16 through float32),
CUDA kernels CUDA tensors (float32 accumulation). The backward ops take only the forward's inputs:
nothing but inputs is saved for backward, the rest is recomputed per ray.

Importing this module registers the implementations in the backend tables of compositing.py and
sampling.py; pigan._C itself is loaded lazily, on the first native call (``_backend.select`` has
checked by then that it is available).
"""
from __future__ import annotations

import torch

from . import _backend, compositing, sampling

_CLAMP = {"relu": 0, "softplus": 1}
_MIDPOINT_CLAMP = {"softplus": 1, None: 2}
_FILL = {None: 0, "debug": 1, "weight": 2}

_fakes_registered = False


def _ops():
    """torch.ops.pigan after loading pigan._C (which registers the ops) and their fake kernels."""
    global _fakes_registered
    if _backend.native_module() is None:
        raise RuntimeError(f"pigan backend 'native' is unavailable: {_backend.backend_status('native')[1]}")
    if not _fakes_registered:
        _register_fakes()
        _fakes_registered = True
    return torch.ops.pigan


def _register_fakes():
    # Shape functions for torch.compile / FakeTensor tracing (and the Meta device).
    def fake_composite_fwd(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode):
        b, r, s, k = rgb_sigma.shape
        return rgb_sigma.new_empty(b, r, k - 1), rgb_sigma.new_empty(b, r, 1), rgb_sigma.new_empty(b, r, s, 1)

    def fake_composite_bwd(g_rgb, g_depth, g_w, rgb_sigma, z_vals, noise, clamp_mode, last_back,
                           white_back, fill_mode):
        return torch.empty_like(rgb_sigma, memory_format=torch.contiguous_format)

    def fake_midpoint_fwd(rgb_sigma, z_vals, clamp_mode, white_back):
        b, r, s, k = rgb_sigma.shape
        return (rgb_sigma.new_empty(b, r, k - 1), rgb_sigma.new_empty(b, r, 1),
                rgb_sigma.new_empty(b, r, max(s - 1, 0), 1))

    def fake_midpoint_bwd(g_rgb, g_depth, g_w, rgb_sigma, z_vals, clamp_mode, white_back):
        return torch.empty_like(rgb_sigma, memory_format=torch.contiguous_format)

    def fake_sample_pdf(bins, weights, u, eps, total=None):
        return bins.new_empty(weights.shape[0], u.shape[1])

    def fake_merge(z_coarse, z_fine):
        b, r, s2, _ = z_fine.shape
        s = z_coarse.shape[2] + s2
        return z_fine.new_empty(b, r, s, 1), z_fine.new_empty(b, r, s, dtype=torch.long)

    for name, fn in (("composite_fwd", fake_composite_fwd), ("composite_bwd", fake_composite_bwd),
                     ("midpoint_fwd", fake_midpoint_fwd), ("midpoint_bwd", fake_midpoint_bwd),
                     ("sample_pdf", fake_sample_pdf), ("merge_samples", fake_merge)):
        torch.library.register_fake(f"pigan::{name}", fn)


class _CompositeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rgb_sigma, z_vals, noise, clamp, last_back, white_back, fill):
        rgb, depth, weights = _ops().composite_fwd(rgb_sigma, z_vals, noise, clamp, last_back,
                                                   white_back, fill)
        ctx.save_for_backward(rgb_sigma, z_vals, noise)
        ctx.args = (clamp, last_back, white_back, fill)
        return rgb, depth, weights

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_weights):
        rgb_sigma, z_vals, noise = ctx.saved_tensors
        grad = _ops().composite_bwd(g_rgb, g_depth, g_weights, rgb_sigma, z_vals, noise, *ctx.args)
        # noise is added to sigma, so it gets sigma's gradient.
        g_noise = grad[..., -1:] if ctx.needs_input_grad[2] else None
        return (grad if ctx.needs_input_grad[0] else None), None, g_noise, None, None, None, None


class _MidpointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rgb_sigma, z_vals, clamp, white_back):
        rgb, depth, weights = _ops().midpoint_fwd(rgb_sigma, z_vals, clamp, white_back)
        ctx.save_for_backward(rgb_sigma, z_vals)
        ctx.args = (clamp, white_back)
        return rgb, depth, weights

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_weights):
        rgb_sigma, z_vals = ctx.saved_tensors
        grad = _ops().midpoint_bwd(g_rgb, g_depth, g_weights, rgb_sigma, z_vals, *ctx.args)
        return grad, None, None, None


def _composite_native(rgb_sigma, z_vals, noise=None, clamp_mode="relu", last_back=False,
                      white_back=False, fill_mode=None):
    """Native twin of ``compositing._composite`` (same signature and contract)."""
    dtype = rgb_sigma.dtype
    z_vals = z_vals.detach().to(dtype)
    if noise is not None:
        noise = noise.to(dtype)
    return _CompositeFn.apply(rgb_sigma, z_vals, noise, _CLAMP[clamp_mode], bool(last_back),
                              bool(white_back), _FILL[fill_mode])


def _composite_midpoint_native(rgb_sigma, z_vals, clamp_mode="softplus", white_back=False):
    """Native twin of ``compositing._composite_midpoint``."""
    z_vals = z_vals.detach().to(rgb_sigma.dtype)
    return _MidpointFn.apply(rgb_sigma, z_vals, _MIDPOINT_CLAMP[clamp_mode], bool(white_back))


def _sample_pdf_native(bins, weights, N_importance, det=False, eps=1e-5, u=None):
    """Native twin of ``sampling._sample_pdf``: the same uniforms give the same samples."""
    bins = bins.detach()
    weights = weights.detach().to(bins.dtype)
    if u is None:
        u = sampling.draw_uniforms(bins, N_importance, det)
    total = None
    if (bins.device.type == "cpu" and bins.dtype in (torch.float32, torch.float64)
            and weights.shape[0] > 1 and weights.shape[1] > 1 and weights.stride(1) != 1):
        # The kernel reproduces torch's CPU summation order for row-major weights; other layouts
        # make torch sum in another order, so take its total to stay bit-identical to the reference.
        total = torch.sum(weights + eps, -1)
    return _ops().sample_pdf(bins, weights, u.detach().to(bins.dtype), float(eps), total)


def _merge_samples_native(z_coarse, z_fine):
    """Native twin of ``sampling._merge_samples`` (values and indices identical; not differentiable)."""
    z_fine = z_fine.detach()
    return _ops().merge_samples(z_coarse.detach().to(z_fine.dtype), z_fine)


compositing._COMPOSITE_IMPLS["native"] = _composite_native
compositing._MIDPOINT_IMPLS["native"] = _composite_midpoint_native
sampling._SAMPLE_PDF_IMPLS["native"] = _sample_pdf_native
sampling._MERGE_IMPLS["native"] = _merge_samples_native
