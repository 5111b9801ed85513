"""Rendering from a trained generator: sample grids, multi-view grids, depth maps, videos.

Library functions (used by training for its sample grids, and by ``pigan render``) take a generator
and a ``RenderOptions`` (``RenderOptions.from_curriculum(cur)``): ``render_images``, ``render_grid``,
``render_multiview``, ``yaw_sweep``, ``render_video``, ``write_samples``. Latents are truncated toward
the average mapping output (psi), computed once per call under a fixed seed, so the same seed renders
the same identities at every pose.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from pigan import imaging, ops
from pigan.cli import UsageError, check_output_dir, run_command, writing
from pigan.render_options import RenderOptions

__all__ = ["RenderOptions", "latents", "render_images", "render_grid", "render_multiview", "yaw_sweep",
           "render_video", "video_poses", "write_samples", "load_for_render", "main"]

# Points per siren call when rendering images to look at (bounds memory at large resolutions).
RENDER_CHUNK = 65536


@torch.no_grad()
def latents(generator, num: int, seed: int = 0, psi: float = 0.7, z: torch.Tensor | None = None):
    """(frequencies, phase_shifts) [num, 9H] of z ~ N(0, I) drawn from ``seed`` (or given z), pulled
    toward the average over 10 000 z by psi. Uses a private generator: the global RNG is untouched."""
    dev = next(generator.parameters()).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        if z is None:
            z = torch.randn(num, generator.z_dim, device=dev)
        generator.generate_avg_frequencies()
        return generator.truncate(z.to(dev), psi)


def _progress(iterable, enabled, desc, total=None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


@torch.no_grad()
def render_images(generator, frequencies, phase_shifts, pitch, yaw, options=None, img_size=None,
                  num_steps=None, seed=0, progress=False, desc="render"):
    """One image per latent at the given pose(s): pitch / yaw floats or [N] tensors.

    Returns (pixels [N, 3, H, W] in [-1, 1], depth [N, H, W]) on the CPU. Renders one image at a
    time (siren in chunks of ``max_batch_size`` points), without jitter or density noise.
    """
    o = (options or RenderOptions()).replace(nerf_noise=0.0)
    o = RenderOptions.from_metadata(base=o, img_size=img_size, num_steps=num_steps,
                                    max_batch_size=o.max_batch_size or RENDER_CHUNK)
    n = frequencies.shape[0]
    pitch = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1).expand(n)
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1).expand(n)
    was_training = generator.training
    generator.eval()
    pixels, depths = [], []
    dev = frequencies.device
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)                   # importance-sampling uniforms: reproducible
            for i in _progress(range(n), progress, desc):
                out = generator.render(
                    frequencies=frequencies[i:i + 1], phase_shifts=phase_shifts[i:i + 1],
                    pitch=pitch[i:i + 1].to(dev), yaw=yaw[i:i + 1].to(dev), options=o, jitter=False)
                pixels.append(out["pixels"].float().cpu())
                depths.append(out["depth"].float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(pixels), torch.cat(depths)


def render_grid(generator, num=16, seed=0, psi=0.7, options=None, **kw):
    """Samples at the mean pose: (pixels [num, 3, H, W], depth [num, H, W])."""
    o = options or RenderOptions()
    f, p = latents(generator, num, seed, psi)
    return render_images(generator, f, p, o.pitch, o.yaw, o, seed=seed, **kw)


def _spreads(o: RenderOptions):
    """Yaw and pitch half-ranges for sweeps: the training distribution's spread, capped."""
    h, v = float(o.h_stddev), float(o.v_stddev)
    if o.sample_dist in ("uniform", "spherical_uniform"):
        return min(h, 1.2), min(v, 0.6)
    return min(2 * h, 1.2), min(2 * v, 0.6)


def _sweep(mean, half, n):
    return [mean + half * (2 * i / max(n - 1, 1) - 1) for i in range(n)] if n > 1 else [mean]


def yaw_sweep(generator, frequencies, phase_shifts, options=None, views=7, **kw):
    """Each latent at ``views`` yaws across the training spread, mean pitch: pixels
    [N * views, 3, H, W], latent-major (one row per latent in a grid of ``views`` columns)."""
    o = options or RenderOptions()
    hs, _ = _spreads(o)
    rows = [render_images(generator, frequencies, phase_shifts, o.pitch, y, o, **kw)[0]
            for y in _sweep(o.yaw, hs, views)]                                    # views x [N, 3, H, W]
    return torch.stack(rows, 1).flatten(0, 1)


