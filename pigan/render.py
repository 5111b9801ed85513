"""Rendering from a trained generator: sample grids, multi-view grids, depth maps, videos.

Library functions (used by training at the end of a run, and by ``pigan render``) take a generator
and a ``settings`` dict of camera / marching settings (a curriculum's metadata works as is):
``render_images``, ``render_grid``, ``render_multiview``, ``render_video``, ``write_samples``.
Latents are truncated toward the average mapping output (psi), computed once per call under a fixed
seed, so the same seed renders the same identities at every pose.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from pigan import imaging, ops

__all__ = ["DEFAULT_SETTINGS", "settings_from_config", "latents", "render_images", "render_grid",
           "render_multiview", "render_video", "video_poses", "write_samples", "load_for_render", "main"]

# pi-GAN's CelebA camera and marcher (PIGAN.md sections 4 and 6), the fallback for missing keys.
DEFAULT_SETTINGS = {
    "fov": 12.0, "ray_start": 0.88, "ray_end": 1.12, "h_mean": math.pi / 2, "v_mean": math.pi / 2,
    "h_stddev": 0.3, "v_stddev": 0.155, "sample_dist": "gaussian", "num_steps": 12, "img_size": 64,
    "hierarchical_sample": True, "clamp_mode": "relu", "white_back": False, "last_back": False,
    "max_batch_size": 65536,
}
_KEYS = tuple(DEFAULT_SETTINGS) + ("eval_last_back",)


def settings_from_config(config: dict | None) -> dict:
    """Render settings from a curriculum or its metadata (stage keys may be ints or digit strings,
    as after a JSON round trip): shared keys, the last stage's num_steps / img_size, and
    ``eval_last_back`` as last_back (pi-GAN renders with it)."""
    out = dict(DEFAULT_SETTINGS)
    if not config:
        return out
    stages = []
    for k, v in config.items():
        if isinstance(k, int) or (isinstance(k, str) and k.isdigit()):
            if isinstance(v, dict) and v:
                stages.append((int(k), v))
        elif k in _KEYS and v is not None:
            out[k] = v
    if stages:
        last = max(stages, key=lambda s: s[0])[1]
        out.update({k: last[k] for k in ("num_steps", "img_size") if k in last})
    if out.pop("eval_last_back", None):
        out["last_back"] = True
    return out


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
def render_images(generator, frequencies, phase_shifts, pitch, yaw, settings=None, img_size=None,
                  num_steps=None, seed=0, progress=False, desc="render"):
    """One image per latent at the given pose(s): pitch / yaw floats or [N] tensors.

    Returns (pixels [N, 3, H, W] in [-1, 1], depth [N, H, W]) on the CPU. Renders one image at a
    time (siren in chunks of ``max_batch_size`` points), without jitter or density noise.
    """
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    img_size = int(img_size or s["img_size"])
    num_steps = int(num_steps or s["num_steps"])
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
                    pitch=pitch[i:i + 1].to(dev), yaw=yaw[i:i + 1].to(dev), img_size=img_size,
                    fov=s["fov"], ray_start=s["ray_start"], ray_end=s["ray_end"], num_steps=num_steps,
                    hierarchical_sample=s["hierarchical_sample"], jitter=False, nerf_noise=0.0,
                    clamp_mode=s["clamp_mode"], white_back=s["white_back"], last_back=s["last_back"],
                    max_batch_size=s["max_batch_size"])
                pixels.append(out["pixels"].float().cpu())
                depths.append(out["depth"].float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(pixels), torch.cat(depths)


def render_grid(generator, num=16, seed=0, psi=0.7, settings=None, **kw):
    """Samples at the mean pose: (pixels [num, 3, H, W], depth [num, H, W])."""
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    f, p = latents(generator, num, seed, psi)
    return render_images(generator, f, p, s["v_mean"], s["h_mean"], s, seed=seed, **kw)


def _spreads(s):
    """Yaw and pitch half-ranges for sweeps: the training distribution's spread, capped."""
    h = float(s.get("h_stddev", 0.3))
    v = float(s.get("v_stddev", 0.155))
    if s.get("sample_dist") in ("uniform", "spherical_uniform"):
        return min(h, 1.2), min(v, 0.6)
    return min(2 * h, 1.2), min(2 * v, 0.6)


def render_multiview(generator, num=4, views=5, pitches=3, seed=0, psi=0.7, settings=None, **kw):
    """Each identity under a yaw x pitch sweep: pixels [num, pitches * views, 3, H, W] (pitch-major)."""
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    hs, vs = _spreads(s)
    yaws = [s["h_mean"] + hs * (2 * i / max(views - 1, 1) - 1) for i in range(views)]
    pits = [s["v_mean"] + vs * (2 * i / max(pitches - 1, 1) - 1) for i in range(pitches)] \
        if pitches > 1 else [s["v_mean"]]
    f, p = latents(generator, num, seed, psi)
    out = []
    for pi in pits:
        for ya in yaws:
            px, _ = render_images(generator, f, p, pi, ya, s, seed=seed, **kw)
            out.append(px)
    return torch.stack(out, 1)


