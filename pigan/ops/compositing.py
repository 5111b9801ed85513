"""Alpha compositing along rays (pi-GAN's ``fancy_integration``; EG3D's midpoint quadrature).

``fancy_integration`` keeps pi-GAN's signature; ``composite`` is the same op with explicit noise and
keyword arguments; ``composite_midpoint`` is EG3D's quadrature. ``_fancy_integration`` /
``_composite`` / ``_composite_midpoint`` are the pure-PyTorch reference twins.

Native backend: ``torch.ops.pigan.composite_fwd`` / ``composite_bwd`` and ``midpoint_fwd`` /
``midpoint_bwd`` (csrc/; C++ on CPU, CUDA on CUDA tensors, float32 accumulation for half inputs).
The backward ops take only the forward's inputs: nothing else is saved, the rest is recomputed per
ray. Their fake kernels and autograd are registered below when this module is imported.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import _autograd, _backend
from ._checks import check_same_device, check_tensor

CLAMP_MODES = ("relu", "softplus")
MIDPOINT_CLAMP_MODES = ("softplus", None)
FILL_MODES = (None, "debug", "weight")


def _check_composite_args(rgb_sigma, z_vals, noise, clamp_mode, fill_mode):
    check_tensor("rgb_sigma", rgb_sigma, ndim=4)
    check_tensor("z_vals", z_vals, ndim=4)
    if rgb_sigma.shape[-1] < 2:
        raise ValueError("rgb_sigma must have at least 2 channels in its last dimension "
                         f"(C >= 1 composited channels, then sigma), got shape {tuple(rgb_sigma.shape)}")
    if z_vals.shape[-1] != 1 or z_vals.shape[:3] != rgb_sigma.shape[:3]:
        raise ValueError(f"z_vals must have shape [B, R, S, 1] = {tuple(rgb_sigma.shape[:3]) + (1,)} "
                         f"to match rgb_sigma {tuple(rgb_sigma.shape)}, got {tuple(z_vals.shape)}")
    if noise is not None:
        check_tensor("noise", noise, ndim=4)
        if noise.shape != z_vals.shape:
            raise ValueError(f"noise must have shape {tuple(z_vals.shape)} (one value per sample), "
                             f"got {tuple(noise.shape)}")
    check_same_device(rgb_sigma=rgb_sigma, z_vals=z_vals, noise=noise)
    if clamp_mode not in CLAMP_MODES:
        raise ValueError(f"clamp_mode must be one of {CLAMP_MODES}, got {clamp_mode!r}")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")


def draw_noise(z_vals: torch.Tensor, noise_std: float, device=None):
    """Density noise N(0, 1) * noise_std per sample, from torch's generator; None when noise_std == 0.

    Drawn as pi-GAN draws it: always (even when noise_std == 0, so the random stream that follows,
    e.g. the importance sampler's uniforms, stays pi-GAN's) and in torch's default dtype.
    """
    device = z_vals.device if device is None else torch.device(device)
    noise = torch.randn(z_vals.shape, device=device) * noise_std
    return noise.to(z_vals.dtype) if noise_std else None


def _composite(rgb_sigma, z_vals, noise=None, clamp_mode="relu", last_back=False, white_back=False,
               fill_mode=None):
    """Reference twin of ``composite``: pi-GAN's formulas, plain PyTorch autograd."""
    _check_composite_args(rgb_sigma, z_vals, noise, clamp_mode, fill_mode)
    return _composite_impl(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode)


def _composite_impl(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode):
    rgbs = rgb_sigma[..., :-1]                                       # [B, R, S, C]
    sigmas = rgb_sigma[..., -1:]                                     # [B, R, S, 1]
    z_vals = z_vals.detach()
    deltas = z_vals[:, :, 1:] - z_vals[:, :, :-1]                    # [B, R, S-1, 1]
    delta_inf = 1e10 * torch.ones_like(z_vals[:, :, :1])
    deltas = torch.cat([deltas, delta_inf], -2)                      # [B, R, S, 1]
    if noise is not None:
        sigmas = sigmas + noise.to(sigmas.dtype)
    if clamp_mode == "softplus":
        alphas = 1 - torch.exp(-deltas * F.softplus(sigmas))
    elif clamp_mode == "relu":
        alphas = 1 - torch.exp(-deltas * F.relu(sigmas))
    else:
        raise ValueError(f"clamp_mode must be one of {CLAMP_MODES}, got {clamp_mode!r}")
    alphas_shifted = torch.cat([torch.ones_like(alphas[:, :, :1]), 1 - alphas + 1e-10], -2)
    weights = alphas * torch.cumprod(alphas_shifted, -2)[:, :, :-1]  # [B, R, S, 1]
    weights_sum = weights.sum(2)                                     # [B, R, 1]
    if last_back:
        weights = torch.cat([weights[:, :, :-1], weights[:, :, -1:] + (1 - weights_sum)[:, :, None]], 2)
    rgb_final = torch.sum(weights * rgbs, -2)                        # [B, R, C]
    depth_final = torch.sum(weights * z_vals, -2)                    # [B, R, 1]
    return background_fill(rgb_final, weights_sum, white_back, fill_mode), depth_final, weights


