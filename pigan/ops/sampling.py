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
