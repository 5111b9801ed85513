"""The optimisation of an inversion: fit a frozen generator's latent (and optionally the pose) to one
image (and, for a semantic generator, its label map), keeping the best iterate of clean checks and
restarting from it when a check is far worse. What is minimised is an objective of
``pigan.invert.objectives`` (pi-GAN's pixel MSE by default); ``fit_stage`` can also hold some columns of
the modulations fixed (FENeRF's editing optimises only the geometry columns)."""
from __future__ import annotations

import sys
import time

import torch

from ..common import UsageError
from ..common import progress as progress_bar
from ..data import mean_iou
from ..model.fenerf import semantic_labels
from ..model.generators import frozen
from ..model.render_options import RenderOptions
from .objectives import PixelObjective, SemanticObjective, check_mask
from .options import InvertOptions
from .pose import one_image

__all__ = ["render_latent", "render_outputs", "mean_latent", "fit_stage", "invert", "semantic_fit"]


def render_outputs(generator, freqs, phases, options: RenderOptions, pitch=None, yaw=None, jitter=True) -> dict:
    """``generator.render``'s dict (pixels [B, 3, H, W], depth, weights; a semantic generator's semantic
    [B, K, H, W] and opacity [B, H, W]) of the latent (frequencies, phase shifts) at (pitch, yaw), by
    default the mean pose; no density noise."""
    return generator.render(frequencies=freqs, phase_shifts=phases, jitter=jitter,
                            pitch=options.pitch if pitch is None else pitch,
                            yaw=options.yaw if yaw is None else yaw,
                            options=options.replace(nerf_noise=0.0))


def render_latent(generator, freqs, phases, options: RenderOptions, pitch=None, yaw=None, jitter=True):
    """Pixels [B, 3, H, W] of the latent (frequencies, phase shifts) at (pitch, yaw), by default the
    mean pose; no density noise."""
    return render_outputs(generator, freqs, phases, options, pitch, yaw, jitter)["pixels"]


@torch.no_grad()
def mean_latent(generator, num_avg: int, gen: torch.Generator):
    """The mean (frequencies, phase_shifts) [1, D] of the mapping network over ``num_avg`` z."""
    device = next(generator.parameters()).device
    z = torch.randn(num_avg, generator.z_dim, device=device, generator=gen)
    f_all, p_all = generator.siren.mapping_network(z)
    return f_all.mean(0, keepdim=True), p_all.mean(0, keepdim=True)


def _forks(device) -> list:
    return [device] if device.type == "cuda" else []


def _parametrise(generator, base, space: str, noise_std: float, gen, columns: slice | None = None):
    """(parameters, latent(anneal) -> (frequencies, phase_shifts)) of one stage. With ``columns`` the
    offsets cover only those columns of the modulations; the others are the base's, copied bit for bit
    (the annealed noise, when on, still perturbs every column of the loss's renders)."""
    if space == "z":
        z = base.detach().clone().requires_grad_(True)
        return [z], lambda anneal: generator.siren.mapping_network(z)
    avg_f, avg_p = base
    if columns is None:
        f_off = torch.zeros_like(avg_f, requires_grad=True)
        p_off = torch.zeros_like(avg_p, requires_grad=True)

        def add(t, off):
            return t + off
    else:
        index = torch.arange(avg_f.shape[1], device=avg_f.device)[columns]
        f_off = torch.zeros(avg_f.shape[0], len(index), device=avg_f.device, requires_grad=True)
        p_off = torch.zeros(avg_p.shape[0], len(index), device=avg_p.device, requires_grad=True)

        def add(t, off):
            return t.index_add(1, index, off)                  # the other columns: t's, unchanged

    def latent(anneal):
        if not anneal:
            return add(avg_f, f_off), add(avg_p, p_off)
        nf = torch.randn(avg_f.shape, device=avg_f.device, generator=gen) * noise_std * anneal
        npz = torch.randn(avg_p.shape, device=avg_p.device, generator=gen) * noise_std * anneal
        return add(avg_f + nf, f_off), add(avg_p + npz, p_off)
    return [f_off, p_off], latent


def _offset_penalty(generator, params, columns):
    """FENeRF's latent norm: the sum over the offset blocks of each block's mean square; the blocks are the
    geometry and appearance parts of the frequency and phase offsets for a semantic generator's full
    offsets, else the two offset tensors."""
    blocks = params
    if columns is None and hasattr(generator, "split_modulations"):
        blocks = [b for t in params for b in generator.split_modulations(t)]
    return sum(b.pow(2).mean() for b in blocks)


