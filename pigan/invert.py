"""`pigan invert`: fit a frozen generator's latent to a photo, then render novel views (pi-GAN's
inversion).

Start from the mean frequencies and phase shifts of the mapping network over 10 000 z; optimise
additive offsets with Adam (lr 1e-2, weight decay 1e-4, learning rate x0.75 every 100 iterations)
for ~700 iterations; the loss is the MSE between the render at the mean pose and the target. The
fitted (frequencies, phases) then render any other pose. pi-GAN also adds annealed noise
0.03 * randn * (1 - i/n) to the averages and jitters the sample depths; both are off by default
(``--noise 0.03 --jitter`` restore them): without them the clean error falls monotonically on the
demo model's images, and ends lower (see README).

Every ``check_every`` iterations a clean render (fixed importance samples, no noise) is scored; the
best iterate is returned with the final one's score, and a check far worse than the best restarts
from the best at half the learning rate: with Adam at lr 1e-2 every raw frequency offset moves by
up to lr per step and the siren multiplies it by 15, so late steps can overshoot (on the demo model
under pi-GAN's noisy loss, the density grows until it fills the frame and the error climbs back up).

``--fit-pose`` optimises pitch and yaw too. The raw offsets are free enough to imitate a pose
change (on the demo model a fixed-pose fit of a render 17 degrees off in yaw scores as high as a fit
at the true pose), so the pose is fitted first together with the mapping network's z (``z_iterations``,
from z = 0): z keeps the latent on the generator's own manifold, where a pose change cannot be
hidden as easily; the offsets then refine from that z and pose. The start pose is the one the
checkpoint's discriminator predicts when its position head was trained (pos_lambda > 0: D regresses
the (pitch, yaw) each fake was rendered at), else the best of a small grid of poses after a short fit.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import imaging, ops
from .cli import EXIT_CODES_HELP, ArgumentParser, CommandError, UsageError, check_output_dir, pick_device, run_command, writing
from .data import IMAGE_EXTENSIONS, _load_rgb, _square_crop_resize, _to_tensor
from .logging_utils import plot_curves
from .invert_pose import checkpoint_pose_head, discriminator_pose, one_image, pose_grid
from .render_options import RenderOptions


def load_image(path, img_size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """An image file as [3, img_size, img_size] in [-1, 1] (centre square crop, resize)."""
    return _to_tensor(_square_crop_resize(_load_rgb(Path(path)), img_size, crop_fraction))


def psnr(a: torch.Tensor, b: torch.Tensor, value_range: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak ``value_range``)."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10 * math.log10(value_range ** 2 / mse)


def _render(generator, freqs, phases, options: RenderOptions, pitch=None, yaw=None, jitter=True):
    """Pixels [B, 3, H, W] at (pitch, yaw), by default the mean pose; no density noise."""
    return generator.render(frequencies=freqs, phase_shifts=phases, jitter=jitter,
                            pitch=options.pitch if pitch is None else pitch,
                            yaw=options.yaw if yaw is None else yaw,
                            options=options.replace(nerf_noise=0.0))["pixels"]


def _fit(generator, target, base, opts, pitch, yaw, *, iterations, lr, weight_decay, lr_step,
         lr_gamma, noise_std, jitter, fit_pose, pose_lr, check_every, backtrack, gen, bar, space="offsets"):
    """One optimisation from (pitch, yaw). ``space`` "offsets": additive offsets to the (frequencies,
    phase_shifts) pair ``base`` ([1, D] each), with annealed noise on the base; "z": the mapping
    network's input, from ``base`` ([1, z_dim]), no noise (the mapping network keeps every iterate
    on the generator's own latent manifold). Keeps the iterate whose clean render (no jitter, no
    latent noise, the same importance-sampling draws every time; checked every ``check_every``
    iterations and at the end) fits best. A check worse than ``backtrack`` x the best restarts from
    the best iterate with fresh Adam moments and half the learning rates."""
    device = target.device
    fork = [device] if device.type == "cuda" else []
    if space == "z":
        z = base.detach().clone().requires_grad_(True)
        params = [z]

        def latent(noisy):
            return generator.siren.mapping_network(z)
    else:
        avg_f, avg_p = base
        f_off = torch.zeros_like(avg_f, requires_grad=True)
        p_off = torch.zeros_like(avg_p, requires_grad=True)
        params = [f_off, p_off]

        def latent(anneal):
            if not anneal:
                return avg_f + f_off, avg_p + p_off
            nf = torch.randn(avg_f.shape, device=device, generator=gen) * noise_std * anneal
            npz = torch.randn(avg_p.shape, device=device, generator=gen) * noise_std * anneal
            return avg_f + nf + f_off, avg_p + npz + p_off
    groups = [{"params": params}]
    pose = torch.tensor([[float(pitch)], [float(yaw)]], device=device, requires_grad=fit_pose)
    if fit_pose:
        groups.append({"params": [pose], "lr": pose_lr, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    losses, checks, best, backtracks = [], [], None, []

    def check(i):
        nonlocal best
        with torch.no_grad(), torch.random.fork_rng(devices=fork):
            torch.manual_seed(0)
            f, p = latent(0)
            fit = _render(generator, f, p, opts, pitch=pose[0:1], yaw=pose[1:2], jitter=False)
            mse = F.mse_loss(fit.float(), target).item()
        checks.append((i, mse))
        if best is not None and backtrack and mse > backtrack * best["mse"]:
            with torch.no_grad():
                for t, saved in zip(params, best["state"]):
                    t.copy_(saved)
                pose.copy_(torch.tensor([[best["pitch"]], [best["yaw"]]], device=device))
            opt.state.clear()
            for group in opt.param_groups:
                group["lr"] *= 0.5
            backtracks.append(i)
        if best is None or mse < best["mse"]:
            best = {"iteration": i, "mse": mse, "frequencies": f.detach().clone(),
                    "phase_shifts": p.detach().clone(), "pitch": pose[0].item(), "yaw": pose[1].item(),
                    "fit": fit.detach(), "state": [t.detach().clone() for t in params]}

    check(0)
    for i in range(iterations):
        f, p = latent((iterations - i) / iterations)
        frame = _render(generator, f, p, opts, pitch=pose[0:1], yaw=pose[1:2], jitter=jitter)
        loss = F.mse_loss(frame.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (i + 1) % check_every == 0 or i + 1 == iterations:
            check(i + 1)
        if bar is not None:
            bar.set_postfix(mse=f"{losses[-1]:.4f}", best=f"{best['mse']:.4f}", refresh=False)
            bar.update(1)
    final = {"iteration": checks[-1][0], "mse": checks[-1][1], "pitch": pose[0].item(), "yaw": pose[1].item()}
    return {"best": best, "final": final, "losses": losses, "checks": checks, "backtracks": backtracks}


def invert(generator, image: torch.Tensor, *, iterations: int = 700, lr: float | None = None,
           weight_decay: float = 1e-4, lr_step: int = 100, lr_gamma: float = 0.75, noise_std: float = 0.0,
           num_avg: int = 10000, options: RenderOptions | None = None, jitter: bool = False, seed: int | None = 0,
           progress: bool = False, fit_pose: bool = False, pose_lr: float = 5e-3,
           start_poses: list | None = None, search_iterations: int = 30, check_every: int = 10,
           backtrack: float = 1.5, init: tuple | None = None, z_iterations: int = 0, z_lr: float = 3e-2) -> dict:
    """Fit ``image`` ([3, H, W] or [1, 3, H, W] in [-1, 1]) with the frozen ``generator``.

    ``options``: render settings (default ``RenderOptions()``; img_size comes from the image).
    ``fit_pose``: optimise pitch and yaw (radians, Adam at ``pose_lr``) with the offsets. With several
    ``start_poses`` [(pitch, yaw), ...] (default: the mean pose only), each gets ``search_iterations``
    first and the full fit starts from the one whose render fits best. ``init``: a starting
    (frequencies, phase_shifts) [1, 9H] instead of the mean latent (e.g. to refine an earlier fit).
    ``z_iterations`` > 0: first fit the mapping network's input z (from z = 0, Adam at ``z_lr``, no
    latent noise; with the pose under ``fit_pose``; the start-pose search runs in this stage), then
    the offsets from its best (frequencies, phase_shifts) and pose ("z_stage" reports its best).
    ``lr``: the offsets' Adam step; default 1e-2 (pi-GAN's) from the mean latent, 5e-3 after a z
    stage, whose latent is already close (at 1e-2 the first steps from there can overshoot).

    The returned latent and pose are the best iterate seen (clean renders checked every
    ``check_every`` iterations), never a later, worse one; a check worse than ``backtrack`` x the
    best (0: never) restarts from the best iterate at half the learning rate (``backtracks`` lists
    the iterations where that happened). Returns {"frequencies", "phase_shifts"
    ([1, D] raw mapping-space values), "pitch", "yaw", "fit" ([1, 3, H, W] clean render of them),
    "mse" (its MSE), "best_iteration", "final" (MSE, iteration and pose of the last iterate),
    "losses" (per iteration), "checks" ([(iteration, clean MSE)]), "avg_frequencies",
    "avg_phase_shifts", "options", "start_pose", "z_stage"}; "losses" and "checks" are the
    offsets stage's.
    """
    image = one_image(image, square=True)                              # [1, 3, H, W]
    for name, v in (("iterations", iterations), ("lr_step", lr_step), ("num_avg", num_avg),
                    ("check_every", check_every), ("search_iterations", search_iterations)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(z_iterations, bool) or not isinstance(z_iterations, int) or z_iterations < 0:
        raise ValueError(f"z_iterations must be a non-negative int, got {z_iterations!r}")
    if z_iterations and init is not None:
        raise ValueError("init and z_iterations exclude each other (the z stage chooses the starting latent)")
    if lr is None:
        lr = 5e-3 if z_iterations else 1e-2
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    opts = (options or RenderOptions()).replace(img_size=image.shape[-1])
    starts = list(start_poses) if start_poses else [(opts.pitch, opts.yaw)]
    device = next(generator.parameters()).device
    target = image.to(device)

    was_training = generator.training
    generator.eval()
    flags = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else torch.seed())
    kw = dict(lr=lr, weight_decay=weight_decay, lr_step=lr_step, lr_gamma=lr_gamma, noise_std=noise_std,
              jitter=jitter, fit_pose=fit_pose, pose_lr=pose_lr, check_every=check_every,
              backtrack=backtrack, gen=gen)
    try:
        with torch.no_grad():
            z = torch.randn(num_avg, generator.z_dim, device=device, generator=gen)
            f_all, p_all = generator.siren.mapping_network(z)
            avg_f, avg_p = f_all.mean(0, keepdim=True), p_all.mean(0, keepdim=True)
            del f_all, p_all
        base_f, base_p = avg_f, avg_p
        if init is not None:
            base_f, base_p = (t.detach().to(device=device, dtype=avg_f.dtype).reshape(avg_f.shape) for t in init)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            total = iterations + z_iterations + (search_iterations * len(starts) if len(starts) > 1 else 0)
            bar = tqdm(total=total, desc="invert", dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        fork = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=device)))
            if z_iterations:
                # z first: the mapping network confines the latent to the generator's manifold, where
                # it cannot imitate a pose change as freely as raw offsets; the offsets then refine.
                base, zkw = torch.zeros(1, generator.z_dim, device=device), dict(kw, lr=z_lr, weight_decay=0.0)
                fit_space = dict(space="z")
            else:
                base, zkw, fit_space = (base_f, base_p), kw, {}
            start = starts[0]
            if len(starts) > 1:
                trials = [(_fit(generator, target, base, opts, p0, y0, iterations=search_iterations,
                                bar=bar, **zkw, **fit_space)["best"]["mse"], (p0, y0)) for p0, y0 in starts]
                start = min(trials)[1]
            pose0 = start
            z_stage = None
            if z_iterations:
                z_stage = _fit(generator, target, base, opts, *start, iterations=z_iterations, bar=bar, **zkw,
                               **fit_space)
                zb = z_stage["best"]
                base_f, base_p, pose0 = zb["frequencies"], zb["phase_shifts"], (zb["pitch"], zb["yaw"])
            run = _fit(generator, target, (base_f, base_p), opts, *pose0, iterations=iterations, bar=bar, **kw)
            if bar is not None:
                bar.close()
    finally:
        for p, f in zip(generator.parameters(), flags):
            p.requires_grad_(f)
        generator.train(was_training)
    best = run["best"]
    return {"frequencies": best["frequencies"], "phase_shifts": best["phase_shifts"], "pitch": best["pitch"],
            "yaw": best["yaw"], "fit": best["fit"], "mse": best["mse"], "best_iteration": best["iteration"],
            "final": run["final"], "losses": run["losses"], "checks": run["checks"],
            "backtracks": run["backtracks"],
            "avg_frequencies": avg_f, "avg_phase_shifts": avg_p, "options": opts, "start_pose": start,
            "z_stage": None if z_stage is None else {k: z_stage["best"][k]
                                                     for k in ("iteration", "mse", "pitch", "yaw")}}


@torch.no_grad()
def novel_views(generator, freqs, phases, options: RenderOptions, yaws, pitches=None) -> torch.Tensor:
    """Renders [len(yaws), 3, H, W] of the fitted latent at (pitch, yaw) pairs (no jitter)."""
    pitches = pitches if pitches is not None else [options.pitch] * len(yaws)
    return torch.cat([_render(generator, freqs, phases, options, pitch=p, yaw=y, jitter=False).cpu()
                      for p, y in zip(pitches, yaws)])


def orbit_poses(options: RenderOptions, frames: int, yaw_range: float, pitch_range: float):
    """An elliptical orbit around the mean pose: (pitches, yaws) lists of length ``frames``."""
    ts = [2 * math.pi * i / frames for i in range(frames)]
    yaws = [options.yaw + yaw_range * math.sin(t) for t in ts]
    pitches = [options.pitch + pitch_range * math.cos(t) for t in ts]
    return pitches, yaws


def write_outputs(generator, result: dict, target: torch.Tensor, out: Path, name: str, views: int = 7,
                  frames: int = 36, yaw_range: float = 0.5, pitch_range: float = 0.15) -> dict:
    """Fit vs target PNG, loss curve PNG, novel-view grid PNG, orbit GIF, latent .pt."""
    out.mkdir(parents=True, exist_ok=True)
    opts = result["options"]
    paths = {}

    def save(key, filename, fn, *args, **kwargs):
        with writing(out / filename):
            paths[key] = fn(*args, out / filename, **kwargs)

    save("fit", f"{name}_fit.png", imaging.save_grid,
         torch.cat([target.reshape(1, *target.shape[-3:]).cpu(), result["fit"].cpu()]), nrow=2)
    losses = result["losses"]
    with writing(out / f"{name}_loss.png"):
        paths["loss"] = plot_curves({"mse": (list(range(1, len(losses) + 1)), losses)}, out / f"{name}_loss.png",
                                    title=f"inversion of {name}", xlabel="iteration", logy=True)
    yaws = [opts.yaw + yaw_range * (2 * i / max(views - 1, 1) - 1) for i in range(views)]
    grid = novel_views(generator, result["frequencies"], result["phase_shifts"], opts, yaws)
    save("views", f"{name}_views.png", imaging.save_grid, grid, nrow=views)
    pitches, oy = orbit_poses(opts, frames, yaw_range, pitch_range)
    video = novel_views(generator, result["frequencies"], result["phase_shifts"], opts, oy, pitches)
    save("video", f"{name}_orbit.gif", imaging.save_gif, [imaging.to_unit(f) for f in video], fps=12)
    save("latent", f"{name}_latent.pt", _save_latent, result)
    return paths


def _save_latent(result, path):
    torch.save({"frequencies": result["frequencies"].cpu(), "phase_shifts": result["phase_shifts"].cpu(),
                "pitch": result["pitch"], "yaw": result["yaw"], "mse": result["mse"],
                "best_iteration": result["best_iteration"], "final": result["final"],
                "losses": torch.tensor(result["losses"]), "options": result["options"].to_dict()}, path)
    return path


def summary(res: dict) -> str:
    """Best and final fit in one line (MSE and PSNR of clean renders; poses in degrees)."""
    db = lambda mse: float("inf") if mse == 0 else 10 * math.log10(4 / mse)   # noqa: E731
    fin = res["final"]
    text = (f"best mse {res['mse']:.5f} (PSNR {db(res['mse']):.2f} dB) at iteration {res['best_iteration']}, "
            f"final mse {fin['mse']:.5f} (PSNR {db(fin['mse']):.2f} dB)")
    if res.get("backtracks"):
        text += f"; restarted from the best iterate at iteration(s) {', '.join(map(str, res['backtracks']))}"
    o = res["options"]
    if o is not None and max(abs(res["pitch"] - o.pitch), abs(res["yaw"] - o.yaw)) > 1e-6:
        text += (f"; pose pitch {math.degrees(res['pitch']):.1f} deg, yaw {math.degrees(res['yaw']):.1f} deg "
                 f"(mean pose {math.degrees(res['options'].pitch):.1f}, {math.degrees(res['options'].yaw):.1f})")
    return text


def build_parser():
    p = ArgumentParser(prog="pigan invert", description=(
        "Fit a trained generator to an image (or every image of a folder) and render novel views."),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint written by `pigan train` or `pigan convert`")
    p.add_argument("images", help="an image file or a folder of images")
    p.add_argument("--out", "-o", default="runs/invert", help="output folder (default: runs/invert)")
    p.add_argument("--iterations", type=int, default=700)
    p.add_argument("--lr", type=float, default=None, help="Adam step of the offsets (default 1e-2, pi-GAN's; "
                   "5e-3 after the z stage of --fit-pose / --z-iterations)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--lr-step", type=int, default=100, help="decay the learning rate every k iterations")
    p.add_argument("--lr-gamma", type=float, default=0.75)
    p.add_argument("--noise", type=float, default=0.0, help="annealed noise on the averages (pi-GAN: 0.03)")
    p.add_argument("--jitter", action="store_true", help="jitter the sample depths of the loss's renders (pi-GAN)")
    p.add_argument("--num-avg", type=int, default=10000, help="z samples for the mean latent")
    p.add_argument("--img-size", type=int, default=None, help="fit resolution (default: the checkpoint's)")
    p.add_argument("--num-steps", type=int, default=None, help="samples per ray (default: the checkpoint's)")
    p.add_argument("--curriculum", default=None,
                   help="camera settings when the checkpoint has none (e.g. a converted pi-GAN one; default celeba)")
    p.add_argument("--crop-fraction", type=float, default=1.0, help="central fraction of the square crop")
    p.add_argument("--views", type=int, default=7, help="novel views in the grid")
    p.add_argument("--frames", type=int, default=36, help="frames of the orbit GIF")
    p.add_argument("--yaw-range", type=float, default=0.5, help="yaw sweep half-width (radians)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator weights, not the EMA")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto", choices=list(ops.BACKENDS))
    p.add_argument("--fit-pose", action="store_true", help="optimise yaw and pitch with the latent")
    p.add_argument("--pose-lr", type=float, default=5e-3, help="Adam step on yaw/pitch in radians")
    p.add_argument("--pose-grid", default="3x1", help="YAWSxPITCHES start poses for --fit-pose, spaced "
                   "+-1 training stddev around the mean pose; the best after --search-iterations wins")
    p.add_argument("--search-iterations", type=int, default=30)
    p.add_argument("--pose-start", choices=("auto", "discriminator", "grid"), default="auto",
                   help="--fit-pose start: the pose the checkpoint's discriminator predicts (its position head, "
                   "trained when the curriculum's pos_lambda > 0), or the --pose-grid; auto: the discriminator "
                   "when it has a trained position head, else the grid")
    p.add_argument("--z-iterations", type=int, default=None, help="iterations fitting the mapping network's z "
                   "(with the pose under --fit-pose) before the frequency/phase offsets (default: 100 with "
                   "--fit-pose, else 0)")
    p.add_argument("--z-lr", type=float, default=3e-2, help="Adam step on z")
    p.add_argument("--check-every", type=int, default=10, help="clean-render check (best iterate) every k iterations")
    p.add_argument("--backtrack", type=float, default=1.5, help="restart from the best iterate at half the "
                   "learning rate when a check is this many times worse (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def _positive(name, v, minimum=1):
    if v is not None and (not isinstance(v, int) or v < minimum):
        want = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise UsageError(f"{name} must be {want}, got {v!r}")


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoints import CheckpointError, load_checkpoint, load_generator
    from .training.config import load_curriculum, validate_curriculum

    for name in ("iterations", "lr_step", "num_avg", "img_size", "views", "frames", "search_iterations",
                 "check_every"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    _positive("--z-iterations", args.z_iterations, minimum=0)
    if not args.z_lr > 0:
        raise UsageError(f"--z-lr must be positive, got {args.z_lr}")
    z_iterations = args.z_iterations if args.z_iterations is not None else (100 if args.fit_pose else 0)
    _positive("--num-steps", args.num_steps, minimum=2)
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    try:
        grid_yaws, grid_pitches = (int(v) for v in args.pose_grid.lower().split("x"))
        if grid_yaws < 1 or grid_pitches < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--pose-grid must be YAWSxPITCHES with positive counts (e.g. 3x1), got "
                         f"{args.pose_grid!r}") from None
    if args.backtrack < 0 or 0 < args.backtrack <= 1:
        raise UsageError(f"--backtrack must be 0 (off) or > 1, got {args.backtrack}")
    if not args.pose_lr > 0:
        raise UsageError(f"--pose-lr must be positive, got {args.pose_lr}")
    if not 0 < args.crop_fraction <= 1:
        raise UsageError(f"--crop-fraction must be in (0, 1], got {args.crop_fraction}")
    src = Path(args.images).expanduser()
    if not src.exists():
        raise UsageError(f"{str(src)!r} does not exist")
    files = [src] if src.is_file() else sorted(
        p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(src)!r}")
    device = pick_device(args.device)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        generator = load_generator(args.checkpoint, map_location=device, use_ema=not args.no_ema)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from exc
    config = ckpt.get("config")
    if not config or args.curriculum:
        config = load_curriculum(args.curriculum or "celeba")
        validate_curriculum(config)
    opts = RenderOptions.from_curriculum(config, img_size=args.img_size, num_steps=args.num_steps)
    head = None
    if args.fit_pose and args.pose_start != "grid":
        try:
            head = checkpoint_pose_head(args.checkpoint, ckpt, device)
        except CheckpointError as exc:
            raise UsageError(str(exc)) from exc
        if head is None and args.pose_start == "discriminator":
            raise UsageError("--pose-start discriminator needs a checkpoint with a discriminator trained with "
                             "pos_lambda > 0 (a position head) at a resolution it takes")
    out = check_output_dir(args.out)

    with ops.use_backend(args.backend):
        failed = 0
        for path in files:
            try:
                target = load_image(path, opts.img_size, args.crop_fraction)
            except Exception as exc:
                print(f"skipping {path}: cannot read it ({type(exc).__name__}: {exc})", file=sys.stderr)
                failed += 1
                continue
            starts = None
            if args.fit_pose:
                starts = ([discriminator_pose(head[0], target, alpha=head[1], size=head[2])] if head is not None
                          else pose_grid(opts, grid_yaws, grid_pitches))
            res = invert(generator, target, iterations=args.iterations, lr=args.lr,
                         weight_decay=args.weight_decay, lr_step=args.lr_step, lr_gamma=args.lr_gamma,
                         noise_std=args.noise, jitter=args.jitter, num_avg=args.num_avg, options=opts,
                         seed=args.seed,
                         progress=not args.no_progress, fit_pose=args.fit_pose, pose_lr=args.pose_lr,
                         start_poses=starts, search_iterations=args.search_iterations,
                         check_every=args.check_every, backtrack=args.backtrack, z_iterations=z_iterations,
                         z_lr=args.z_lr)
            paths = write_outputs(generator, res, target, out, path.stem, views=args.views,
                                  frames=args.frames, yaw_range=args.yaw_range)
            print(f"{path.name}: {summary(res)}; wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    if failed == len(files):
        raise CommandError("none of the images could be read")
    return 0


def main(argv=None) -> int:
    """``pigan invert CHECKPOINT IMAGES [options]``."""
    return run_command("pigan invert", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
