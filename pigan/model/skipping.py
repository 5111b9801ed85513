"""Renders that skip empty space: the exact marcher's pixels from fewer network evaluations.

A 3-D GAN has a new scene for every latent, so the proposal of where density is is built per latent,
per render: the siren's density at the nodes of a grid (``grid_size_for``: at most ``GRID_SIZE``^3
cells, at most ``GRID_SHARE`` of the exact render's evaluations) spanning the box of the image's
samples; a cell is occupied where one of its corners has a density at which a sample's opacity
could reach ``ALPHA_SKIP``, and the occupied cells are dilated by one cell. The coarse pass then
evaluates only samples in occupied cells, in rounds of ``WINDOW`` samples per ray, compositing each
round in order and dropping rays whose transmittance fell below ``TERMINATE``
(``pigan.ops.skipping``). The fine samples are drawn from those coarse weights with the uniforms the
exact marcher draws (same random stream, so the same importance samples up to the skipped weights),
and the merged samples are marched the same way, the first round taking every sample up to where the
coarse pass stopped (the fine samples lie there). The last sample of every ray is always evaluated:
its interval is infinite, so any positive density there takes all remaining light. A latent whose
coarse samples are mostly occupied (``FALLBACK_SHARE``) is marched exactly.

What a skipped sample would have contributed is below ALPHA_SKIP (empty cells) or below TERMINATE
(behind termination; a stopped ray's remaining light goes to the sample it stopped at, as the exact
composite gives it to the samples just behind), so the pixels equal the exact ones to about 1e-3.
Gradients need every sample: training and inversion losses never take this path (``march`` refuses
it under grad).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pigan import ops
from pigan.ops import skipping as K
from pigan.ops.compositing import background_fill
from pigan.ops.rays import transform_points_to_world

from .render_options import RenderOptions

__all__ = ["GRID_SIZE", "ALPHA_SKIP", "TERMINATE", "WINDOW", "FALLBACK_SHARE", "Proposal", "build_proposal",
           "frustum_box", "grid_size_for", "march_skipping", "check_skipping", "SkipTally"]

GRID_SIZE = 48               # cells per side of the per-latent proposal, at most
GRID_SHARE = 0.1             # and its queries at most this share of the exact render's evaluations,
GRID_FLOOR, FLOOR_FROM = 32, 64 * 64 * 24   # but at least 32^3 cells from a 64x64, 12+12 render up
ALPHA_SKIP = 1e-4            # opacity over one coarse interval below which a cell is empty
TERMINATE = 1e-3             # transmittance below which a ray stops (the light it still had: <= 1e-3)
WINDOW = 4                   # samples evaluated per ray per round
STRAGGLERS = 16              # until fewer than 1/16 of the rays are live: then they finish in one round
FALLBACK_SHARE = 0.8         # a latent with this share of its coarse samples occupied is marched exactly:
                             # skipping the rest does not pay for the rounds' bookkeeping


@dataclass
class Proposal:
    """One latent's occupancy ``grid`` bool [1, G, G, G] over the box ``lo``..``hi`` [1, 3] (world
    space), the density ``queries`` it took and the ``seconds`` it took to build."""
    grid: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    queries: int
    seconds: float

    @property
    def occupancy(self) -> float:
        return self.grid.float().mean().item()


def check_skipping(o: RenderOptions) -> None:
    """Refuse settings whose exact render the skipping marcher cannot reproduce."""
    if o.nerf_noise:
        raise ValueError(f"skip_empty needs nerf_noise 0 (density noise makes every sample possibly "
                         f"occupied), got {o.nerf_noise}")


def grid_size_for(exact_evaluations: int) -> int:
    """Cells per side of a proposal for a render of that many exact evaluations per latent: a tenth of
    them, but never fewer than GRID_FLOOR^3 cells from a 64x64, 12+12 render up (what a proposal misses
    is thinner than its cells, whatever the image's size)."""
    share = (GRID_SHARE * exact_evaluations) ** (1 / 3) - 1
    if exact_evaluations >= FLOOR_FROM:
        share = max(share, GRID_FLOOR)
    return int(max(4, min(GRID_SIZE, share)))


def _activated(sigma, clamp_mode):
    return F.relu(sigma) if clamp_mode == "relu" else F.softplus(sigma)


def _density_threshold(o: RenderOptions) -> float:
    """The density whose opacity over the longest jittered coarse interval is ALPHA_SKIP."""
    longest = 2 * (o.ray_end - o.ray_start) / max(o.num_steps - 1, 1)
    return -math.log1p(-ALPHA_SKIP) / longest


def _siren(generator, points, freqs, phases, dirs, max_batch_size):
    """siren outputs [M, C+1] at points [M, 3] seen along dirs [M, 3] for one latent [1, D]."""
    return generator._siren_eval(points[None], freqs, phases, dirs[None], max_batch_size)[0]


def frustum_box(points_cam: torch.Tensor, dirs_cam: torch.Tensor, cam2world: torch.Tensor):
    """The world-space box (lo, hi) [B, 3] of camera-space points [B, N, 3] (e.g. the ends of a view's
    rays) on rays dirs_cam [B, N, 3]."""
    world, _, _ = transform_points_to_world(points_cam[:, :, None], dirs_cam, cam2world)
    return world[:, :, 0].amin(1), world[:, :, 0].amax(1)


@torch.no_grad()
def build_proposal(generator, frequencies, phase_shifts, lo, hi, o: RenderOptions, grid_size: int = GRID_SIZE):
    """The occupancy proposal of one latent ([1, D] each) over the box lo..hi ([1, 3])."""
    t0 = time.perf_counter()
    # a small margin, so that points on the box's far faces fall inside the grid's half-open cells
    pad = (hi - lo) * 1e-3 + 1e-6
    lo, hi = lo - pad, hi + pad
    nodes = K.grid_nodes(lo, hi, grid_size)[0]                                 # [(G+1)^3, 3]
    dirs = torch.zeros_like(nodes)
    dirs[:, -1] = -1
    out = _siren(generator, nodes, frequencies, phase_shifts, dirs, o.max_batch_size)
    n = grid_size + 1
    density = _activated(out[:, -1].float(), o.clamp_mode).reshape(1, n, n, n)
    grid = K.occupancy_grid(density, _density_threshold(o), dilation=1)
    return Proposal(grid, lo, hi, nodes.shape[0], time.perf_counter() - t0)


def _march_rounds(evaluate, z, occupied, values, known, o: RenderOptions, terminate: float, window: int,
                  first_end=None):
    """March rays [r] through samples z [r, S] in rounds of ``window`` evaluations, stopping a ray below
    ``terminate``; values [r, S, C+1] hold the known outputs and receive the evaluated ones.
    ``first_end`` [r]: the first round evaluates every sample still needed before it instead (where the
    ray is expected to stop: fewer rounds, larger network calls).

    A stopped ray's remaining light (below ``terminate``) goes to the sample it stopped at: the exact
    composite gives it to the samples just behind, whose colour and depth are nearly that sample's,
    where leaving it out would tint every surface pixel towards the background by up to ``terminate``.
    Returns (weights [r, S], acc [r, C+1], evaluations)."""
    r, S = z.shape
    idx = torch.arange(S, device=z.device)
    start = torch.zeros(r, dtype=torch.long, device=z.device)
    last = torch.full((r,), -1, dtype=torch.long, device=z.device)
    alive = torch.ones(r, dtype=torch.bool, device=z.device)
    T = torch.ones(r, dtype=values.dtype, device=z.device)
    weights = torch.zeros(r, S, dtype=values.dtype, device=z.device)
    acc = torch.zeros(r, values.shape[-1], dtype=values.dtype, device=z.device)
    evaluations = 0
    while True:
        live = int(alive.sum())
        if not live:
            break
        need = occupied & ~known
        if first_end is not None:
            end = torch.where(alive, torch.maximum(first_end, start), start)
            first_end = None
        else:
            # the last few live rays finish in one round: a round costs bookkeeping over every ray and a
            # network call, however few samples it evaluates
            end = K.march_window(need, start, alive, window if live * STRAGGLERS > r else S)
        sel = need & (idx[None] >= start[:, None]) & (idx[None] < end[:, None])
        rows, cols = sel.nonzero(as_tuple=True)
        if rows.numel():
            values[rows, cols] = evaluate(rows, cols).to(values.dtype)
            known |= sel
            evaluations += rows.numel()
        w, a, T, stop = K.composite_window(values, z, occupied, start, end, T, terminate, o.clamp_mode)
        weights += w
        acc += a
        last = torch.where(stop > start, stop - 1, last)
        stopped = alive & (stop < S) & (T < terminate)
        if stopped.any():
            rays = stopped.nonzero()[:, 0]
            at = last[rays]
            rest = T[rays]
            weights[rays, at] += rest
            acc[rays, :-1] += rest[:, None] * values[rays, at, :-1]
            acc[rays, -1] += rest * z[rays, at]
        alive = alive & (stop < S) & (T >= terminate)
        start = stop
    return weights, acc, evaluations


def _finish(weights, acc, values, z, o: RenderOptions):
    """pi-GAN's end of a composite (last_back, then ``ops.compositing.background_fill``) on marched rays."""
    ws = weights.sum(-1, keepdim=True)                                         # [r, 1]
    rgb, depth = acc[:, :-1], acc[:, -1:]
    if o.last_back:
        rest = 1 - ws
        weights = weights.clone()
        weights[:, -1:] += rest
        rgb = rgb + rest * values[:, -1, :-1]
        depth = depth + rest * z[:, -1:]
    return background_fill(rgb, ws, o.white_back, o.fill_mode), depth, weights


def _march_one(generator, f, p, points, origins, dirs, z, u, proposal, occ, o: RenderOptions):
    """One latent's rays: points [r, S, 3], origins / dirs [r, 3], z [r, S], u [r, S] or None, occ
    bool [r, S] (the coarse samples in occupied cells) -> (rgb [r, C], depth [r, 1], weights [r, S'],
    evaluations). ``proposal`` None: every sample, in one round, without termination (the exact
    marcher's result)."""
    r, S = z.shape
    terminate, window = (TERMINATE, WINDOW) if proposal is not None else (0.0, 2 * S)

    def evaluator(point_at):
        def evaluate(rows, cols):
            d = dirs[rows]
            if o.lock_view_dependence:
                d = torch.zeros_like(d)
                d[:, -1] = -1
            return _siren(generator, point_at(rows, cols), f, p, d, o.max_batch_size)
        return evaluate

    def occupied_at(pts):
        if proposal is None:
            return torch.ones(pts.shape[:2], dtype=torch.bool, device=pts.device)
        return K.grid_occupied(pts.reshape(1, -1, 3), proposal.grid, proposal.lo.to(pts.dtype),
                               proposal.hi.to(pts.dtype)).reshape(pts.shape[:2])

    occ = torch.ones_like(occ) if proposal is None else occ.clone()
    occ[:, -1] = True                                    # the infinite last interval
    values = points.new_zeros(r, S, generator.siren.output_dim)
    known = torch.zeros(r, S, dtype=torch.bool, device=z.device)
    weights, acc, evaluations = _march_rounds(evaluator(lambda i, j: points[i, j]), z, occ, values, known, o,
                                              terminate, window)
    if not o.hierarchical_sample:
        rgb, depth, weights = _finish(weights, acc, values, z, o)
        return rgb, depth, weights, evaluations
    mids = 0.5 * (z[:, :-1] + z[:, 1:])
    z_fine = ops.sample_pdf(mids, (weights + 1e-5)[:, 1:-1], S, det=False, u=u)   # [r, S]
    fine = origins[:, None] + dirs[:, None] * z_fine[..., None]                   # [r, S, 3]
    z_all, order = ops.merge_samples(z[None, ..., None], z_fine[None, ..., None])
    z_all, order = z_all[0, ..., 0], order[0]                                      # [r, 2S]
    # where each coarse sample went in the merged order (order indexes cat([fine, coarse]))
    slot = torch.empty_like(order).scatter_(1, order, torch.arange(2 * S, device=z.device).expand(r, -1))
    to_coarse = slot[:, S:]                                                        # [r, S]
    merged_values = values.new_zeros(r, 2 * S, values.shape[-1])
    merged_values.scatter_(1, to_coarse[..., None].expand(-1, -1, values.shape[-1]), values)
    merged_known = torch.zeros(r, 2 * S, dtype=torch.bool, device=z.device).scatter_(1, to_coarse, known)
    merged_occ = torch.cat([occupied_at(fine), occ], 1).gather(1, order)
    merged_occ[:, -1] = True
    # the coarse points a ray did not reach in the coarse pass are recomputed along the ray like the
    # fine ones (the same point to float rounding)
    point_at = evaluator(lambda i, j: origins[i] + dirs[i] * z_all[i, j, None])
    # the merged samples up to the last coarse sample the coarse pass composited are evaluated in one
    # round: the fine samples lie where the coarse weights were, in front of where the coarse pass stopped
    reached = (weights > 0).cumsum(1).argmax(1) if proposal is not None else None
    first_end = None if reached is None else to_coarse.gather(1, reached[:, None])[:, 0] + 1
    weights, acc, more = _march_rounds(point_at, z_all, merged_occ, merged_values, merged_known, o, terminate,
                                       window, first_end)
    values = merged_values
    rgb, depth, weights = _finish(weights, acc, values, z_all, o)
    return rgb, depth, weights, evaluations + more


@torch.no_grad()
def march_skipping(generator, frequencies, phase_shifts, points_cam, z_vals, dirs_cam, cam2world,
                   o: RenderOptions, proposals=None):
    """``ImplicitGenerator3d.march`` with empty space skipped: the same arguments; returns ((rgb,
    depth, weights) as ``march``, or None when every latent's proposal is too full to skip anything:
    then the caller marches exactly) and the statistics {"samples_per_ray", "exact_samples_per_ray",
    "proposal_queries", "proposal_seconds", "occupancy" (of the grids' cells), "occupied_share" (of
    the coarse samples), "fallback"} (fallback: images rendered exactly because their proposal was too
    full). ``proposals``: one ``Proposal`` per latent
    (default: built from the points' box). Draws the exact marcher's random numbers in its order, so
    a render seeded alike gets its importance samples."""
    check_skipping(o)
    B, R, S, _ = points_cam.shape
    exact = S * (2 if o.hierarchical_sample else 1)
    dtype = torch.float64 if frequencies.dtype == torch.float64 else torch.float32
    points, dirs, origins = transform_points_to_world(points_cam.to(dtype), dirs_cam.to(dtype), cam2world.to(dtype))
    z = z_vals.to(dtype)[..., 0]                                                   # [B, R, S]
    if proposals is None:
        flat = points.reshape(B, R * S, 3)
        size = grid_size_for(R * exact)
        proposals = [build_proposal(generator, frequencies[b:b + 1], phase_shifts[b:b + 1], flat[b:b + 1].amin(1),
                                    flat[b:b + 1].amax(1), o, size) for b in range(B)]
    stats = {"exact_samples_per_ray": exact, "fallback": 0, "samples_per_ray": float(exact),
             "proposal_queries": sum(p.queries for p in proposals),
             "proposal_seconds": sum(p.seconds for p in proposals),
             "occupancy": sum(p.occupancy for p in proposals) / B}
    # each latent's coarse samples in occupied cells; their share is what skipping could save at most
    occs = [K.grid_occupied(points[b].reshape(1, -1, 3), q.grid, q.lo.to(dtype), q.hi.to(dtype)).reshape(R, S)
            for b, q in enumerate(proposals)]
    shares = [occ.float().mean().item() for occ in occs]
    stats["occupied_share"] = sum(shares) / B
    if all(share > FALLBACK_SHARE for share in shares):
        # nothing to skip: the caller's exact marcher, which draws its own random numbers
        stats["fallback"] = B
        return None, stats
    # the exact marcher's draws, in its order: coarse density noise, the importance uniforms
    ops.draw_noise(z_vals, o.nerf_noise)
    u = None
    if o.hierarchical_sample:
        u = ops.draw_uniforms(z.reshape(B * R, S)[:, 1:], S, det=False).reshape(B, R, S)
    rgbs, depths, all_weights, evaluations = [], [], [], 0
    for b in range(B):
        proposal = proposals[b] if shares[b] <= FALLBACK_SHARE else None
        stats["fallback"] += proposal is None
        out = _march_one(generator, frequencies[b:b + 1], phase_shifts[b:b + 1], points[b], origins[b], dirs[b],
                         z[b], None if u is None else u[b], proposal, occs[b], o)
        rgbs.append(out[0])
        depths.append(out[1])
        all_weights.append(out[2])
        evaluations += out[3]
    ops.draw_noise(torch.empty(B, R, all_weights[0].shape[-1], 1, device=z.device), o.nerf_noise)
    stats["samples_per_ray"] = evaluations / (B * R)
    return (torch.stack(rgbs), torch.stack(depths), torch.stack(all_weights)[..., None]), stats


class SkipTally:
    """Totals of the skipping statistics over many renders, for one line of report."""

    def __init__(self):
        self.images = self.rays = self.queries = self.fallback = 0
        self.evaluations = self.exact = self.proposal_seconds = self.seconds = 0.0

    def add(self, stats: dict, rays: int, images: int = 1, seconds: float = 0.0) -> None:
        """``stats`` of a march over ``rays`` rays (``march_skipping``'s), ``seconds`` of rendering."""
        self.rays += rays
        self.evaluations += stats["samples_per_ray"] * rays
        self.exact += stats["exact_samples_per_ray"] * rays
        self.queries += stats["proposal_queries"]
        self.proposal_seconds += stats["proposal_seconds"]
        self.fallback += stats["fallback"]
        self.images += images
        self.seconds += seconds

    def summary(self) -> str:
        if not self.rays:
            return "empty-space skipping: nothing rendered"
        per_ray, exact = self.evaluations / self.rays, self.exact / self.rays
        spent = per_ray + self.queries / self.rays
        share = f", {100 * self.proposal_seconds / self.seconds:.0f}% of the render time" if self.seconds else ""
        return (f"empty-space skipping: {per_ray:.1f} of {exact:.0f} samples per ray evaluated; with the "
                f"proposals' {self.queries // max(self.images, 1)} density queries per image, "
                f"{exact / max(spent, 1e-9):.1f}x fewer network evaluations than exact "
                f"(proposals {self.proposal_seconds:.1f} s in all{share}); {self.fallback} of {self.images} "
                "images rendered exactly (proposal too full to skip); --exact renders every sample")
