"""Alpha compositing along rays ("fancy_integration", PIGAN.md section 2; EG3D's midpoint quadrature,
section 7).

``fancy_integration`` keeps pi-GAN's signature; ``composite`` is the same op with explicit noise and
keyword arguments; ``composite_midpoint`` is EG3D's quadrature. ``_fancy_integration`` /
``_composite`` / ``_composite_midpoint`` are the pure-PyTorch reference twins.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _backend
from ._checks import check_same_device, check_same_dtype, check_tensor

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
    if white_back:
        rgb_final = rgb_final + 1 - weights_sum
    if fill_mode == "debug":
        red = torch.zeros_like(rgb_final[..., :1, 0]).new_zeros(rgb_final.shape[-1])
        red[0] = 1
        rgb_final = torch.where((weights_sum < 0.9), red, rgb_final)
    elif fill_mode == "weight":
        rgb_final = weights_sum.expand_as(rgb_final)
    return rgb_final, depth_final, weights


def composite(rgb_sigma, z_vals, noise=None, clamp_mode="relu", last_back=False, white_back=False,
              fill_mode=None):
    """Composite samples along rays.

    rgb_sigma [B, R, S, C+1] (sigma last), z_vals [B, R, S, 1], noise [B, R, S, 1] or None (added to
    sigma before the activation). Returns rgb [B, R, C], depth [B, R, 1], weights [B, R, S, 1].
    Gradients flow to rgb_sigma (and noise), not to z_vals.
    """
    _check_composite_args(rgb_sigma, z_vals, noise, clamp_mode, fill_mode)
    _, impl = _backend.select("composite", rgb_sigma.device, _COMPOSITE_IMPLS)
    return impl(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode)


def fancy_integration(rgb_sigma, z_vals, device=None, noise_std=0.5, last_back=False,
                      white_back=False, clamp_mode=None, fill_mode=None):
    """pi-GAN's ``fancy_integration``: drop-in, same signature and results."""
    _check_composite_args(rgb_sigma, z_vals, None, clamp_mode, fill_mode)
    noise = draw_noise(z_vals, noise_std, device)
    return composite(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode)


def _fancy_integration(rgb_sigma, z_vals, device=None, noise_std=0.5, last_back=False,
                       white_back=False, clamp_mode=None, fill_mode=None):
    """Reference twin of ``fancy_integration``."""
    _check_composite_args(rgb_sigma, z_vals, None, clamp_mode, fill_mode)
    noise = draw_noise(z_vals, noise_std, device)
    return _composite(rgb_sigma, z_vals, noise, clamp_mode, last_back, white_back, fill_mode)


def _check_midpoint_args(rgb_sigma, z_vals, clamp_mode):
    _check_composite_args(rgb_sigma, z_vals, None, "relu", None)
    if rgb_sigma.shape[2] < 1:
        raise ValueError(f"rgb_sigma must have at least one sample (S >= 1) for the midpoint quadrature, "
                         f"got shape {tuple(rgb_sigma.shape)}")
    if clamp_mode not in MIDPOINT_CLAMP_MODES:
        raise ValueError(f"clamp_mode must be one of {MIDPOINT_CLAMP_MODES}, got {clamp_mode!r}")


def _composite_midpoint(rgb_sigma, z_vals, clamp_mode="softplus", white_back=False):
    """Reference twin of ``composite_midpoint``: EG3D's ray-marcher formulas, plain PyTorch autograd."""
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
    _, impl = _backend.select("composite_midpoint", rgb_sigma.device, _MIDPOINT_IMPLS)
    return impl(rgb_sigma, z_vals, clamp_mode, white_back)


# Backend tables: the native entries are filled in by pigan/ops/_native_ops.py.
_COMPOSITE_IMPLS = {"reference": _composite}
_MIDPOINT_IMPLS = {"reference": _composite_midpoint}