def background_fill(rgb, weights_sum, white_back=False, fill_mode=None):
    """pi-GAN's end of a composite on rgb [..., C] with the weights' sum [..., 1]: a white background
    (the light no sample took), then the fill modes ("debug": red where the sum is below 0.9,
    "weight": the sum itself). The reference twin's and the skipping marcher's."""
    if white_back:
        rgb = rgb + 1 - weights_sum
    if fill_mode == "debug":
        red = rgb.new_zeros(rgb.shape[-1])
        red[0] = 1
        rgb = torch.where(weights_sum < 0.9, red, rgb)
    elif fill_mode == "weight":
        rgb = weights_sum.expand_as(rgb)
    return rgb


def composite(rgb_sigma, z_vals, noise=None, clamp_mode="relu", last_back=False, white_back=False,
              fill_mode=None):
    """Composite samples along rays.

    rgb_sigma [B, R, S, C+1] (sigma last), z_vals [B, R, S, 1], noise [B, R, S, 1] or None (added to
    sigma before the activation). Returns rgb [B, R, C], depth [B, R, 1], weights [B, R, S, 1].
    Gradients flow to rgb_sigma (and noise), not to z_vals.
    """
    _check_composite_args(rgb_sigma, z_vals, noise, clamp_mode, fill_mode)
    return COMPOSITE.run(rgb_sigma.device, rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back,
                         fill_mode)


def fancy_integration(rgb_sigma, z_vals, device=None, noise_std=0.5, last_back=False,
                      white_back=False, clamp_mode=None, fill_mode=None):
    """pi-GAN's ``fancy_integration``: drop-in, same signature and results."""
    return _with_drawn_noise(functools.partial(COMPOSITE.run, rgb_sigma.device), rgb_sigma, z_vals,
                             device, noise_std, last_back, white_back, clamp_mode, fill_mode)


def _fancy_integration(rgb_sigma, z_vals, device=None, noise_std=0.5, last_back=False,
                       white_back=False, clamp_mode=None, fill_mode=None):
    """Reference twin of ``fancy_integration``."""
    return _with_drawn_noise(_composite_impl, rgb_sigma, z_vals, device, noise_std, last_back,
                             white_back, clamp_mode, fill_mode)


def _with_drawn_noise(run, rgb_sigma, z_vals, device, noise_std, last_back, white_back, clamp_mode,
                      fill_mode):
    # Checked before drawing, so bad arguments fail without consuming the random stream.
    _check_composite_args(rgb_sigma, z_vals, None, clamp_mode, fill_mode)
    noise = draw_noise(z_vals, noise_std, device)
    return run(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode)


def _check_midpoint_args(rgb_sigma, z_vals, clamp_mode):
    _check_composite_args(rgb_sigma, z_vals, None, "relu", None)
    if rgb_sigma.shape[2] < 1:
        raise ValueError(f"rgb_sigma must have at least one sample (S >= 1) for the midpoint quadrature, "
                         f"got shape {tuple(rgb_sigma.shape)}")
    if clamp_mode not in MIDPOINT_CLAMP_MODES:
        raise ValueError(f"clamp_mode must be one of {MIDPOINT_CLAMP_MODES}, got {clamp_mode!r}")


def _composite_midpoint(rgb_sigma, z_vals, clamp_mode="softplus", white_back=False):
    """Reference twin of ``composite_midpoint``: EG3D's ray-marcher formulas, plain PyTorch autograd."""
    _check_midpoint_args(rgb_sigma, z_vals, clamp_mode)
    return _midpoint_impl(rgb_sigma, z_vals, clamp_mode, white_back)


