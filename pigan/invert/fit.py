"""The optimisation of an inversion: fit a frozen generator's latent (and optionally the pose) to one
image, keeping the best iterate of clean checks and restarting from it when a check is far worse."""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from ..common import UsageError
from ..common import progress as progress_bar
from ..model.generators import frozen
from ..model.render_options import RenderOptions
from .options import InvertOptions
from .pose import one_image

__all__ = ["render_latent", "mean_latent", "fit_stage", "invert"]


def render_latent(generator, freqs, phases, options: RenderOptions, pitch=None, yaw=None, jitter=True):
    """Pixels [B, 3, H, W] of the latent (frequencies, phase shifts) at (pitch, yaw), by default the
    mean pose; no density noise."""
    return generator.render(frequencies=freqs, phase_shifts=phases, jitter=jitter,
                            pitch=options.pitch if pitch is None else pitch,
                            yaw=options.yaw if yaw is None else yaw,
                            options=options.replace(nerf_noise=0.0))["pixels"]


@torch.no_grad()
def mean_latent(generator, num_avg: int, gen: torch.Generator):
    """The mean (frequencies, phase_shifts) [1, D] of the mapping network over ``num_avg`` z."""
    device = next(generator.parameters()).device
    z = torch.randn(num_avg, generator.z_dim, device=device, generator=gen)
    f_all, p_all = generator.siren.mapping_network(z)
    return f_all.mean(0, keepdim=True), p_all.mean(0, keepdim=True)


def _forks(device) -> list:
    return [device] if device.type == "cuda" else []


def _parametrise(generator, base, space: str, noise_std: float, gen):
    """(parameters, latent(anneal) -> (frequencies, phase_shifts)) of one stage."""
    if space == "z":
        z = base.detach().clone().requires_grad_(True)
        return [z], lambda anneal: generator.siren.mapping_network(z)
    avg_f, avg_p = base
    f_off = torch.zeros_like(avg_f, requires_grad=True)
    p_off = torch.zeros_like(avg_p, requires_grad=True)

    def latent(anneal):
        if not anneal:
            return avg_f + f_off, avg_p + p_off
        nf = torch.randn(avg_f.shape, device=avg_f.device, generator=gen) * noise_std * anneal
        npz = torch.randn(avg_p.shape, device=avg_p.device, generator=gen) * noise_std * anneal
        return avg_f + nf + f_off, avg_p + npz + p_off
    return [f_off, p_off], latent


class _Checks:
    """The clean checks of one stage (no jitter, no latent noise, the same importance-sampling draws
    every time, so their scores compare): keeps the best iterate, and a check worse than
    ``backtrack`` x the best restores it with fresh Adam moments and half the learning rates."""

    def __init__(self, generator, target, render, params, pose, opt, backtrack, clock):
        self.generator, self.target, self.render, self.backtrack = generator, target, render, backtrack
        self.params, self.pose, self.opt, self.clock = params, pose, opt, clock
        self.best, self.backtracks, self.trace = None, [], []

    def __call__(self, i: int, latent):
        pose = self.pose
        with torch.no_grad(), torch.random.fork_rng(devices=_forks(self.target.device)):
            torch.manual_seed(0)
            f, p = latent(0)
            fit = render_latent(self.generator, f, p, self.render, pitch=pose[0:1], yaw=pose[1:2], jitter=False)
            mse = F.mse_loss(fit.float(), self.target).item()
        self.trace.append({"iteration": i, "mse": mse, "seconds": time.perf_counter() - self.clock,
                           "pitch": pose[0].item(), "yaw": pose[1].item()})
        best = self.best
        if best is not None and self.backtrack and mse > self.backtrack * best["mse"]:
            with torch.no_grad():
                for t, saved in zip(self.params, best["state"]):
                    t.copy_(saved)
                pose.copy_(torch.tensor([[best["pitch"]], [best["yaw"]]], device=pose.device))
            self.opt.state.clear()
            for group in self.opt.param_groups:
                group["lr"] *= 0.5
            self.backtracks.append(i)
        if best is None or mse < best["mse"]:
            self.best = {"iteration": i, "mse": mse, "frequencies": f.detach().clone(),
                         "phase_shifts": p.detach().clone(), "pitch": pose[0].item(), "yaw": pose[1].item(),
                         "fit": fit.detach(), "state": [t.detach().clone() for t in self.params]}


