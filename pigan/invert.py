"""`pigan invert`: fit a frozen generator's latent to a photo, then render novel views (PIGAN.md
section 4).

Start from the mean frequencies and phase shifts of the mapping network over 10 000 z; optimise
additive offsets with Adam (lr 1e-2, weight decay 1e-4, learning rate x0.75 every 100 iterations)
for ~700 iterations, adding annealed noise 0.03 * randn * (1 - i/n) to the averages; the loss is
the MSE between the render at the mean pose and the target. The fitted (frequencies, phases) then
render any other pose.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import ops
from .data import IMAGE_EXTENSIONS, _load_rgb, _square_crop_resize, _to_tensor, save_image_grid
from .logging_utils import plot_curves

EXIT_USAGE = 2

# Camera and marcher settings of a render: the subset of a curriculum that ``generator.render`` takes.
RENDER_KEYS = ("fov", "ray_start", "ray_end", "num_steps", "hierarchical_sample", "clamp_mode",
               "white_back", "last_back")


def render_options(config: dict | None, img_size: int | None = None, num_steps: int | None = None) -> dict:
    """Render settings from a curriculum / checkpoint config (CelebA's camera when missing):
    {img_size, fov, ray_start, ray_end, num_steps, pitch, yaw, hierarchical_sample, clamp_mode,
    white_back, last_back}. The pose is the mean pose (v_mean, h_mean)."""
    cfg = dict(config or {})
    stages = sorted((k for k in cfg if (isinstance(k, int) and not isinstance(k, bool))
                     or (isinstance(k, str) and k.isdigit())), key=int)
    stage = {}
    for k in stages:                                   # the last non-empty stage: the final resolution
        if cfg[k]:
            stage = cfg[k]
    opts = {"img_size": stage.get("img_size", 64), "fov": cfg.get("fov", 12), "ray_start": cfg.get("ray_start", 0.88),
            "ray_end": cfg.get("ray_end", 1.12), "num_steps": stage.get("num_steps", 12),
            "pitch": cfg.get("v_mean", math.pi / 2), "yaw": cfg.get("h_mean", math.pi / 2),
            "hierarchical_sample": cfg.get("hierarchical_sample", True),
            "clamp_mode": cfg.get("clamp_mode", "relu"), "white_back": cfg.get("white_back", False),
            "last_back": cfg.get("eval_last_back", cfg.get("last_back", False))}
    if img_size is not None:
        opts["img_size"] = img_size
    if num_steps is not None:
        opts["num_steps"] = num_steps
    return opts


def load_image(path, img_size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """An image file as [3, img_size, img_size] in [-1, 1] (centre square crop, resize)."""
    return _to_tensor(_square_crop_resize(_load_rgb(Path(path)), img_size, crop_fraction))


def psnr(a: torch.Tensor, b: torch.Tensor, value_range: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak ``value_range``)."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10 * math.log10(value_range ** 2 / mse)


def _render(generator, freqs, phases, opts: dict, pitch=None, yaw=None, jitter=True):
    o = dict(opts)
    o["pitch"] = o["pitch"] if pitch is None else pitch
    o["yaw"] = o["yaw"] if yaw is None else yaw
    return generator.render(frequencies=freqs, phase_shifts=phases, jitter=jitter, nerf_noise=0.0, **o)["pixels"]


def invert(generator, image: torch.Tensor, *, iterations: int = 700, lr: float = 1e-2,
           weight_decay: float = 1e-4, lr_step: int = 100, lr_gamma: float = 0.75, noise_std: float = 0.03,
           num_avg: int = 10000, options: dict | None = None, jitter: bool = True, seed: int | None = 0,
           progress: bool = False) -> dict:
    """Fit ``image`` ([3, H, W] or [1, 3, H, W] in [-1, 1]) with the frozen ``generator``.

    ``options``: render settings (see ``render_options``; img_size comes from the image). Returns
    {"frequencies", "phase_shifts" ([1, D] raw mapping-space values), "losses" (per iteration),
    "fit" ([1, 3, H, W] render at the mean pose, no jitter), "avg_frequencies", "avg_phase_shifts"}.
    """
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"image must be a tensor [3, H, W] or [1, 3, H, W], got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"image must hold one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.shape[-1] != image.shape[-2]:
        raise ValueError(f"image must be square, got {tuple(image.shape[-2:])}")
    for name, v in (("iterations", iterations), ("lr_step", lr_step), ("num_avg", num_avg)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    opts = render_options(None) if options is None else dict(options)
    opts["img_size"] = image.shape[-1]
    device = next(generator.parameters()).device
    target = image.to(device).unsqueeze(0).float()

    was_training = generator.training
    generator.eval()
    flags = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else torch.seed())
    try:
        with torch.no_grad():
            z = torch.randn(num_avg, generator.z_dim, device=device, generator=gen)
            f_all, p_all = generator.siren.mapping_network(z)
            avg_f, avg_p = f_all.mean(0, keepdim=True), p_all.mean(0, keepdim=True)
            del f_all, p_all
        f_off = torch.zeros_like(avg_f, requires_grad=True)
        p_off = torch.zeros_like(avg_p, requires_grad=True)
        opt = torch.optim.Adam([f_off, p_off], lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
        losses = []
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=iterations, desc="invert", dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        fork = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=device)))
            for i in range(iterations):
                anneal = (iterations - i) / iterations
                nf = torch.randn(avg_f.shape, device=device, generator=gen) * noise_std * anneal
                npz = torch.randn(avg_p.shape, device=device, generator=gen) * noise_std * anneal
                frame = _render(generator, avg_f + nf + f_off, avg_p + npz + p_off, opts, jitter=jitter)
                loss = F.mse_loss(frame.float(), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                if bar is not None:
                    bar.set_postfix(mse=f"{losses[-1]:.4f}", refresh=False)
                    bar.update(1)
            if bar is not None:
                bar.close()
            freqs, phases = (avg_f + f_off).detach(), (avg_p + p_off).detach()
            with torch.no_grad():
                fit = _render(generator, freqs, phases, opts, jitter=False)
    finally:
        for p, f in zip(generator.parameters(), flags):
            p.requires_grad_(f)
        generator.train(was_training)
    return {"frequencies": freqs, "phase_shifts": phases, "losses": losses, "fit": fit.detach(),
            "avg_frequencies": avg_f, "avg_phase_shifts": avg_p, "options": opts}


@torch.no_grad()
def novel_views(generator, freqs, phases, options: dict, yaws, pitches=None) -> torch.Tensor:
    """Renders [len(yaws), 3, H, W] of the fitted latent at (pitch, yaw) pairs (no jitter)."""
    pitches = pitches if pitches is not None else [options["pitch"]] * len(yaws)
    return torch.cat([_render(generator, freqs, phases, options, pitch=p, yaw=y, jitter=False).cpu()
                      for p, y in zip(pitches, yaws)])


def save_gif(frames: torch.Tensor, path, fps: int = 12):
    """Frames [T, 3, H, W] in [-1, 1] as a looping GIF (Pillow)."""
    from PIL import Image

    arr = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    imgs = [Image.fromarray(a) for a in arr]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return path


def orbit_poses(options: dict, frames: int, yaw_range: float, pitch_range: float):
    """An elliptical orbit around the mean pose: (pitches, yaws) lists of length ``frames``."""
    ts = [2 * math.pi * i / frames for i in range(frames)]
    yaws = [options["yaw"] + yaw_range * math.sin(t) for t in ts]
    pitches = [options["pitch"] + pitch_range * math.cos(t) for t in ts]
    return pitches, yaws


def write_outputs(generator, result: dict, target: torch.Tensor, out: Path, name: str, views: int = 7,
                  frames: int = 36, yaw_range: float = 0.5, pitch_range: float = 0.15) -> dict:
    """Fit vs target PNG, loss curve PNG, novel-view grid PNG, orbit GIF, latent .pt."""
    out.mkdir(parents=True, exist_ok=True)
    opts = result["options"]
    paths = {}
    paths["fit"] = save_image_grid(torch.cat([target.reshape(1, *target.shape[-3:]).cpu(), result["fit"].cpu()]),
                                   out / f"{name}_fit.png", nrow=2)
    losses = result["losses"]
    paths["loss"] = plot_curves({"mse": (list(range(1, len(losses) + 1)), losses)}, out / f"{name}_loss.png",
                                title=f"inversion of {name}", xlabel="iteration", logy=True)
    yaws = [opts["yaw"] + yaw_range * (2 * i / max(views - 1, 1) - 1) for i in range(views)]
    grid = novel_views(generator, result["frequencies"], result["phase_shifts"], opts, yaws)
    paths["views"] = save_image_grid(grid, out / f"{name}_views.png", nrow=views)
    pitches, oy = orbit_poses(opts, frames, yaw_range, pitch_range)
    video = novel_views(generator, result["frequencies"], result["phase_shifts"], opts, oy, pitches)
    paths["video"] = save_gif(video, out / f"{name}_orbit.gif")
    paths["latent"] = out / f"{name}_latent.pt"
    torch.save({"frequencies": result["frequencies"].cpu(), "phase_shifts": result["phase_shifts"].cpu(),
                "losses": torch.tensor(losses), "options": {k: v for k, v in opts.items()}}, paths["latent"])
    return paths


def build_parser():
    p = argparse.ArgumentParser(prog="pigan invert", description=(
        "Fit a trained generator to an image (or every image of a folder) and render novel views."))
    p.add_argument("checkpoint", help="checkpoint written by `pigan train` or `pigan convert`")
    p.add_argument("images", help="an image file or a folder of images")
    p.add_argument("--out", "-o", default="runs/invert", help="output folder (default: runs/invert)")
    p.add_argument("--iterations", type=int, default=700)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--lr-step", type=int, default=100, help="decay the learning rate every k iterations")
    p.add_argument("--lr-gamma", type=float, default=0.75)
    p.add_argument("--noise", type=float, default=0.03, help="annealed noise on the averages")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def _positive(name, v):
    if v is not None and (not isinstance(v, int) or v < 1):
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoints import CheckpointError, load_checkpoint, load_generator

    try:
        for name in ("iterations", "lr_step", "num_avg", "img_size", "num_steps", "views", "frames"):
            _positive("--" + name.replace("_", "-"), getattr(args, name))
        if args.lr <= 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        src = Path(args.images).expanduser()
        if not src.exists():
            raise ValueError(f"{str(src)!r} does not exist")
        files = [src] if src.is_file() else sorted(
            p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(src)!r}")
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                              ("cpu" if args.device == "auto" else args.device))
        ckpt = load_checkpoint(args.checkpoint)
        generator = load_generator(args.checkpoint, map_location=device, use_ema=not args.no_ema)
        config = ckpt.get("config")
        if not config or args.curriculum:
            from .train import load_curriculum
            config = load_curriculum(args.curriculum or "celeba")
        config = {(int(k) if isinstance(k, str) and k.isdigit() else k): v for k, v in config.items()}
        opts = render_options(config, args.img_size, args.num_steps)
        out = Path(args.out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, CheckpointError, OSError) as exc:
        print(f"pigan invert: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    with ops.use_backend(args.backend):
        failed = 0
        for path in files:
            try:
                target = load_image(path, opts["img_size"], args.crop_fraction)
            except Exception as exc:
                print(f"skipping {path}: cannot read it ({type(exc).__name__}: {exc})", file=sys.stderr)
                failed += 1
                continue
            res = invert(generator, target, iterations=args.iterations, lr=args.lr,
                         weight_decay=args.weight_decay, lr_step=args.lr_step, lr_gamma=args.lr_gamma,
                         noise_std=args.noise, num_avg=args.num_avg, options=opts, seed=args.seed,
                         progress=not args.no_progress)
            paths = write_outputs(generator, res, target, out, path.stem, views=args.views,
                                  frames=args.frames, yaw_range=args.yaw_range)
            print(f"{path.name}: final mse {res['losses'][-1]:.5f}, PSNR {psnr(res['fit'][0].cpu(), target):.2f} dB; "
                  f"wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    if failed == len(files):
        print("pigan invert: error: none of the images could be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