def _midpoint_impl(rgb_sigma, z_vals, clamp_mode, white_back):
    colors = rgb_sigma[..., :-1]                                     # [B, R, S, C]
    densities = rgb_sigma[..., -1:]                                  # [B, R, S, 1]
    z_vals = z_vals.detach()
    deltas = z_vals[:, :, 1:] - z_vals[:, :, :-1]                    # [B, R, S-1, 1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2          # [B, R, S-1, C]
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (z_vals[:, :, :-1] + z_vals[:, :, 1:]) / 2
    if clamp_mode == "softplus":
        densities_mid = F.softplus(densities_mid - 1)
    alpha = 1 - torch.exp(-(densities_mid * deltas))
    alpha_shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    weights = alpha * torch.cumprod(alpha_shifted, -2)[:, :, :-1]   # [B, R, S-1, 1]
    rgb = torch.sum(weights * colors_mid, -2)                        # [B, R, C]
    weight_total = weights.sum(2)                                    # [B, R, 1]
    depth = torch.sum(weights * depths_mid, -2) / weight_total       # [B, R, 1]
    depth = torch.nan_to_num(depth, float("inf"))
    depth = torch.clamp(depth, z_vals.amin(2), z_vals.amax(2))
    if white_back:
        rgb = rgb + 1 - weight_total
    return rgb, depth, weights


def composite_midpoint(rgb_sigma, z_vals, clamp_mode="softplus", white_back=False):
    """EG3D's midpoint quadrature along rays.

    rgb_sigma [B, R, S, C+1] (sigma last), z_vals [B, R, S, 1] -> rgb [B, R, C], depth [B, R, 1],
    weights [B, R, S-1, 1]. Exactly:

        delta_i = z_{i+1} - z_i                       for the S-1 intervals i
        c_mid, sigma_mid, z_mid = (v_i + v_{i+1}) / 2  (colours, density, depth averaged)
        s_i = softplus(sigma_mid_i - 1) if clamp_mode == "softplus" else sigma_mid_i (None)
        alpha_i = 1 - exp(-s_i * delta_i);  T_i = prod_{j<i} (1 - alpha_j + 1e-10);  w_i = alpha_i T_i
        rgb = sum_i w_i c_mid_i  (+ 1 - sum_i w_i when white_back)
        depth = sum_i w_i z_mid_i / sum_i w_i, NaN -> +inf (nan_to_num), clamped to [min z, max z]

    This is EG3D's ``run_model`` ray marcher, except that EG3D clamps the depth to the min / max of
    the whole batch's depths, here per ray (identical for EG3D's shared sample depths), and EG3D's
    final ``rgb * 2 - 1`` rescale is left to the caller. Gradients flow to rgb_sigma, not z_vals.
    """
    _check_midpoint_args(rgb_sigma, z_vals, clamp_mode)
    return MIDPOINT.run(rgb_sigma.device, rgb_sigma, z_vals, clamp_mode, white_back)


# ---------------------------------------------------------------- native backend

_CLAMP = {"relu": 0, "softplus": 1}
_MIDPOINT_CLAMP = {"softplus": 1, None: 2}
_FILL = {None: 0, "debug": 1, "weight": 2}
_CLAMP_NAME = {v: k for k, v in _CLAMP.items()}
_MIDPOINT_CLAMP_NAME = {v: k for k, v in _MIDPOINT_CLAMP.items()}
_FILL_NAME = {v: k for k, v in _FILL.items()}


def _promote(rgb_sigma, z_vals, noise=None):
    """The twin's dtypes: noise is added to sigma in rgb_sigma's dtype, and every result has
    result_type(rgb_sigma, z_vals) (bf16 SIREN output with fp32 depths composites in fp32)."""
    dtype = torch.promote_types(rgb_sigma.dtype, z_vals.dtype)
    if noise is not None:
        noise = noise.to(rgb_sigma.dtype).to(dtype)
    return rgb_sigma.to(dtype), z_vals.detach().to(dtype), noise


def _composite_native(rgb_sigma, z_vals, noise=None, clamp_mode="relu", last_back=False,
                      white_back=False, fill_mode=None):
    """Native implementation of ``composite`` (checked arguments; same contract as ``_composite``)."""
    rgb_sigma, z_vals, noise = _promote(rgb_sigma, z_vals, noise)
    return _CompositeNative.apply(rgb_sigma, z_vals, noise, _CLAMP[clamp_mode], bool(last_back),
                                  bool(white_back), _FILL[fill_mode])


