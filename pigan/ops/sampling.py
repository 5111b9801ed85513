"""Importance sampling along rays (pi-GAN's ``sample_pdf``) and the merge of fine and coarse samples.

``sample_pdf`` keeps pi-GAN's signature (plus ``u`` to pass the uniforms); ``merge_samples`` sorts
fine and coarse depths together and returns gather indices; ``merge_samples_values`` does the same
and also returns the merged per-sample values (the network outputs), which is what callers need.
``_sample_pdf`` / ``_merge_samples`` / ``_merge_samples_values`` are the reference twins.

Native backend: ``torch.ops.pigan.sample_pdf`` and ``torch.ops.pigan.merge_samples`` (csrc/). Their
fake kernels and autograd are registered below when this module is imported.
"""
from __future__ import annotations

import torch

from . import _autograd, _backend
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
    return _sample_pdf_impl(bins, weights, N_importance, det, eps, u)


def _sample_pdf_impl(bins, weights, N_importance, det, eps, u):
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
    Weights that are negative, sum to zero or hold NaN give what pi-GAN's code gives (torch's
    binary search on the resulting cdf, NaN where it divides by zero).
    """
    _check_sample_pdf_args(bins, weights, N_importance, u)
    return SAMPLE_PDF.run(bins.device, bins, weights, N_importance, det, eps, u)


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
    return _merge_impl(z_coarse, z_fine)


def _merge_impl(z_coarse, z_fine):
    z_all = torch.cat([z_fine, z_coarse.to(z_fine.dtype)], dim=-2)
    z_sorted, idx = torch.sort(z_all.squeeze(-1), dim=-1, stable=True)
    return z_sorted.unsqueeze(-1), idx


def merge_samples(z_coarse, z_fine):
    """Merge fine and coarse depths per ray in depth order. See ``_merge_samples`` for the contract;
    ``merge_samples_values`` also gathers the per-sample values."""
    _check_merge_args(z_coarse, z_fine)
    return MERGE.run(z_coarse.device, z_coarse, z_fine)


def _check_values(z_coarse, z_fine, coarse, fine):
    check_tensor("coarse", coarse, ndim=4)
    check_tensor("fine", fine, ndim=4)
    if coarse.shape[:3] != z_coarse.shape[:3]:
        raise ValueError(f"coarse must have shape [B, R, S1, C] with [B, R, S1] = {tuple(z_coarse.shape[:3])}, "
                         f"got {tuple(coarse.shape)}")
    if fine.shape[:3] != z_fine.shape[:3] or fine.shape[3] != coarse.shape[3]:
        raise ValueError(f"fine must have shape [B, R, S2, C] = {tuple(z_fine.shape[:3]) + (coarse.shape[3],)}, "
                         f"got {tuple(fine.shape)}")
    check_same_device(z_coarse=z_coarse, coarse=coarse, fine=fine)


def _gather_values(idx, coarse, fine):
    values = torch.cat([fine, coarse], dim=-2)                       # [B, R, S2+S1, C]
    return torch.gather(values, -2, idx.unsqueeze(-1).expand(-1, -1, -1, values.shape[-1]))


def _merge_samples_values(z_coarse, z_fine, coarse, fine):
    """Reference twin of ``merge_samples_values``."""
    _check_merge_args(z_coarse, z_fine)
    _check_values(z_coarse, z_fine, coarse, fine)
    z_all, idx = _merge_impl(z_coarse, z_fine)
    return z_all, _gather_values(idx, coarse, fine)


def merge_samples_values(z_coarse, z_fine, coarse, fine):
    """Merge fine and coarse samples per ray in depth order, with their values.

    z_coarse [B, R, S1, 1], z_fine [B, R, S2, 1], coarse [B, R, S1, C] and fine [B, R, S2, C] (e.g. the
    network's rgb_sigma at those depths) -> z_all [B, R, S1+S2, 1] sorted along the ray (ties: fine
    first) and values [B, R, S1+S2, C] in the same order. Gradients flow to the values (and depths).
    """
    _check_merge_args(z_coarse, z_fine)
    _check_values(z_coarse, z_fine, coarse, fine)
    z_all, idx = MERGE.run(z_coarse.device, z_coarse, z_fine)
    return z_all, _gather_values(idx, coarse, fine)


# ---------------------------------------------------------------- native backend

def _sample_pdf_native(bins, weights, N_importance, det=False, eps=1e-5, u=None):
    """Native implementation of ``sample_pdf``: the same uniforms give the same samples."""
    bins = bins.detach()
    weights = weights.detach().to(bins.dtype)
    if u is None:
        u = draw_uniforms(bins, N_importance, det)
    total = None
    if (bins.device.type == "cpu" and bins.dtype in (torch.float32, torch.float64)
            and weights.shape[0] > 1 and weights.shape[1] > 1 and weights.stride(1) != 1):
        # The kernel reproduces torch's CPU summation order for row-major weights; other layouts
        # make torch sum in another order, so take its total to stay bit-identical to the reference.
        total = torch.sum(weights + eps, -1)
    return _SamplePdfNative.apply(bins, weights, u.detach().to(bins.dtype), float(eps), total)


def _merge_native(z_coarse, z_fine):
    """Native implementation of ``merge_samples`` (values and indices identical to the twin's)."""
    return _MergeNative.apply(z_coarse.to(z_fine.dtype), z_fine)


class _SamplePdfNative(_autograd.FastPath):
    """torch.ops.pigan.sample_pdf and its autograd (registered on the op too): the samples are not
    differentiable, as the twin's are not (it detaches bins and weights)."""

    @staticmethod
    def compute(bins, weights, u, eps, total):
        return torch.ops.pigan.sample_pdf(bins, weights, u, eps, total)

    @staticmethod
    def save(ctx, inputs, output):
        ctx.mark_non_differentiable(output)


class _MergeNative(_autograd.FastPath):
    """torch.ops.pigan.merge_samples and its autograd (registered on the op too). z_all is
    cat([z_fine, z_coarse]).gather(idx), so the gradient scatters back: torch ops, differentiable
    again as the twin's gather is."""

    @staticmethod
    def compute(z_coarse, z_fine):
        return torch.ops.pigan.merge_samples(z_coarse, z_fine)

    @staticmethod
    def save(ctx, inputs, output):
        z_coarse, z_fine = inputs
        ctx.s2 = z_fine.shape[2]
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, g_z, g_idx):
        (idx,) = ctx.saved_tensors
        g_cat = torch.zeros_like(g_z).scatter(-2, idx.unsqueeze(-1), g_z)  # [B, R, S2+S1, 1]
        return g_cat[:, :, ctx.s2:], g_cat[:, :, :ctx.s2]


@_backend.when_native_loaded
def _register_native():
    def fake_sample_pdf(bins, weights, u, eps, total=None):
        return bins.new_empty(weights.shape[0], u.shape[1])

    def fake_merge(z_coarse, z_fine):
        b, r, s2, _ = z_fine.shape
        s = z_coarse.shape[2] + s2
        return z_fine.new_empty(b, r, s, 1), z_fine.new_empty(b, r, s, dtype=torch.long)

    _backend.register_fake("pigan::sample_pdf", fake_sample_pdf)
    _backend.register_fake("pigan::merge_samples", fake_merge)
    _autograd.register_autograd("pigan::sample_pdf", _SamplePdfNative)
    _autograd.register_autograd("pigan::merge_samples", _MergeNative)


SAMPLE_PDF = _backend.Op("sample_pdf", reference=_sample_pdf_impl, native=_sample_pdf_native)
MERGE = _backend.Op("merge_samples", reference=_merge_impl, native=_merge_native)