def render_multiview(generator, num=4, views=5, pitches=3, seed=0, psi=0.7, options=None, **kw):
    """Each identity under a yaw x pitch sweep: pixels [num, pitches * views, 3, H, W] (pitch-major)."""
    o = options or RenderOptions()
    hs, vs = _spreads(o)
    f, p = latents(generator, num, seed, psi)
    out = []
    for pi in _sweep(o.pitch, vs, pitches):
        for ya in _sweep(o.yaw, hs, views):
            px, _ = render_images(generator, f, p, pi, ya, o, seed=seed, **kw)
            out.append(px)
    return torch.stack(out, 1)


def video_poses(options=None, frames=48, mode="auto"):
    """(pitches, yaws) lists along a trajectory: 'orbit' (full yaw circle, for CARLA-like ranges) or
    'front' (an ellipse around the mean pose within the training spread)."""
    o = options or RenderOptions()
    if mode == "auto":
        mode = "orbit" if float(o.h_stddev) >= 1.0 else "front"
    if mode not in ("orbit", "front"):
        raise ValueError(f"mode must be 'orbit', 'front' or 'auto', got {mode!r}")
    hs, vs = _spreads(o)
    ts = [i / frames for i in range(frames)]
    if mode == "orbit":
        return [o.pitch] * frames, [o.yaw + 2 * math.pi * t for t in ts]
    return ([o.pitch + 0.5 * vs * math.cos(2 * math.pi * t) for t in ts],
            [o.yaw + 0.5 * hs * math.sin(2 * math.pi * t) for t in ts])


def render_video(generator, num=4, frames=48, mode="auto", seed=0, psi=0.7, options=None,
                 progress=False, **kw):
    """Frames (list of [3, H', W'] grids in [0, 1], one tile per identity) along the trajectory."""
    o = options or RenderOptions()
    pitches, yaws = video_poses(o, frames, mode)
    f, p = latents(generator, num, seed, psi)
    out = []
    for pi, ya in _progress(list(zip(pitches, yaws)), progress, "video"):
        px, _ = render_images(generator, f, p, pi, ya, o, seed=seed, **kw)
        out.append(imaging.make_grid(imaging.to_unit(px), nrow=int(math.ceil(math.sqrt(num)))))
    return out


