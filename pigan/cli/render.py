"""``pigan render CHECKPOINT --out DIR``: sample grid, depth maps, multi-view grids and videos (and, for a
semantic checkpoint, their semantic maps and a shape x texture grid)."""
from __future__ import annotations

import argparse

from pigan import ops, render
from pigan.checkpoints import load_for_render
from pigan.cli import EXIT_CODES_HELP, ArgumentParser, add_generator_args, run_command
from pigan.common import UsageError, check_number, check_output_dir, check_positive, pick_device
from pigan.model.skipping import SkipTally
from pigan.model.curriculum_loading import load_curriculum, validate_curriculum
from pigan.model.render_options import RenderOptions


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="pigan render", description=(
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
    add_generator_args(ap)
    ap.add_argument("--max-batch-size", type=int, default=None, help="points per siren chunk")
    ap.add_argument("--lock-view-dependence", action="store_true",
                    help="colour from one fixed view direction (no view-dependent shading while the camera moves)")
    ap.add_argument("--depth-video", action="store_true", help="also write video_depth.gif")
    ap.add_argument("--depth-range", default="auto", metavar="auto|rays|NEAR,FAR",
                    help="depth shown from white to black: 'auto' (default: 1st-99th percentile of the "
                    "foreground's depth, one range per image or video), 'rays' (ray_start to ray_end) "
                    "or two numbers")
    ap.add_argument("--interpolate", type=int, nargs="+", default=None, metavar="SEED",
                    help="latent-interpolation video through these seeds (>= 2), camera moving")
    ap.add_argument("--frames-per-seed", type=int, default=24, help="interpolation frames per seed")
    ap.add_argument("--exact", action="store_true", help="evaluate every sample of every ray (default: skip "
                    "empty space and stop rays once opaque: the same pixels to about 1e-3, several times "
                    "faster where the scene leaves space empty)")
    ap.add_argument("--ray-step-multiplier", type=float, default=1.0,
                    help="samples per ray x this (finer geometry; memory stays bounded by ray chunks)")
    ap.add_argument("--swap", type=int, default=None, metavar="N",
                    help="semantic (FENeRF) checkpoints: an N x N shape x texture grid, swap.png and "
                    "swap_semantic.png (rows share a shape code, columns a texture code; default 4, 0: none)")
    return ap


def depth_range(text: str):
    """``--depth-range``: "auto", "rays" or (near, far) from "NEAR,FAR"."""
    if text in ("auto", "rays"):
        return text
    try:
        near, far = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--depth-range must be 'auto', 'rays' or NEAR,FAR (two numbers), got {text!r}") from None
    if not near < far:
        raise UsageError(f"--depth-range NEAR,FAR needs NEAR < FAR, got {text!r}")
    return near, far


def check_args(args) -> None:
    """The values argparse cannot check, before any work."""
    if args.interpolate is not None and len(args.interpolate) < 2:
        raise UsageError("--interpolate needs at least 2 seeds")
    check_positive("--frames-per-seed", args.frames_per_seed)
    check_number("--ray-step-multiplier", args.ray_step_multiplier, lo=0, lo_open=True)
    check_positive("--num", args.num)
    for name in ("identities", "views", "pitches", "frames"):
        check_positive(f"--{name}", getattr(args, name), allow_zero=True)
    for flag, v in (("--resolution", args.resolution), ("--max-batch-size", args.max_batch_size)):
        if v is not None:
            check_positive(flag, v)
    if args.steps is not None:
        check_number("--steps", args.steps, lo=2)
    if args.swap is not None:
        check_positive("--swap", args.swap, allow_zero=True)
    args.depth_range = depth_range(args.depth_range)


def _main(argv) -> int:
    args = build_parser().parse_checked(argv, check_args)
    device = pick_device(args.device)
    ok, why = ops.backend_status(args.backend, device)
    if not ok:
        raise UsageError(f"backend {args.backend!r} cannot run on {device}: {why}")
    options = None
    if args.curriculum:
        cur = load_curriculum(args.curriculum)
        validate_curriculum(cur)
        options = RenderOptions.from_curriculum(cur)
    generator, config = load_for_render(args.checkpoint, device, use_ema=not args.no_ema)
    swap = args.swap
    if not render.is_semantic(generator):
        if swap:
            raise UsageError(f"--swap needs a semantic (FENeRF) checkpoint; {args.checkpoint!r} holds a "
                             f"{type(generator).__name__} without geometry and appearance codes")
        swap = 0
    elif swap is None:
        swap = 4
    check_output_dir(args.out)                     # before rendering anything
    options = options or RenderOptions.from_curriculum(config)
    options = RenderOptions.from_metadata(base=options, img_size=args.resolution, num_steps=args.steps,
                                          max_batch_size=args.max_batch_size or options.max_batch_size,
                                          lock_view_dependence=args.lock_view_dependence or None)
    options = options.replace(num_steps=max(2, round(options.num_steps * args.ray_step_multiplier)),
                              skip_empty=not args.exact)
    tally = SkipTally()
    with ops.use_backend(args.backend):
        paths = render.write_samples(generator, args.out, num=args.num, seed=args.seed, psi=args.psi,
                                     options=options, identities=args.identities, views=args.views,
                                     pitches=args.pitches, video_frames=args.frames, video_mode=args.video,
                                     progress=not args.no_progress, depth_video=args.depth_video,
                                     interpolate=args.interpolate, frames_per_seed=args.frames_per_seed,
                                     depth_range=args.depth_range, report=print, tally=tally, swap=swap)
    for name, p in paths.items():
        print(f"{name}: {p}")
    if options.skip_empty:
        print(tally.summary())
    if args.frames and "mp4" not in paths:
        print("(no MP4: install imageio and imageio-ffmpeg for one; the GIF has the same frames)")
    return 0


def main(argv=None) -> int:
    return run_command("pigan render", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