class _Checks:
    """The clean checks of one stage (no jitter, no latent noise, the same importance-sampling draws
    every time, so their scores compare): keeps the best iterate, and a check worse than
    ``backtrack`` x the best restores it with fresh Adam moments and half the learning rates."""

    def __init__(self, generator, objective, render, params, pose, opt, backtrack, clock):
        self.generator, self.objective, self.render, self.backtrack = generator, objective, render, backtrack
        self.params, self.pose, self.opt, self.clock = params, pose, opt, clock
        self.best, self.backtracks, self.trace = None, [], []

    def __call__(self, i: int, latent):
        pose = self.pose
        with torch.no_grad(), torch.random.fork_rng(devices=_forks(pose.device)):
            torch.manual_seed(0)
            f, p = latent(0)
            out = render_outputs(self.generator, f, p, self.render, pitch=pose[0:1], yaw=pose[1:2], jitter=False)
            loss, parts = self.objective(out)
            loss, parts = loss.item(), {k: v.item() for k, v in parts.items()}
        self.trace.append({"iteration": i, "loss": loss, **parts, "seconds": time.perf_counter() - self.clock,
                           "pitch": pose[0].item(), "yaw": pose[1].item()})
        best = self.best
        if best is not None and self.backtrack and loss > self.backtrack * best["loss"]:
            with torch.no_grad():
                for t, saved in zip(self.params, best["state"]):
                    t.copy_(saved)
                pose.copy_(torch.tensor([[best["pitch"]], [best["yaw"]]], device=pose.device))
            self.opt.state.clear()
            for group in self.opt.param_groups:
                group["lr"] *= 0.5
            self.backtracks.append(i)
        if best is None or loss < best["loss"]:
            maps = {k: out[k].detach() for k in ("semantic", "opacity") if k in out}
            self.best = {"iteration": i, "loss": loss, **parts, "frequencies": f.detach().clone(),
                         "phase_shifts": p.detach().clone(), "pitch": pose[0].item(), "yaw": pose[1].item(),
                         "fit": out["pixels"].detach(), **maps, "state": [t.detach().clone() for t in self.params]}