def write_samples(generator, out_dir, num=16, seed=0, psi=0.7, options=None, identities=4, views=5,
                  pitches=3, video_frames=0, video_mode="auto", progress=False, **kw):
    """Write samples.png, depth.png, multiview.png (identities x yaw sweep at the mean pitch),
    multiview_id<k>.png (pitch x yaw grid per identity) and, when video_frames > 0, video.gif (and
    video.mp4 when imageio-ffmpeg is installed). Returns {name: path}."""
    out_dir = check_output_dir(out_dir)
    o = options or RenderOptions()
    paths = {}

    def save(name, fn, *args, **kwargs):
        with writing(out_dir / name):
            return fn(*args, out_dir / name, **kwargs)

    px, depth = render_grid(generator, num, seed, psi, o, progress=progress, desc="samples", **kw)
    nrow = int(math.ceil(math.sqrt(num)))
    paths["samples"] = save("samples.png", imaging.save_grid, px, nrow=nrow)
    paths["depth"] = save("depth.png", imaging.save_png,
                          imaging.make_grid(imaging.depth_to_rgb(depth, o.ray_start, o.ray_end), nrow=nrow))
    if identities > 0 and views > 0:
        mv = render_multiview(generator, identities, views, pitches, seed, psi, o, progress=progress,
                              desc="multiview", **kw)                # [I, P*V, 3, H, W]
        mid = (mv.shape[1] // views) // 2                            # the mean-pitch row
        row = mv[:, mid * views:(mid + 1) * views]
        paths["multiview"] = save("multiview.png", imaging.save_grid, row.flatten(0, 1), nrow=views)
        for k in range(identities):
            paths[f"multiview_id{k}"] = save(f"multiview_id{k}.png", imaging.save_grid, mv[k], nrow=views)
    if video_frames > 0:
        frames = render_video(generator, min(identities or 1, num), video_frames, video_mode, seed, psi,
                              o, progress=progress, **kw)
        paths["gif"] = save("video.gif", imaging.save_gif, frames)
        with writing(out_dir / "video.mp4"):
            mp4 = imaging.save_mp4(frames, out_dir / "video.mp4")
        if mp4 is not None:
            paths["mp4"] = mp4
    return paths


def load_for_render(checkpoint, device="cpu", use_ema=True):
    """(generator, config) from a checkpoint of ours, or from pi-GAN's folder / generator.pth."""
    from pigan import checkpoints as C
    path = Path(checkpoint)
    if path.is_dir() or (path.name.endswith("generator.pth") and path.is_file()):
        loaded = C.load_pigan_checkpoint(path, map_location="cpu", use_ema=use_ema,
                                         load_discriminator=False)
        return loaded["generator"].to(device).eval(), None
    g = C.load_generator(path, map_location="cpu", use_ema=use_ema)
    config = C.load_checkpoint(path).get("config")
    return g.to(device).eval(), config


def _parse(argv):
    from pigan.cli import EXIT_CODES_HELP
    ap = argparse.ArgumentParser(prog="pigan render", description=(
        "Render a sample grid, depth maps, multi-view grids and a video from a checkpoint "
        "(ours, or pi-GAN's folder / generator.pth)."), epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--num", type=int, default=16, help="samples in the grid (default 16)")
    ap.add_argument("--identities", type=int, default=4, help="identities in multi-view / video")
    ap.add_argument("--views", type=int, default=5, help="yaw steps of the multi-view sweep")
    ap.add_argument("--pitches", type=int, default=3, help="pitch steps of the multi-view sweep")
    ap.add_argument("--psi", type=float, default=0.7, help="truncation (1 = none)")
    ap.add_argument("--resolution", type=int, default=None, help="image size (default: training size)")
    ap.add_argument("--steps", type=int, default=None, help="samples per ray, coarse (default: training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=48, help="video frames (0: no video)")
    ap.add_argument("--video", choices=("auto", "orbit", "front"), default="auto")
    ap.add_argument("--curriculum", default=None, help="camera settings from this curriculum")
    ap.add_argument("--backend", choices=ops.BACKENDS, default="auto")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    ap.add_argument("--no-ema", action="store_true", help="raw generator weights instead of the EMA")
    ap.add_argument("--max-batch-size", type=int, default=None, help="points per siren chunk")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    for name in ("num", "identities", "views", "pitches"):
        if getattr(args, name) < 0:
            ap.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    for name in ("resolution", "steps", "max_batch_size"):
        v = getattr(args, name)
        if v is not None and v < (2 if name == "steps" else 1):
            ap.error(f"--{name.replace('_', '-')} must be {'>= 2' if name == 'steps' else 'positive'}, got {v}")
    if args.num < 1:
        ap.error("--num must be >= 1")
    if args.frames < 0:
        ap.error(f"--frames must be >= 0, got {args.frames}")
    return args


def _main(argv):
    args = _parse(argv)
    from pigan.checkpoints import CheckpointError
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    from pigan.ops._backend import backend_status
    ok, why = backend_status(args.backend, device)
    if not ok:
        raise UsageError(f"backend {args.backend!r} cannot run on {device}: {why}")
    options = None
    if args.curriculum:
        from pigan.training.config import load_curriculum
        options = RenderOptions.from_curriculum(load_curriculum(args.curriculum))
    try:
        generator, config = load_for_render(args.checkpoint, device, use_ema=not args.no_ema)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from exc
    check_output_dir(args.out)                     # before rendering anything
    options = options or RenderOptions.from_curriculum(config)
    options = RenderOptions.from_metadata(base=options, img_size=args.resolution, num_steps=args.steps,
                                          max_batch_size=args.max_batch_size or options.max_batch_size)
    with ops.use_backend(args.backend):
        paths = write_samples(generator, args.out, num=args.num, seed=args.seed, psi=args.psi,
                              options=options, identities=args.identities, views=args.views,
                              pitches=args.pitches, video_frames=args.frames, video_mode=args.video,
                              progress=not args.no_progress)
    for name, p in paths.items():
        print(f"{name}: {p}")
    if args.frames and "mp4" not in paths:
        print("(no MP4: install imageio and imageio-ffmpeg for one; the GIF has the same frames)")
    return 0


def main(argv=None):
    """``pigan render CHECKPOINT --out DIR [options]``."""
    return run_command("pigan render", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
