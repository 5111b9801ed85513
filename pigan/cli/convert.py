"""``pigan convert SRC DST``: a released pi-GAN checkpoint to this project's safe format."""
from __future__ import annotations

import argparse

from pigan import checkpoints
from pigan.cli import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="pigan convert", description=(
        "Convert a released pi-GAN checkpoint (folder with generator.pth, ema.pth, discriminator.pth, "
        "or a path to generator.pth) to a pigan-kernels checkpoint loadable with weights_only=True. "
        "pi-GAN's pickles are read through an allowlist of the globals they need; any other global "
        "is refused by name and nothing from the file is run."))
    ap.add_argument("src", help="pi-GAN checkpoint folder or generator.pth")
    ap.add_argument("dst", help="output checkpoint file (.pt)")
    return ap


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    out = checkpoints.convert(args.src, args.dst)
    ckpt = checkpoints.load_checkpoint(out)
    parts = [k for k in ("generator", "ema", "discriminator") if ckpt.get(k) is not None]
    print(f"wrote {out} ({', '.join(parts)}; {ckpt['generator_config']})")
    return 0


def main(argv=None) -> int:
    return run_command("pigan convert", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
