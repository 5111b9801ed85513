"""Importance sampling along rays ("sample_pdf", PIGAN.md section 3)."""
from __future__ import annotations

import torch

from . import _backend
from ._checks import check_same_device, check_tensor


def _check_sample_pdf_args(bins, weights, N_importance, u):
    check_tensor("bins", bins, ndim=2)
    check_tensor("weights", weights, ndim=2)
    if bins.shape[0] != weights.shape[0] or bins.shape[1] != weights.shape[1] + 1:
        raise ValueError(f"bins must have shape [N, M+1] = [{weights.shape[0]}, {weights.shape[1] + 1}] "
                         f"for weights of shape {tuple(weights.shape)}, got {tuple(bins.shape)}")
    if weights.shape[1] < 1:
        raise ValueError(f"weights must have at least one bin (M >= 1), got shape {tuple(weights.shape)}")
    if isinstance(N_importance, bool) or not isinstance(N_importance, int) or N_importance < 0:
        raise ValueError(f"N_importance must be a non-negative int, got {N_importance!r}")
    if u is not None:
        check_tensor("u", u, ndim=2)
        if tuple(u.shape) != (weights.shape[0], N_importance):
            raise ValueError(f"u must have shape [N, N_importance] = [{weights.shape[0]}, {N_importance}], "
                             f"got {tuple(u.shape)}")
    check_same_device(bins=bins, weights=weights, u=u)


def draw_uniforms(bins, N_importance, det):
    """The u of sample_pdf: linspace(0, 1) when det, else U[0, 1) per ray and sample (torch's generator).

    Drawn in torch's default dtype, as pi-GAN does, then cast to the dtype of ``bins``: so float64
    inputs see the same float32-rounded uniforms as pi-GAN's code.
    """
    n = bins.shape[0]
    if det:
        u = torch.linspace(0, 1, N_importance, device=bins.device).expand(n, N_importance)
    else:
        u = torch.rand(n, N_importance, device=bins.device)
    return u.to(bins.dtype)


def _sample_pdf(bins, weights, N_importance, det=False, eps=1e-5, u=None):
    """Reference twin of ``sample_pdf``: pi-GAN's formulas in plain PyTorch."""
    _check_sample_pdf_args(bins, weights, N_importance, u)
    bins, weights = bins.detach(), weights.detach().to(bins.dtype)
    n, m = weights.shape
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)        # [N, M+1]
    if u is None:
        u = draw_uniforms(bins, N_importance, det)
    u = u.to(cdf.dtype).contiguous()
    inds = torch.searchsorted(cdf, u)                                # right=False
    below = torch.clamp_min(inds - 1, 0)
    above = torch.clamp_max(inds, m)
    inds_sampled = torch.stack([below, above], -1).view(n, 2 * N_importance)
    cdf_g = torch.gather(cdf, 1, inds_sampled).view(n, N_importance, 2)
    bins_g = torch.gather(bins, 1, inds_sampled).view(n, N_importance, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


def sample_pdf(bins, weights, N_importance, det=False, eps=1e-5, u=None):
    """Draw N_importance depths per ray from the piecewise-constant pdf of ``weights`` over ``bins``.

    bins [N, M+1], weights [N, M] -> samples [N, N_importance]. ``u`` [N, N_importance] overrides the
    uniforms (det: linspace(0, 1); else U[0, 1) from torch's generator). Not differentiable.
    """
    _check_sample_pdf_args(bins, weights, N_importance, u)
    _, impl = _backend.select("sample_pdf", bins.device, _SAMPLE_PDF_IMPLS)
    return impl(bins, weights, N_importance, det, eps, u)


_SAMPLE_PDF_IMPLS = {"reference": _sample_pdf}


def _check_merge_args(z_coarse, z_fine):
    check_tensor("z_coarse", z_coarse, ndim=4)
    check_tensor("z_fine", z_fine, ndim=4)
    if z_coarse.shape[-1] != 1 or z_fine.shape[-1] != 1 or z_coarse.shape[:2] != z_fine.shape[:2]:
        raise ValueError(f"z_coarse [B, R, S1, 1] and z_fine [B, R, S2, 1] must share B and R, got "
                         f"{tuple(z_coarse.shape)} and {tuple(z_fine.shape)}")
    check_same_device(z_coarse=z_coarse, z_fine=z_fine)


def _merge_samples(z_coarse, z_fine):
    """Reference twin of ``merge_samples``: concatenate (fine first, as pi-GAN), stable sort.

    Returns z_all [B, R, S1+S2, 1] sorted along the ray and idx [B, R, S1+S2] (int64) such that
    z_all = cat([z_fine, z_coarse], -2).gather(-2, idx[..., None]).
    """
    _check_merge_args(z_coarse, z_fine)
    z_all = torch.cat([z_fine, z_coarse.to(z_fine.dtype)], dim=-2)
    z_sorted, idx = torch.sort(z_all.squeeze(-1), dim=-1, stable=True)
    return z_sorted.unsqueeze(-1), idx


def merge_samples(z_coarse, z_fine):
    """Merge fine and coarse depths per ray in depth order. See ``_merge_samples`` for the contract."""
    _check_merge_args(z_coarse, z_fine)
    _, impl = _backend.select("merge_samples", z_coarse.device, _MERGE_IMPLS)
    return impl(z_coarse, z_fine)


_MERGE_IMPLS = {"reference": _merge_samples}