def fit_stage(generator, target, base, render: RenderOptions, pose, options: InvertOptions, gen, bar=None, *,
              iterations: int, lr: float, weight_decay: float, space: str = "offsets", clock=None, objective=None,
              columns: slice | None = None, offset_norm: float = 0.0) -> dict:
    """One optimisation from ``pose`` (pitch, yaw). ``space`` "offsets": additive offsets to the
    (frequencies, phase_shifts) pair ``base`` ([1, D] each), with annealed noise on the base; "z":
    the mapping network's input, from ``base`` ([1, z_dim]), no noise (the mapping network keeps
    every iterate on the generator's own latent manifold). Schedule, pose fitting, jitter and checks
    come from ``options``. ``clock``: the perf_counter origin of the trace's times (default: now).
    ``objective``: what is minimised (``pigan.invert.objectives``; default the pixel MSE against
    ``target`` [1, 3, H, W], which may then be None). In "offsets" space, ``columns`` restricts the
    offsets to those columns of the modulations, and ``offset_norm`` > 0 adds that weight x FENeRF's
    offset norm (``_offset_penalty``) to the loss (not to the checks' scores).
    Returns {"best", "final", "losses" (the minimised loss per iteration), "checks" ([(iteration, the
    objective's clean loss)]), "backtracks", "trace"}."""
    objective = objective if objective is not None else PixelObjective(target)
    device = next(generator.parameters()).device
    columns = columns if space == "offsets" else None
    params, latent = _parametrise(generator, base, space, options.noise_std, gen, columns)
    groups = [{"params": params}]
    pose = torch.tensor([[float(pose[0])], [float(pose[1])]], device=device, requires_grad=options.fit_pose)
    if options.fit_pose:
        groups.append({"params": [pose], "lr": options.pose_lr, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=options.lr_step, gamma=options.lr_gamma)
    check = _Checks(generator, objective, render, params, pose, opt, options.backtrack,
                    time.perf_counter() if clock is None else clock)
    penalise = space == "offsets" and offset_norm > 0
    label = "mse" if isinstance(objective, PixelObjective) else "loss"
    losses = []
    check(0, latent)
    for i in range(iterations):
        f, p = latent((iterations - i) / iterations)
        out = render_outputs(generator, f, p, render, pitch=pose[0:1], yaw=pose[1:2], jitter=options.jitter)
        loss = objective(out)[0]
        if penalise:
            loss = loss + offset_norm * _offset_penalty(generator, params, columns)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (i + 1) % options.check_every == 0 or i + 1 == iterations:
            check(i + 1, latent)
        if bar is not None:
            bar.set_postfix({label: f"{losses[-1]:.4f}", "best": f"{check.best['loss']:.4f}"}, refresh=False)
            bar.update(1)
    last = {k: v for k, v in check.trace[-1].items() if k != "seconds"}
    final = {**last, "pitch": pose[0].item(), "yaw": pose[1].item()}
    return {"best": check.best, "final": final, "losses": losses,
            "checks": [(c["iteration"], c["loss"]) for c in check.trace], "backtracks": check.backtracks,
            "trace": check.trace}


def _stages(generator, objective, base, render, starts, o: InvertOptions, gen, bar, clock, offset_norm):
    """The start-pose search, the z stage and the offsets stage: (offsets run, z stage run or None,
    chosen start pose)."""
    if o.z_iterations:
        # z first: the mapping network confines the latent to the generator's manifold, where it
        # cannot imitate a pose change as freely as raw offsets; the offsets then refine.
        first = dict(base=torch.zeros(1, generator.z_dim, device=base[0].device), lr=o.z_lr, weight_decay=0.0,
                     space="z")
    else:
        first = dict(base=base, lr=o.offsets_lr, weight_decay=o.weight_decay, space="offsets")

    def stage(pose, iterations, base, **kw):
        return fit_stage(generator, None, base, render, pose, o, gen, bar, iterations=iterations, clock=clock,
                         objective=objective, offset_norm=offset_norm, **kw)

    start = starts[0]
    if len(starts) > 1:
        trials = [(stage(pose, o.search_iterations, **first)["best"]["loss"], pose) for pose in starts]
        start = min(trials)[1]
    pose0, z_stage = start, None
    if o.z_iterations:
        z_stage = stage(start, o.z_iterations, **first)
        zb = z_stage["best"]
        base, pose0 = (zb["frequencies"], zb["phase_shifts"]), (zb["pitch"], zb["yaw"])
    run = stage(pose0, o.iterations, base, lr=o.offsets_lr, weight_decay=o.weight_decay, space="offsets")
    return run, z_stage, start


def invert(generator, image: torch.Tensor, options: InvertOptions | None = None, *, init: tuple | None = None,
           progress: bool = False, mask: torch.Tensor | None = None) -> dict:
    """Fit ``image`` ([3, H, W] or [1, 3, H, W] in [-1, 1]) with the frozen ``generator`` (left as it
    was). ``options``: see ``InvertOptions``. ``init``: a starting (frequencies, phase_shifts)
    [1, 9H] instead of the mean latent (e.g. to refine an earlier fit, or an encoder's prediction;
    excludes a z stage). With ``iterations`` 0 (``encoder_start`` only) the start is the result.
    ``progress``: a tqdm bar on stderr. ``mask``: for a semantic generator, the image's label map
    ([H, W] or [1, H, W], 0 the background, 1..K its classes; the image's size): FENeRF's inversion,
    fitting the image and the mask together (``InvertOptions.weights``).

    The returned latent and pose are the best iterate seen (clean renders checked every
    ``check_every`` iterations), never a later, worse one. Returns {"frequencies", "phase_shifts"
    ([1, D] raw mapping-space values), "pitch", "yaw", "fit" ([1, 3, H, W] clean render of them),
    "mse" (its MSE), "loss" (its objective: the MSE, or with a mask the weighted sum), "best_iteration",
    "final" (loss, MSE, iteration and pose of the last iterate), "losses" (per iteration), "checks"
    ([(iteration, clean loss)]), "backtracks" (iterations of the restarts), "avg_frequencies",
    "avg_phase_shifts", "options" (the RenderOptions used), "start_pose", "z_stage" (its best:
    iteration, loss, mse, pitch, yaw)}; "losses" and "checks" are the offsets stage's. A semantic
    generator's fit adds "semantic" [1, K, H, W], "opacity" [1, H, W] and "labels" [1, H, W] (its label
    map); with a mask also "semantic_mse", "mask" and "miou" / "per_class_iou" (the fitted label map
    against the mask, ``pigan.data.mean_iou``, background included).
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
    image_weight, semantic_weight, offset_norm = o.weights(mask is not None)
    if mask is None:
        objective = PixelObjective(target)
    else:
        mask = check_mask(mask, generator, image.shape[-1]).to(device)
        objective = SemanticObjective(target, mask, generator.num_classes, image_weight, semantic_weight)
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
            run, z_stage, start = _stages(generator, objective, base, render, starts, o, gen, bar, clock, offset_norm)
        if bar is not None:
            bar.close()
    best = run["best"]
    result = {"frequencies": best["frequencies"], "phase_shifts": best["phase_shifts"], "pitch": best["pitch"],
              "yaw": best["yaw"], "fit": best["fit"], "mse": best["mse"], "loss": best["loss"],
              "best_iteration": best["iteration"], "final": run["final"], "losses": run["losses"],
              "checks": run["checks"], "backtracks": run["backtracks"], "trace": run["trace"],
              "avg_frequencies": avg_f, "avg_phase_shifts": avg_p, "options": render, "start_pose": start,
              "z_stage": None if z_stage is None else {k: z_stage["best"][k]
                                                       for k in ("iteration", "loss", "mse", "pitch", "yaw")}}
    if "semantic" in best:
        result.update(semantic_fit(best["semantic"], best["opacity"], mask))
        if mask is not None:
            result["semantic_mse"] = best["semantic_mse"]
    return result


def semantic_fit(semantic, opacity, mask=None) -> dict:
    """{"semantic", "opacity", "labels"} of a semantic render ([1, K, H, W], [1, H, W]; the label map by
    ``semantic_labels``), with a target ``mask`` [1, H, W] also "mask", "miou" and "per_class_iou" (a
    list, NaN for classes in neither map) of the label map against it."""
    labels = semantic_labels(semantic, opacity)                                  # [1, H, W]
    out = {"semantic": semantic, "opacity": opacity, "labels": labels}
    if mask is not None:
        miou, per_class = mean_iou(labels.cpu(), mask.cpu(), semantic.shape[1] + 1)
        out.update({"mask": mask, "miou": miou, "per_class_iou": per_class.tolist()})
    return out
