"""``pigan train-encoder CHECKPOINT --out DIR``: train an image encoder on the checkpoint generator's
own renders (``pigan.encoder``); ``pigan invert --encoder DIR/encoder.pt`` then starts from its
prediction."""
from __future__ import annotations

import argparse
import sys

from pigan import ops
from pigan.checkpoints import load_checkpoint, load_generator
from pigan.cli import EXIT_CODES_HELP, ArgumentParser, run_command
from pigan.common import UsageError, check_number, check_output_dir, check_positive, pick_device
from pigan.encoder import ENCODER_NAME, EncoderTrainOptions, read_encoder_file, train_encoder
from pigan.model.curriculum_loading import load_curriculum, validate_curriculum
from pigan.model.render_options import RenderOptions
from pigan.training.distributed import StopFlag

DEFAULT_IMG_SIZE_CAP = 64


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pigan train-encoder", description=(
        "Train an image encoder on the generator's own renders (no data set): it predicts the per-layer\n"
        "frequency/phase offsets and the camera pose that `pigan invert --encoder` starts from.\n"
        f"Writes OUT/{ENCODER_NAME} (with the training state for --resume), OUT/log.csv and OUT/loss.png."),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint written by `pigan train` or `pigan convert`")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--max-steps", type=int, default=2000, help="total training steps (default 2000)")
    p.add_argument("--max-time", type=float, default=None, help="stop (and save) after this many seconds")
    p.add_argument("--batch-size", type=int, default=16, help="renders per step (default 16)")
    p.add_argument("--img-size", type=int, default=None, help="render and encoder resolution (default: the "
                   f"checkpoint's, at most {DEFAULT_IMG_SIZE_CAP}; when resuming, the encoder's)")
    p.add_argument("--num-steps", type=int, default=None, help="samples per ray (default: the checkpoint's)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam step (default 1e-3)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation of the sampled latents (default 0.7)")
    p.add_argument("--recon-weight", type=float, default=0.0, help="weight of the reconstruction MSE through the "
                   "frozen generator (default 0: off; no perceptual loss is available offline)")
    p.add_argument("--recon-size", type=int, default=16, help="resolution of the reconstruction renders")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--ckpt-every", type=int, default=500, help="save every k steps (0: only at the end)")
    p.add_argument("--num-avg", type=int, default=10000, help="z samples for the average latent")
    p.add_argument("--curriculum", default=None,
                   help="camera settings when the checkpoint has none (e.g. a converted pi-GAN one; default celeba)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help=f"continue OUT/{ENCODER_NAME} to --max-steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto", choices=list(ops.BACKENDS))
    p.add_argument("--no-ema", action="store_true", help="the raw generator weights, not the EMA")
    p.add_argument("--no-progress", action="store_true")
    return p


def _check_args(args) -> None:
    if args.num_steps is not None:
        check_number("--num-steps", args.num_steps, lo=2)
    for name in ("max_steps", "batch_size", "img_size", "recon_size", "log_every", "num_avg"):
        if getattr(args, name) is not None:
            check_positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.batch_size < 2:
        raise UsageError(f"--batch-size must be at least 2 (the encoder's batch norm), got {args.batch_size}")
    check_positive("--ckpt-every", args.ckpt_every, allow_zero=True)
    if args.max_time is not None:
        check_number("--max-time", args.max_time, lo=0, lo_open=True)
    check_number("--lr", args.lr, lo=0, lo_open=True)
    check_number("--psi", args.psi, lo=0, hi=1)
    check_number("--recon-weight", args.recon_weight, lo=0)


def _render_options(args, ckpt) -> RenderOptions:
    config = ckpt.get("config")
    if not config or args.curriculum:
        config = load_curriculum(args.curriculum or "celeba")
        validate_curriculum(config)
    return RenderOptions.from_curriculum(config, num_steps=args.num_steps)


def _main(argv) -> int:
    args = build_parser().parse_checked(argv, _check_args)
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    generator = load_generator(args.checkpoint, map_location=device, use_ema=not args.no_ema)
    weights = "raw" if args.no_ema or ckpt.get("ema") is None else "ema"
    render = _render_options(args, ckpt)
    out = check_output_dir(args.out)
    img_size = args.img_size
    if img_size is None:
        resumed = args.resume and (out / ENCODER_NAME).is_file()
        img_size = (read_encoder_file(out / ENCODER_NAME)["config"]["img_size"] if resumed
                    else min(render.img_size, DEFAULT_IMG_SIZE_CAP))
    options = EncoderTrainOptions(
        max_steps=args.max_steps, max_time=args.max_time, batch_size=args.batch_size, img_size=img_size,
        num_steps=args.num_steps, lr=args.lr, psi=args.psi, recon_weight=args.recon_weight,
        recon_size=args.recon_size, seed=args.seed, log_every=args.log_every, ckpt_every=args.ckpt_every,
        num_avg=args.num_avg)
    print(f"pigan train-encoder: device {device}, generator {weights} weights, img {img_size}, batch "
          f"{args.batch_size}, to step {args.max_steps}, out {out}", flush=True)
    stop = StopFlag().install()
    try:
        with ops.use_backend(args.backend):
            res = train_encoder(generator, render, options, out, weights=weights, resume=args.resume,
                                progress_bar=not args.no_progress, stop=stop)
    finally:
        stop.restore()
    if res["reason"] == "signal":
        print(f"stopped by signal {stop.signum} at step {res['step']}; wrote {res['path']}; continue with "
              "--resume", flush=True)
    else:
        print(f"done: step {res['step']} in {res['elapsed']:.1f} s ({res['reason']}); wrote {res['path']}, "
              f"{out / 'log.csv'}, {out / 'loss.png'}", flush=True)
    return 0


def main(argv=None) -> int:
    """``pigan train-encoder CHECKPOINT --out DIR [options]``."""
    return run_command("pigan train-encoder", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