def video_poses(settings, frames=48, mode="auto"):
    """(pitches, yaws) lists along a trajectory: 'orbit' (full yaw circle, for CARLA-like ranges) or
    'front' (an ellipse around the mean pose within the training spread)."""
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    if mode == "auto":
        mode = "orbit" if float(s.get("h_stddev", 0)) >= 1.0 else "front"
    if mode not in ("orbit", "front"):
        raise ValueError(f"mode must be 'orbit', 'front' or 'auto', got {mode!r}")
    hs, vs = _spreads(s)
    ts = [i / frames for i in range(frames)]
    if mode == "orbit":
        return [s["v_mean"]] * frames, [s["h_mean"] + 2 * math.pi * t for t in ts]
    return ([s["v_mean"] + 0.5 * vs * math.cos(2 * math.pi * t) for t in ts],
            [s["h_mean"] + 0.5 * hs * math.sin(2 * math.pi * t) for t in ts])


def render_video(generator, num=4, frames=48, mode="auto", seed=0, psi=0.7, settings=None,
                 progress=False, **kw):
    """Frames (list of [3, H', W'] grids in [0, 1], one tile per identity) along the trajectory."""
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    pitches, yaws = video_poses(s, frames, mode)
    f, p = latents(generator, num, seed, psi)
    out = []
    for pi, ya in _progress(list(zip(pitches, yaws)), progress, "video"):
        px, _ = render_images(generator, f, p, pi, ya, s, seed=seed, **kw)
        out.append(imaging.make_grid(imaging.to_unit(px), nrow=int(math.ceil(math.sqrt(num)))))
    return out


def write_samples(generator, out_dir, num=16, seed=0, psi=0.7, settings=None, identities=4, views=5,
                  pitches=3, video_frames=0, video_mode="auto", progress=False, **kw):
    """Write samples.png, depth.png, multiview.png (identities x yaw sweep at the mean pitch),
    multiview_id<k>.png (pitch x yaw grid per identity) and, when video_frames > 0, video.gif (and
    video.mp4 when imageio-ffmpeg is installed). Returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    paths = {}
    px, depth = render_grid(generator, num, seed, psi, s, progress=progress, desc="samples", **kw)
    nrow = int(math.ceil(math.sqrt(num)))
    paths["samples"] = imaging.save_grid(px, out_dir / "samples.png", nrow=nrow)
    paths["depth"] = imaging.save_png(
        imaging.make_grid(imaging.depth_to_rgb(depth, s["ray_start"], s["ray_end"]), nrow=nrow),
        out_dir / "depth.png")
    if identities > 0 and views > 0:
        mv = render_multiview(generator, identities, views, pitches, seed, psi, s, progress=progress,
                              desc="multiview", **kw)                # [I, P*V, 3, H, W]
        mid = (mv.shape[1] // views) // 2                            # the mean-pitch row
        row = mv[:, mid * views:(mid + 1) * views]
        paths["multiview"] = imaging.save_grid(row.flatten(0, 1), out_dir / "multiview.png", nrow=views)
        for k in range(identities):
            paths[f"multiview_id{k}"] = imaging.save_grid(mv[k], out_dir / f"multiview_id{k}.png", nrow=views)
    if video_frames > 0:
        frames = render_video(generator, min(identities or 1, num), video_frames, video_mode, seed, psi,
                              s, progress=progress, **kw)
        paths["gif"] = imaging.save_gif(frames, out_dir / "video.gif")
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
    ap = argparse.ArgumentParser(prog="pigan render", description=(
        "Render a sample grid, depth maps, multi-view grids and a video from a checkpoint "
        "(ours, or pi-GAN's folder / generator.pth)."))
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


def main(argv=None):
    """``pigan render CHECKPOINT --out DIR [options]``."""
    args = _parse(argv)
    from pigan.checkpoints import CheckpointError
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("pigan render: error: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    try:
        generator, config = load_for_render(args.checkpoint, device, use_ema=not args.no_ema)
    except CheckpointError as exc:
        print(f"pigan render: error: {exc}", file=sys.stderr)
        return 2
    if args.curriculum:
        from pigan.curriculums import get_curriculum
        try:
            config = get_curriculum(args.curriculum)
        except ValueError as exc:
            print(f"pigan render: error: {exc}", file=sys.stderr)
            return 2
    settings = settings_from_config(config)
    if args.resolution:
        settings["img_size"] = args.resolution
    if args.steps:
        settings["num_steps"] = args.steps
    if args.max_batch_size:
        settings["max_batch_size"] = args.max_batch_size
    from pigan.ops._backend import backend_status
    ok, why = backend_status(args.backend, device)
    if not ok:
        print(f"pigan render: error: backend {args.backend!r} cannot run on {device}: {why}", file=sys.stderr)
        return 2
    with ops.use_backend(args.backend):
        paths = write_samples(generator, args.out, num=args.num, seed=args.seed, psi=args.psi,
                              settings=settings, identities=args.identities, views=args.views,
                              pitches=args.pitches, video_frames=args.frames, video_mode=args.video,
                              progress=not args.no_progress)
    for name, p in paths.items():
        print(f"{name}: {p}")
    if args.frames and "mp4" not in paths:
        print("(no MP4: install imageio and imageio-ffmpeg for one; the GIF has the same frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
