"""Empty-space skipping for renders without gradients: a per-latent occupancy grid, the lookup of
samples in it, the choice of the next samples each ray needs, and compositing of a window of
samples with early termination.

A render that skips (``pigan.model.skipping``) marches each ray in rounds: ``march_window`` picks,
per live ray, the samples up to its next ``k`` occupied, not yet evaluated ones; only those are
evaluated; ``composite_window`` composites the window in order with pi-GAN's formulas (an
unoccupied sample has alpha 0, as a sample of zero density has in the exact composite) and stops a
ray once its transmittance falls below ``eps``. The samples a ray skips are those the grid calls
empty and those behind its termination.

Shapes: R rays, S samples per ray (sorted depths), C composited channels. Occupancy is a bool
tensor. Windows are half-open index ranges [start, end) per ray. None of these ops has a gradient.

``_grid_occupied`` / ``_march_window`` / ``_composite_window`` are the pure-PyTorch twins; the
native backend (``torch.ops.pigan.grid_occupied`` / ``march_window`` / ``composite_window``) runs the
per-ray code of csrc/skipping.h on CPU and CUDA. Their fake kernels and autograd (every output
non-differentiable) are registered below when this module is imported.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _autograd, _backend
from ._checks import check_same_device, check_tensor

CLAMP_MODES = ("relu", "softplus")
# The last sample of a ray has an infinite interval, as in pi-GAN's composite.
LAST_DELTA = 1e10


def _check_bool(name, t, ndim):
    check_tensor(name, t, ndim=ndim, dtypes=None)
    if t.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {t.dtype}")


def _check_index(name, t, rays):
    check_tensor(name, t, ndim=1, dtypes=None)
    if t.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor, got {t.dtype}")
    if t.shape[0] != rays:
        raise ValueError(f"{name} must have shape [R] = [{rays}], got {tuple(t.shape)}")


# ---------------------------------------------------------------- the proposal

def occupancy_grid(density: torch.Tensor, threshold: float, dilation: int = 1) -> torch.Tensor:
    """density [B, G+1, G+1, G+1] (activated: relu or softplus of sigma) at the nodes of a grid ->
    bool [B, G, G, G]: cells with a corner whose density exceeds ``threshold``, grown by ``dilation``
    cells in every direction. Corners rather than centres, so that density on the box's faces (a
    render's near and far planes) is seen; the margin keeps density that rises between nodes."""
    check_tensor("density", density, ndim=4)
    if min(density.shape[1:]) < 2:
        raise ValueError(f"density must have shape [B, G+1, G+1, G+1] with G >= 1, got {tuple(density.shape)}")
    if dilation < 0:
        raise ValueError(f"dilation must be >= 0, got {dilation}")
    corner = F.max_pool3d(density[:, None].float(), 2, stride=1)[:, 0]                   # [B, G, G, G]
    occ = corner > threshold
    if dilation:
        occ = F.max_pool3d(occ[:, None].float(), 2 * dilation + 1, stride=1, padding=dilation)[:, 0] > 0
    return occ


