"""``pigan invert CHECKPOINT IMAGES``: fit a trained generator to an image (or every image of a folder)
and write the fit, a loss curve, novel views, an orbit GIF and the latent (``pigan.invert``); with
``--mask`` (a semantic checkpoint) FENeRF's inversion of the image and its label map."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pigan import ops
from pigan.checkpoints import load_checkpoint, load_generator
from pigan.cli import EXIT_CODES_HELP, ArgumentParser, run_command
from pigan.common import CommandError, UsageError, check_number, check_output_dir, check_positive, pick_device
from pigan.data import IMAGE_EXTENSIONS
from pigan.encoder import load_encoder, predict_start
from pigan.invert import (InvertOptions, checkpoint_pose_head, discriminator_pose, invert, load_image, load_mask,
                          mask_background, pose_grid, summary, write_outputs)
from pigan.model.curriculum_loading import load_curriculum, validate_curriculum
from pigan.model.render_options import RenderOptions


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pigan invert", description=(
        "Fit a trained generator to an image (or every image of a folder) and render novel views."),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint written by `pigan train` or `pigan convert`")
    p.add_argument("images", help="an image file or a folder of images")
    p.add_argument("--out", "-o", default="runs/invert", help="output folder (default: runs/invert)")
    p.add_argument("--iterations", type=int, default=700, help="offsets iterations (default 700; 0 with "
                   "--encoder: the encoder's prediction alone)")
    p.add_argument("--encoder", default=None, help="encoder.pt of `pigan train-encoder` for this checkpoint: "
                   "start from its predicted latent and pose (with --fit-pose the pose is refined from there: "
                   "no pose search, no z stage)")
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
    p.add_argument("--exact", action="store_true", help="render the novel views and the orbit from every "
                   "sample (default: skip empty space, the same pixels to about 1e-3; the fit itself is "
                   "always exact)")
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
    p.add_argument("--mask", default=None, help="semantic (FENeRF) checkpoints: the image's label map, a PNG of "
                   "class indices (0 background, 1..K), the image's size or a scaled copy (resized by per-pixel "
                   "majority); for a folder of images, a folder of masks named as the images (<stem>.png). Fits "
                   "image and mask together (FENeRF's inversion)")
    p.add_argument("--background-mask", action="store_true", help="with --mask: black out the image where the "
                   "mask is background (FENeRF's --background_mask; for models trained on such images)")
    p.add_argument("--image-weight", type=float, default=None, help="with --mask: weight of the pixel MSE "
                   "(default 0.2, FENeRF's)")
    p.add_argument("--semantic-weight", type=float, default=1.0, help="with --mask: weight of the MSE on the "
                   "semantic planes (default 1, FENeRF's)")
    p.add_argument("--offset-norm", type=float, default=None, help="weight of the offsets' mean square "
                   "(default: 1 with --mask, FENeRF's latent norm; 0 without)")
    return p


def _check_args(args) -> None:
    """Every value check that needs no file, naming the flag; sets ``args.grid`` to the --pose-grid
    counts."""
    check_positive("--iterations", args.iterations, allow_zero=args.encoder is not None)
    if args.encoder is not None and args.z_iterations:
        raise UsageError("--z-iterations and --encoder exclude each other (both choose the starting latent)")
    for name in ("lr_step", "num_avg", "img_size", "views", "frames", "search_iterations",
                 "check_every"):
        if getattr(args, name) is not None:
            check_positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.z_iterations is not None:
        check_positive("--z-iterations", args.z_iterations, allow_zero=True)
    check_number("--z-lr", args.z_lr, lo=0, lo_open=True)
    if args.num_steps is not None:
        check_number("--num-steps", args.num_steps, lo=2)
    if args.lr is not None:
        check_number("--lr", args.lr, lo=0, lo_open=True)
    try:
        grid_yaws, grid_pitches = (int(v) for v in args.pose_grid.lower().split("x"))
        if grid_yaws < 1 or grid_pitches < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--pose-grid must be YAWSxPITCHES with positive counts (e.g. 3x1), got "
                         f"{args.pose_grid!r}") from None
    if args.backtrack != 0:                               # 0 turns restarts off
        check_number("--backtrack", args.backtrack, lo=1, lo_open=True)
    check_number("--pose-lr", args.pose_lr, lo=0, lo_open=True)
    check_number("--weight-decay", args.weight_decay, lo=0)
    check_number("--lr-gamma", args.lr_gamma, lo=0, lo_open=True)
    check_number("--noise", args.noise, lo=0)
    check_number("--crop-fraction", args.crop_fraction, lo=0, hi=1, lo_open=True)
    for flag, v in (("--image-weight", args.image_weight), ("--semantic-weight", args.semantic_weight),
                    ("--offset-norm", args.offset_norm)):
        if v is not None:
            check_number(flag, v, lo=0)
    if args.background_mask and args.mask is None:
        raise UsageError("--background-mask needs --mask (the background is where the mask is 0)")
    if args.mask is not None and args.image_weight == 0 and args.semantic_weight == 0:
        raise UsageError("--image-weight and --semantic-weight are both 0: the fit would have nothing to match")
    args.grid = (grid_yaws, grid_pitches)


def _image_files(images: str) -> list[Path]:
    src = Path(images).expanduser()
    if not src.exists():
        raise UsageError(f"{str(src)!r} does not exist")
    files = [src] if src.is_file() else sorted(
        p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(src)!r}")
    return files


def _invert_options(args, render: RenderOptions) -> InvertOptions:
    z_iterations = args.z_iterations if args.z_iterations is not None else \
        (100 if args.fit_pose and args.encoder is None else 0)
    return InvertOptions(iterations=args.iterations, lr=args.lr, weight_decay=args.weight_decay,
                         lr_step=args.lr_step, lr_gamma=args.lr_gamma, noise_std=args.noise, jitter=args.jitter,
                         num_avg=args.num_avg, render=render, seed=args.seed, fit_pose=args.fit_pose,
                         pose_lr=args.pose_lr, search_iterations=args.search_iterations,
                         check_every=args.check_every, backtrack=args.backtrack, z_iterations=z_iterations,
                         z_lr=args.z_lr, encoder_start=args.encoder is not None, image_weight=args.image_weight,
                         semantic_weight=args.semantic_weight, offset_norm=args.offset_norm)


def _load(args, device):
    """(generator, render options, discriminator pose head or None, encoder or None) of the checkpoint."""
    ckpt = load_checkpoint(args.checkpoint)
    generator = load_generator(args.checkpoint, map_location=device, use_ema=not args.no_ema)
    encoder = None if args.encoder is None else load_encoder(args.encoder, generator, map_location=device)
    config = ckpt.get("config")
    if not config or args.curriculum:
        config = load_curriculum(args.curriculum or "celeba")
        validate_curriculum(config)
    render = RenderOptions.from_curriculum(config, img_size=args.img_size, num_steps=args.num_steps)
    head = None
    if args.fit_pose and args.pose_start != "grid" and encoder is None:
        head = checkpoint_pose_head(args.checkpoint, ckpt, device)
        if head is None and args.pose_start == "discriminator":
            raise UsageError("--pose-start discriminator needs a checkpoint with a discriminator trained with "
                             "pos_lambda > 0 (a position head) at a resolution it takes")
    return generator, render, head, encoder


def _masks(args, files, generator, img_size) -> dict:
    """{image path: its label map [1, S, S]} of ``--mask`` (empty without it), every mask read and
    checked before any fit: a file for one image, a folder of <stem>.png for a folder of images."""
    if args.mask is None:
        return {}
    if not getattr(generator, "num_classes", 0):
        raise UsageError(f"--mask needs a semantic (FENeRF) checkpoint; {args.checkpoint!r} holds a "
                         f"{type(generator).__name__}, which renders no part labels")
    src = Path(args.mask).expanduser()
    if not src.exists():
        raise UsageError(f"--mask {str(src)!r} does not exist")
    if Path(args.images).is_file() != src.is_file():
        raise UsageError(f"--mask must be a file for one image and a folder of masks for a folder of images; "
                         f"got {'a file' if src.is_file() else 'a folder'} for "
                         f"{'an image' if Path(args.images).is_file() else 'a folder'}")
    paths = {f: src if src.is_file() else src / f"{f.stem}.png" for f in files}
    missing = [str(m) for m in paths.values() if not m.is_file()]
    if missing:
        raise UsageError(f"--mask: no mask for {len(missing)} image(s), e.g. {missing[0]!r} (masks are named "
                         "<image stem>.png)")
    return {f: load_mask(m, img_size, generator, args.crop_fraction, image=f, name="--mask")
            for f, m in paths.items()}


def _main(argv) -> int:
    args = build_parser().parse_checked(argv, _check_args)
    files = _image_files(args.images)
    device = pick_device(args.device)
    generator, render, head, encoder = _load(args, device)
    masks = _masks(args, files, generator, render.img_size)
    options = _invert_options(args, render)
    out = check_output_dir(args.out)
    failed = 0
    with ops.use_backend(args.backend):
        for path in files:
            try:
                target = load_image(path, render.img_size, args.crop_fraction)
                if args.background_mask:
                    target = mask_background(target, masks[path])
            except Exception as exc:
                print(f"skipping {path}: cannot read it ({type(exc).__name__}: {exc})", file=sys.stderr)
                failed += 1
                continue
            starts, init = None, None
            if encoder is not None:
                init, pose = predict_start(encoder, target)
                starts = [pose]
            elif args.fit_pose:
                starts = ([discriminator_pose(head[0], target, alpha=head[1], size=head[2])] if head is not None
                          else pose_grid(render, *args.grid))
            res = invert(generator, target, options.replace(start_poses=starts), init=init,
                         progress=not args.no_progress, mask=masks.get(path))
            paths = write_outputs(generator, res, target, out, path.stem, views=args.views,
                                  frames=args.frames, yaw_range=args.yaw_range, skip_empty=not args.exact)
            print(f"{path.name}: {summary(res)}; wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    if failed == len(files):
        raise CommandError("none of the images could be read")
    return 0


def main(argv=None) -> int:
    """``pigan invert CHECKPOINT IMAGES [options]``."""
    return run_command("pigan invert", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
