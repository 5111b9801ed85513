"""``pigan edit CHECKPOINT IMAGE --mask EDITED.png``: FENeRF's mask editing. Invert the image (with its
own mask when ``--original-mask`` gives it), refit only the geometry columns of the fitted modulations to
the edited mask, and write the image before and after, the semantic maps, a yaw sweep of the edited
face and the edit's scores (``pigan.invert.refit_shape``, ``edit_scores``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pigan import ops
from pigan.checkpoints import load_checkpoint, load_generator
from pigan.cli import EXIT_CODES_HELP, ArgumentParser, add_generator_args, run_command
from pigan.common import UsageError, check_number, check_output_dir, check_positive, pick_device
from pigan.invert import (EDIT_ITERATIONS, InvertOptions, describe_edit, edit_scores, invert, load_image, load_mask,
                          mask_background, refit_shape, render_outputs, semantic_fit, summary, write_edit_outputs)
from pigan.model.curriculum_loading import load_curriculum, validate_curriculum
from pigan.model.render_options import RenderOptions


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pigan edit", description=(
        "Edit a portrait through its label map with a semantic (FENeRF) checkpoint: invert the image, refit the "
        "shape code to the edited mask with the texture code fixed, render the edited face from new views."),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a semantic (FENeRF) checkpoint written by `pigan train`")
    p.add_argument("image", help="the portrait (an image file)")
    p.add_argument("--mask", required=True, help="the edited label map: a PNG of class indices (0 background, "
                   "1..K), the image's size or a scaled copy")
    p.add_argument("--original-mask", default=None, help="the image's own label map: the inversion fits it with "
                   "the image (FENeRF's) and the edited region is where the edited mask differs from it (default: "
                   "an image-only inversion, the region measured against its rendered label map)")
    p.add_argument("--background-mask", action="store_true", help="black out the image where --original-mask is "
                   "background before inverting it (FENeRF's --background_mask)")
    p.add_argument("--latent", default=None, help="start from this <name>_latent.pt of `pigan invert` instead of "
                   "inverting again")
    p.add_argument("--out", "-o", default="runs/edit", help="output folder (default: runs/edit)")
    p.add_argument("--iterations", type=int, default=700, help="inversion iterations (default 700)")
    p.add_argument("--edit-iterations", type=int, default=EDIT_ITERATIONS,
                   help=f"shape refit iterations (default {EDIT_ITERATIONS}, FENeRF's)")
    p.add_argument("--lr", type=float, default=None, help="Adam step of the offsets (default 1e-2, as FENeRF)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--lr-step", type=int, default=100)
    p.add_argument("--lr-gamma", type=float, default=0.75)
    p.add_argument("--noise", type=float, default=0.0, help="annealed noise on the modulations (FENeRF: 0.03)")
    p.add_argument("--image-weight", type=float, default=None, help="inversion with --original-mask: weight of "
                   "the pixel MSE (default 0.2, FENeRF's)")
    p.add_argument("--semantic-weight", type=float, default=1.0, help="weight of the semantic-plane MSE")
    p.add_argument("--offset-norm", type=float, default=None, help="weight of the offsets' mean square (default "
                   "1, FENeRF's, with a mask; 0 in an image-only inversion)")
    p.add_argument("--num-avg", type=int, default=10000, help="z samples for the mean latent")
    p.add_argument("--img-size", type=int, default=None, help="fit resolution (default: the checkpoint's)")
    p.add_argument("--num-steps", type=int, default=None, help="samples per ray (default: the checkpoint's)")
    p.add_argument("--curriculum", default=None, help="camera settings when the checkpoint has none")
    p.add_argument("--crop-fraction", type=float, default=1.0, help="central fraction of the square crop")
    p.add_argument("--views", type=int, default=7, help="novel views of the edited face")
    p.add_argument("--yaw-range", type=float, default=0.5, help="yaw sweep half-width (radians)")
    p.add_argument("--exact", action="store_true", help="render the novel views from every sample")
    p.add_argument("--check-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=list(ops.BACKENDS))
    add_generator_args(p)
    return p


def _check_args(args) -> None:
    for name in ("iterations", "edit_iterations", "lr_step", "num_avg", "views", "check_every"):
        check_positive("--" + name.replace("_", "-"), getattr(args, name), allow_zero=name == "iterations")
    if args.background_mask and args.original_mask is None:
        raise UsageError("--background-mask needs --original-mask (the background is where it is 0)")
    if args.iterations == 0 and args.latent is None:
        raise UsageError("--iterations 0 needs --latent (a latent to start the edit from)")
    for flag, v, lo_open in (("--lr", args.lr, True), ("--lr-gamma", args.lr_gamma, True),
                             ("--weight-decay", args.weight_decay, False), ("--noise", args.noise, False),
                             ("--image-weight", args.image_weight, False), ("--offset-norm", args.offset_norm, False),
                             ("--semantic-weight", args.semantic_weight, True)):
        if v is not None:
            check_number(flag, v, lo=0, lo_open=lo_open)
    if args.img_size is not None:
        check_positive("--img-size", args.img_size)
    if args.num_steps is not None:
        check_number("--num-steps", args.num_steps, lo=2)
    check_number("--crop-fraction", args.crop_fraction, lo=0, hi=1, lo_open=True)


def _load(args, device):
    """(semantic generator, render options) of the checkpoint; UsageErrors for anything else."""
    if not Path(args.checkpoint).is_file():
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
    for flag, path in (("image", args.image), ("--latent", args.latent)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag} {path!r} does not exist")
    generator = load_generator(args.checkpoint, map_location=device, use_ema=not args.no_ema).eval()
    if not getattr(generator, "num_classes", 0):
        raise UsageError(f"pigan edit needs a semantic (FENeRF) checkpoint; {args.checkpoint!r} holds a "
                         f"{type(generator).__name__}, which renders no part labels")
    config = load_checkpoint(args.checkpoint).get("config")
    if not config or args.curriculum:
        config = load_curriculum(args.curriculum or "celeba")
        validate_curriculum(config)
    return generator, RenderOptions.from_curriculum(config, img_size=args.img_size, num_steps=args.num_steps)


def _read_latent(args, generator):
    """(frequencies, phase_shifts [1, D] on the generator's device, pitch, yaw) of --latent, or None."""
    if args.latent is None:
        return None
    try:
        saved = torch.load(args.latent, map_location="cpu", weights_only=True)
        f, p = saved["frequencies"], saved["phase_shifts"]
        pitch, yaw = float(saved["pitch"]), float(saved["yaw"])
    except Exception as exc:
        raise UsageError(f"--latent {args.latent!r} is not a latent file of `pigan invert` ({exc})") from exc
    width = generator.appearance_columns.stop
    if f.dim() != 2 or f.shape != (1, width) or p.shape != (1, width):
        raise UsageError(f"--latent {args.latent!r} holds modulations of shape {tuple(f.shape)}; this generator "
                         f"takes [1, {width}]")
    device = next(generator.parameters()).device
    return f.to(device), p.to(device), pitch, yaw


def _start(args, generator, target, original, options, render, latent) -> dict:
    """The latent before the edit: {"frequencies", "phase_shifts", "pitch", "yaw", "fit", "labels"}, from
    --latent (``latent``, ``_read_latent``'s) or an inversion (printing its summary)."""
    if latent is None:
        res = invert(generator, target, options, mask=original, progress=not args.no_progress)
        print(f"inversion: {summary(res)}", flush=True)
        return res
    f, p, pitch, yaw = latent
    device = f.device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        out = render_outputs(generator, f, p, render, pitch=pitch, yaw=yaw, jitter=False)
    return {"frequencies": f, "phase_shifts": p, "pitch": pitch, "yaw": yaw, "fit": out["pixels"],
            **semantic_fit(out["semantic"], out["opacity"], original)}


def _main(argv) -> int:
    args = build_parser().parse_checked(argv, _check_args)
    device = pick_device(args.device)
    generator, render = _load(args, device)
    size = render.img_size
    edited = load_mask(args.mask, size, generator, args.crop_fraction, image=args.image, name="--mask")
    original = None if args.original_mask is None else load_mask(
        args.original_mask, size, generator, args.crop_fraction, image=args.image, name="--original-mask")
    try:
        target = load_image(args.image, size, args.crop_fraction)
    except Exception as exc:
        raise UsageError(f"cannot read the image {args.image!r} ({type(exc).__name__}: {exc})") from exc
    if args.background_mask:
        target = mask_background(target, original)
    latent = _read_latent(args, generator)
    out = check_output_dir(args.out)
    options = InvertOptions(iterations=max(args.iterations, 1), lr=args.lr, weight_decay=args.weight_decay,
                            lr_step=args.lr_step, lr_gamma=args.lr_gamma, noise_std=args.noise, num_avg=args.num_avg,
                            render=render, seed=args.seed, check_every=args.check_every,
                            image_weight=args.image_weight, semantic_weight=args.semantic_weight,
                            offset_norm=args.offset_norm)
    name = Path(args.image).stem
    with ops.use_backend(args.backend):
        before = _start(args, generator, target, original, options, render, latent)
        after = refit_shape(generator, before["frequencies"], before["phase_shifts"], edited,
                            options.replace(iterations=args.edit_iterations), pitch=before["pitch"],
                            yaw=before["yaw"], render=render, progress=not args.no_progress)
        scores = edit_scores(before, after, edited, generator.num_classes, reference=original)
        settings = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))}
        paths = write_edit_outputs(generator, before, after, target, edited, scores, out, name, views=args.views,
                                   yaw_range=args.yaw_range, skip_empty=not args.exact, settings=settings)
    print(f"{name}: {describe_edit(scores)}")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def main(argv=None) -> int:
    """``pigan edit CHECKPOINT IMAGE --mask EDITED.png [options]``."""
    return run_command("pigan edit", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