def grid_nodes(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:
    """lo, hi [B, 3] (the grid's box) -> the nodes of a size^3-cell grid [B, (size+1)^3, 3] in (x, y, z)
    order with x fastest: node (i, j, k) is the corner of cell ``grid[b, k, j, i]`` nearest lo."""
    steps = torch.arange(size + 1, device=lo.device, dtype=lo.dtype) / size               # [G+1]
    zz, yy, xx = torch.meshgrid(steps, steps, steps, indexing="ij")
    unit = torch.stack([xx, yy, zz], -1).reshape(1, -1, 3)                                # [1, (G+1)^3, 3]
    return lo[:, None] + unit * (hi - lo)[:, None]


def _check_grid_args(points, grid, lo, hi):
    check_tensor("points", points, ndim=3)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape [B, N, 3], got {tuple(points.shape)}")
    _check_bool("grid", grid, 4)
    B = points.shape[0]
    if grid.shape[0] != B or not grid.shape[1] == grid.shape[2] == grid.shape[3] or grid.shape[1] < 1:
        raise ValueError(f"grid must have shape [B, G, G, G] with B = {B} and G >= 1, got {tuple(grid.shape)}")
    for name, t in (("lo", lo), ("hi", hi)):
        check_tensor(name, t, ndim=2)
        if t.shape != (B, 3):
            raise ValueError(f"{name} must have shape [B, 3] = [{B}, 3], got {tuple(t.shape)}")
    check_same_device(points=points, grid=grid, lo=lo, hi=hi)


def _grid_occupied_impl(points, grid, lo, hi):
    G = grid.shape[-1]
    rel = (points - lo[:, None].to(points.dtype)) / (hi - lo)[:, None].to(points.dtype)  # [B, N, 3] in [0, 1)
    inside = ((rel >= 0) & (rel < 1)).all(-1)
    cell = (rel * G).floor().clamp(0, G - 1).long()
    flat = (cell[..., 2] * G + cell[..., 1]) * G + cell[..., 0]                           # [B, N]
    occ = grid.reshape(grid.shape[0], -1).gather(1, flat)
    # a point outside the grid's box was never looked at: evaluate it
    return occ | ~inside


def _grid_occupied(points, grid, lo, hi):
    """Reference twin of ``grid_occupied``."""
    _check_grid_args(points, grid, lo, hi)
    return _grid_occupied_impl(points, grid, lo, hi)


def grid_occupied(points, grid, lo, hi):
    """points [B, N, 3], grid bool [B, G, G, G] over the box lo..hi ([B, 3] each; cell (i, j, k)
    is grid[b, k, j, i], x along i) -> bool [B, N]: the point's cell is occupied, or the point lies
    outside the box."""
    _check_grid_args(points, grid, lo, hi)
    return GRID_OCCUPIED.run(points.device, points, grid, lo, hi)


# ---------------------------------------------------------------- windows

def _check_window_args(need, start, alive, k):
    _check_bool("need", need, 2)
    _check_index("start", start, need.shape[0])
    _check_bool("alive", alive, 1)
    if alive.shape[0] != need.shape[0]:
        raise ValueError(f"alive must have shape [R] = [{need.shape[0]}], got {tuple(alive.shape)}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    check_same_device(need=need, start=start, alive=alive)


def _march_window_impl(need, start, alive, k):
    R, S = need.shape
    idx = torch.arange(S, device=need.device)
    ahead = need & (idx[None] >= start[:, None])                                          # [R, S]
    count = ahead.long().cumsum(-1)
    # the window closes after the k-th needed sample at or after start, else at the ray's end
    hit = ahead & (count == k)
    end = torch.where(hit.any(-1), hit.long().argmax(-1) + 1, torch.full_like(start, S))
    return torch.where(alive, end, start)


def _march_window(need, start, alive, k):
    """Reference twin of ``march_window``."""
    _check_window_args(need, start, alive, k)
    return _march_window_impl(need, start, alive, k)


def march_window(need, start, alive, k: int):
    """need bool [R, S] (samples still to evaluate), start int64 [R], alive bool [R] -> end int64 [R]:
    for a live ray, the index just after its k-th needed sample at or after ``start`` (S when it has
    fewer); for a dead ray, ``start`` (an empty window)."""
    _check_window_args(need, start, alive, k)
    return MARCH_WINDOW.run(need.device, need, start, alive, k)


def _check_composite_window_args(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode):
    check_tensor("rgb_sigma", rgb_sigma, ndim=3)
    R, S = rgb_sigma.shape[:2]
    if rgb_sigma.shape[-1] < 2:
        raise ValueError(f"rgb_sigma must have shape [R, S, C+1] with C >= 1, got {tuple(rgb_sigma.shape)}")
    check_tensor("z_vals", z_vals, ndim=2)
    if z_vals.shape != (R, S):
        raise ValueError(f"z_vals must have shape [R, S] = [{R}, {S}], got {tuple(z_vals.shape)}")
    _check_bool("occupied", occupied, 2)
    if occupied.shape != (R, S):
        raise ValueError(f"occupied must have shape [R, S] = [{R}, {S}], got {tuple(occupied.shape)}")
    _check_index("start", start, R)
    _check_index("end", end, R)
    check_tensor("transmittance", transmittance, ndim=1)
    if transmittance.shape[0] != R:
        raise ValueError(f"transmittance must have shape [R] = [{R}], got {tuple(transmittance.shape)}")
    if not 0 <= float(eps) < 1:
        raise ValueError(f"eps must be in [0, 1), got {eps!r}")
    if clamp_mode not in CLAMP_MODES:
        raise ValueError(f"clamp_mode must be one of {CLAMP_MODES}, got {clamp_mode!r}")
    check_same_device(rgb_sigma=rgb_sigma, z_vals=z_vals, occupied=occupied, start=start, end=end,
                      transmittance=transmittance)


def _composite_window_impl(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode):
    R, S, C1 = rgb_sigma.shape
    dtype = torch.promote_types(rgb_sigma.dtype, z_vals.dtype)
    rgb_sigma, z = rgb_sigma.to(dtype), z_vals.to(dtype)
    idx = torch.arange(S, device=z.device)
    window = (idx[None] >= start[:, None]) & (idx[None] < end[:, None])                  # [R, S]
    deltas = torch.cat([z[:, 1:] - z[:, :-1], torch.full_like(z[:, :1], LAST_DELTA)], -1)
    sigma = rgb_sigma[..., -1]
    density = F.relu(sigma) if clamp_mode == "relu" else F.softplus(sigma)
    alphas = torch.where(window & occupied, 1 - torch.exp(-deltas * density), torch.zeros_like(z))
    # unoccupied samples multiply by exactly 1, as (1 - 0 + 1e-10) rounds to 1 in the exact composite
    factors = torch.where(window & occupied, 1 - alphas + 1e-10, torch.ones_like(z))
    t_before = transmittance.to(dtype)[:, None] * torch.cumprod(
        torch.cat([torch.ones_like(z[:, :1]), factors[:, :-1]], -1), -1)                 # [R, S]
    # the ray stops after the first window sample that leaves its transmittance below eps
    t_after = t_before * factors
    below = window & (t_after < eps)
    stopped = below.any(-1)
    stop = torch.where(stopped, below.long().argmax(-1) + 1, end)
    keep = window & (idx[None] < stop[:, None])
    weights = torch.where(keep, t_before * alphas, torch.zeros_like(z))
    acc = torch.cat([(weights[..., None] * rgb_sigma[..., :-1]).sum(1), (weights * z).sum(1, keepdim=True)], -1)
    last = (stop - 1).clamp_min(0)
    t_out = torch.where(stop > start, t_after.gather(1, last[:, None])[:, 0], transmittance.to(dtype))
    return weights, acc, t_out, stop


def _composite_window(rgb_sigma, z_vals, occupied, start, end, transmittance, eps=1e-4, clamp_mode="relu"):
    """Reference twin of ``composite_window``."""
    _check_composite_window_args(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode)
    return _composite_window_impl(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode)


def composite_window(rgb_sigma, z_vals, occupied, start, end, transmittance, eps=1e-4, clamp_mode="relu"):
    """Composite each ray's window [start, end) in order, from its ``transmittance`` [R] so far.

    rgb_sigma [R, S, C+1] (sigma last; read only where occupied inside the window), z_vals [R, S]
    (the interval of sample i is z[i+1] - z[i], the last one infinite), occupied bool [R, S]
    (unoccupied samples have alpha 0). pi-GAN's formulas: alpha = 1 - exp(-delta * act(sigma)),
    weight = T * alpha, T *= 1 - alpha + 1e-10. A ray stops after the sample that leaves T < ``eps``.

    Returns weights [R, S] (zero outside [start, stop)), acc [R, C+1] (the window's sum of weight x
    (rgb, depth)), transmittance [R] after the last composited sample, stop int64 [R] (the index after
    it: ``end``, or less when the ray terminated). Dtype: the promotion of rgb_sigma and z_vals.
    """
    _check_composite_window_args(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode)
    return COMPOSITE_WINDOW.run(rgb_sigma.device, rgb_sigma, z_vals, occupied, start, end, transmittance,
                                float(eps), clamp_mode)


# ---------------------------------------------------------------- native backend

def _non_differentiable(ctx, inputs, output):
    ctx.mark_non_differentiable(*(output if isinstance(output, tuple) else (output,)))


class _GridOccupiedNative(_autograd.FastPath):
    """torch.ops.pigan.grid_occupied (the box's rounding to the points' dtype included, as the twin)."""

    @staticmethod
    def compute(points, grid, lo, hi):
        return torch.ops.pigan.grid_occupied(points, grid, lo, hi)

    save = staticmethod(_non_differentiable)


class _MarchWindowNative(_autograd.FastPath):
    """torch.ops.pigan.march_window."""

    @staticmethod
    def compute(need, start, alive, k):
        return torch.ops.pigan.march_window(need, start, alive, k)

    save = staticmethod(_non_differentiable)


class _CompositeWindowNative(_autograd.FastPath):
    """torch.ops.pigan.composite_window, on inputs already in one dtype. Its autograd (registered on
    the op too, as on the other two) marks every output non-differentiable: inputs that require grad
    give outputs that carry no graph, so differentiating them is an error rather than a silent zero."""

    @staticmethod
    def compute(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode):
        return torch.ops.pigan.composite_window(rgb_sigma, z_vals, occupied, start, end, transmittance,
                                                eps, clamp_mode)

    save = staticmethod(_non_differentiable)


def _composite_window_native(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode):
    dtype = torch.promote_types(rgb_sigma.dtype, z_vals.dtype)
    return _CompositeWindowNative.apply(rgb_sigma.to(dtype), z_vals.to(dtype), occupied, start, end,
                                        transmittance.to(dtype), float(eps), clamp_mode)


@_backend.when_native_loaded
def _register_native():
    def fake_grid_occupied(points, grid, lo, hi):
        return points.new_empty(points.shape[:2], dtype=torch.bool)

    def fake_march_window(need, start, alive, k):
        return start.new_empty(start.shape)

    def fake_composite_window(rgb_sigma, z_vals, occupied, start, end, transmittance, eps, clamp_mode):
        R, S, C1 = rgb_sigma.shape
        return (rgb_sigma.new_empty(R, S), rgb_sigma.new_empty(R, C1), rgb_sigma.new_empty(R),
                start.new_empty(R))

    for name, fake, path in (("grid_occupied", fake_grid_occupied, _GridOccupiedNative),
                             ("march_window", fake_march_window, _MarchWindowNative),
                             ("composite_window", fake_composite_window, _CompositeWindowNative)):
        _backend.register_fake(f"pigan::{name}", fake)
        _autograd.register_autograd(f"pigan::{name}", path)


GRID_OCCUPIED = _backend.Op("grid_occupied", reference=_grid_occupied_impl, native=_GridOccupiedNative.apply)
MARCH_WINDOW = _backend.Op("march_window", reference=_march_window_impl, native=_MarchWindowNative.apply)
COMPOSITE_WINDOW = _backend.Op("composite_window", reference=_composite_window_impl,
                               native=_composite_window_native)