def fit_stage(generator, target, base, render: RenderOptions, pose, options: InvertOptions, gen, bar=None, *,
              iterations: int, lr: float, weight_decay: float, space: str = "offsets", clock=None) -> dict:
    """One optimisation from ``pose`` (pitch, yaw). ``space`` "offsets": additive offsets to the
    (frequencies, phase_shifts) pair ``base`` ([1, D] each), with annealed noise on the base; "z":
    the mapping network's input, from ``base`` ([1, z_dim]), no noise (the mapping network keeps
    every iterate on the generator's own latent manifold). Schedule, pose fitting, jitter and checks
    come from ``options``. ``clock``: the perf_counter origin of the trace's times (default: now).
    Returns {"best", "final", "losses", "checks", "backtracks", "trace"}."""
    params, latent = _parametrise(generator, base, space, options.noise_std, gen)
    groups = [{"params": params}]
    pose = torch.tensor([[float(pose[0])], [float(pose[1])]], device=target.device, requires_grad=options.fit_pose)
    if options.fit_pose:
        groups.append({"params": [pose], "lr": options.pose_lr, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=options.lr_step, gamma=options.lr_gamma)
    check = _Checks(generator, target, render, params, pose, opt, options.backtrack,
                    time.perf_counter() if clock is None else clock)
    losses = []
    check(0, latent)
    for i in range(iterations):
        f, p = latent((iterations - i) / iterations)
        frame = render_latent(generator, f, p, render, pitch=pose[0:1], yaw=pose[1:2], jitter=options.jitter)
        loss = F.mse_loss(frame.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (i + 1) % options.check_every == 0 or i + 1 == iterations:
            check(i + 1, latent)
        if bar is not None:
            bar.set_postfix(mse=f"{losses[-1]:.4f}", best=f"{check.best['mse']:.4f}", refresh=False)
            bar.update(1)
    last = check.trace[-1]
    final = {"iteration": last["iteration"], "mse": last["mse"], "pitch": pose[0].item(), "yaw": pose[1].item()}
    return {"best": check.best, "final": final, "losses": losses,
            "checks": [(c["iteration"], c["mse"]) for c in check.trace], "backtracks": check.backtracks,
            "trace": check.trace}


def _stages(generator, target, base, render, starts, o: InvertOptions, gen, bar, clock):
    """The start-pose search, the z stage and the offsets stage: (offsets run, z stage run or None,
    chosen start pose)."""
    if o.z_iterations:
        # z first: the mapping network confines the latent to the generator's manifold, where it
        # cannot imitate a pose change as freely as raw offsets; the offsets then refine.
        first = dict(base=torch.zeros(1, generator.z_dim, device=target.device), lr=o.z_lr, weight_decay=0.0,
                     space="z")
    else:
        first = dict(base=base, lr=o.offsets_lr, weight_decay=o.weight_decay, space="offsets")

    def stage(pose, iterations, base, **kw):
        return fit_stage(generator, target, base, render, pose, o, gen, bar, iterations=iterations, clock=clock,
                         **kw)

    start = starts[0]
    if len(starts) > 1:
        trials = [(stage(pose, o.search_iterations, **first)["best"]["mse"], pose) for pose in starts]
        start = min(trials)[1]
    pose0, z_stage = start, None
    if o.z_iterations:
        z_stage = stage(start, o.z_iterations, **first)
        zb = z_stage["best"]
        base, pose0 = (zb["frequencies"], zb["phase_shifts"]), (zb["pitch"], zb["yaw"])
    run = stage(pose0, o.iterations, base, lr=o.offsets_lr, weight_decay=o.weight_decay, space="offsets")
    return run, z_stage, start


def invert(generator, image: torch.Tensor, options: InvertOptions | None = None, *, init: tuple | None = None,
           progress: bool = False) -> dict:
    """Fit ``image`` ([3, H, W] or [1, 3, H, W] in [-1, 1]) with the frozen ``generator`` (left as it
    was). ``options``: see ``InvertOptions``. ``init``: a starting (frequencies, phase_shifts)
    [1, 9H] instead of the mean latent (e.g. to refine an earlier fit, or an encoder's prediction;
    excludes a z stage). With ``iterations`` 0 (``encoder_start`` only) the start is the result.
    ``progress``: a tqdm bar on stderr.

    The returned latent and pose are the best iterate seen (clean renders checked every
    ``check_every`` iterations), never a later, worse one. Returns {"frequencies", "phase_shifts"
    ([1, D] raw mapping-space values), "pitch", "yaw", "fit" ([1, 3, H, W] clean render of them),
    "mse" (its MSE), "best_iteration", "final" (MSE, iteration and pose of the last iterate),
    "losses" (per iteration), "checks" ([(iteration, clean MSE)]), "backtracks" (iterations of the
    restarts), "avg_frequencies", "avg_phase_shifts", "options" (the RenderOptions used),
    "start_pose", "z_stage" (its best: iteration, mse, pitch, yaw)}; "losses" and "checks" are the
    offsets stage's.
    """
    clock = time.perf_counter()
    image = one_image(image, square=True)                              # [1, 3, H, W]
    o = options if options is not None else InvertOptions()
    if o.z_iterations and init is not None:
        raise UsageError("init and z_iterations exclude each other (the z stage chooses the starting latent)")
    if o.encoder_start and init is None:
        raise UsageError("encoder_start needs init (the encoder's predicted latent)")
    render = (o.render or RenderOptions()).replace(img_size=image.shape[-1])
    starts = list(o.start_poses) if o.start_poses else [(render.pitch, render.yaw)]
    device = next(generator.parameters()).device
    target = image.to(device)
    with frozen(generator):
        gen = torch.Generator(device=device)
        gen.manual_seed(o.seed if o.seed is not None else torch.seed())
        avg_f, avg_p = mean_latent(generator, o.num_avg, gen)
        base = (avg_f, avg_p)
        if init is not None:
            base = tuple(t.detach().to(device=device, dtype=avg_f.dtype).reshape(avg_f.shape) for t in init)
        total = o.iterations + o.z_iterations + (o.search_iterations * len(starts) if len(starts) > 1 else 0)
        bar = progress_bar(None, enabled=progress, desc="invert", total=total, file=sys.stderr, mininterval=0.5,
                           leave=True)
        with torch.random.fork_rng(devices=_forks(device)):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=device)))
            run, z_stage, start = _stages(generator, target, base, render, starts, o, gen, bar, clock)
        if bar is not None:
            bar.close()
    best = run["best"]
    return {"frequencies": best["frequencies"], "phase_shifts": best["phase_shifts"], "pitch": best["pitch"],
            "yaw": best["yaw"], "fit": best["fit"], "mse": best["mse"], "best_iteration": best["iteration"],
            "final": run["final"], "losses": run["losses"], "checks": run["checks"],
            "backtracks": run["backtracks"], "trace": run["trace"], "avg_frequencies": avg_f,
            "avg_phase_shifts": avg_p, "options": render, "start_pose": start,
            "z_stage": None if z_stage is None else {k: z_stage["best"][k]
                                                     for k in ("iteration", "mse", "pitch", "yaw")}}