def _composite_midpoint_native(rgb_sigma, z_vals, clamp_mode="softplus", white_back=False):
    """Native implementation of ``composite_midpoint`` (checked arguments)."""
    rgb_sigma, z_vals, _ = _promote(rgb_sigma, z_vals)
    return _MidpointNative.apply(rgb_sigma, z_vals, _MIDPOINT_CLAMP[clamp_mode], bool(white_back))


def _composite_twin(rgb_sigma, z_vals, noise, clamp, last_back, white_back, fill):
    return _composite_impl(rgb_sigma, z_vals, noise, _CLAMP_NAME[clamp], last_back, white_back, _FILL_NAME[fill])


def _midpoint_twin(rgb_sigma, z_vals, clamp, white_back):
    return _midpoint_impl(rgb_sigma, z_vals, _MIDPOINT_CLAMP_NAME[clamp], white_back)


class _CompositeNative(_autograd.FastPath):
    """torch.ops.pigan.composite_fwd and its autograd (registered on the op too). The backward op
    takes only the forward's inputs."""

    @staticmethod
    def compute(rgb_sigma, z_vals, noise, clamp, last_back, white_back, fill):
        return torch.ops.pigan.composite_fwd(rgb_sigma, z_vals, noise, clamp, last_back, white_back, fill)

    @staticmethod
    def save(ctx, inputs, output):
        rgb_sigma, z_vals, noise, *args = inputs
        ctx.save_for_backward(rgb_sigma, z_vals, noise)
        ctx.args = tuple(args)

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_w):
        rgb_sigma, z_vals, noise = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():
            return _autograd.twin_grads(_composite_twin, (rgb_sigma, z_vals, noise, *ctx.args), needs,
                                       (g_rgb, g_depth, g_w))
        grad = torch.ops.pigan.composite_bwd(g_rgb, g_depth, g_w, rgb_sigma, z_vals, noise, *ctx.args)
        # noise is added to sigma, so it gets sigma's gradient.
        g_noise = grad[..., -1:] if noise is not None and needs[2] else None
        return (grad if needs[0] else None), None, g_noise, None, None, None, None


class _MidpointNative(_autograd.FastPath):
    """torch.ops.pigan.midpoint_fwd and its autograd (registered on the op too)."""

    @staticmethod
    def compute(rgb_sigma, z_vals, clamp, white_back):
        return torch.ops.pigan.midpoint_fwd(rgb_sigma, z_vals, clamp, white_back)

    @staticmethod
    def save(ctx, inputs, output):
        rgb_sigma, z_vals, clamp, white_back = inputs
        ctx.save_for_backward(rgb_sigma, z_vals)
        ctx.args = (clamp, white_back)

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_w):
        rgb_sigma, z_vals = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _autograd.twin_grads(_midpoint_twin, (rgb_sigma, z_vals, *ctx.args), ctx.needs_input_grad,
                                       (g_rgb, g_depth, g_w))
        grad = torch.ops.pigan.midpoint_bwd(g_rgb, g_depth, g_w, rgb_sigma, z_vals, *ctx.args)
        return (grad if ctx.needs_input_grad[0] else None), None, None, None


@_backend.when_native_loaded
def _register_native():
    # Fake kernels (shapes for torch.compile / FakeTensor / the meta device) and autograd of the
    # raw torch.ops.pigan ops.
    def fake_composite_fwd(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode):
        b, r, s, k = rgb_sigma.shape                                     # [B, R, S, C+1]
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

    for name, fn in (("composite_fwd", fake_composite_fwd), ("composite_bwd", fake_composite_bwd),
                     ("midpoint_fwd", fake_midpoint_fwd), ("midpoint_bwd", fake_midpoint_bwd)):
        _backend.register_fake(f"pigan::{name}", fn)
    _autograd.register_autograd("pigan::composite_fwd", _CompositeNative)
    _autograd.register_autograd("pigan::midpoint_fwd", _MidpointNative)
    _autograd.register_refusal("pigan::composite_bwd")
    _autograd.register_refusal("pigan::midpoint_bwd")


COMPOSITE = _backend.Op("composite", reference=_composite_impl, native=_composite_native)
MIDPOINT = _backend.Op("composite_midpoint", reference=_midpoint_impl, native=_composite_midpoint_native)
