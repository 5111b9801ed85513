"""The ``pigan`` command: train, invert, render, convert, info.

Each subcommand's arguments are parsed by its own module's ``main(argv)``; this file only routes, so
``pigan train --help`` shows the full option list of ``pigan.train``.
"""
from __future__ import annotations

import argparse
import importlib
import platform
import sys

COMMANDS = {
    "train": ("pigan.train", "train a pi-GAN from a curriculum (demo, celeba, carla, cats, or a file)"),
    "invert": ("pigan.invert", "fit a trained generator to an image or a folder; render novel views"),
    "render": ("pigan.render", "render samples, multi-view grids, depth maps and videos from a checkpoint"),
    "convert": ("pigan.checkpoints", "convert a released pi-GAN checkpoint to this project's safe format"),
    "info": (None, "print versions, devices and the available kernel backends"),
}


def info() -> int:
    import torch

    import pigan
    from pigan import ops

    print(f"pigan-kernels {pigan.__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    print(f"torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'})")
    try:
        import triton
        print(f"triton {triton.__version__}")
    except Exception as exc:
        print(f"triton: not importable ({type(exc).__name__})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        print("cuda: no device")
    print(f"backend in force: {ops.current_backend()}")
    print("backends:")
    for name, st in ops.available_backends().items():
        where = ", ".join(d for d in ("cpu", "cuda") if st.get(d)) or "-"
        line = f"  {name:9s} {'available' if st['available'] else 'unavailable':11s} devices: {where}"
        if st.get("reason"):
            line += f"  ({st['reason']})"
        print(line)
    native = ops._backend.native_module()
    if native is not None:
        build = getattr(native, "build_info", None)
        if callable(build):
            print(f"native build: {build()}")
        elif build is not None:
            print(f"native build: {build}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pigan", description="pi-GAN on fused kernels: training, inversion, "
                                "rendering, checkpoint conversion.")
    from pigan import __version__
    p.add_argument("--version", action="version", version=f"pigan-kernels {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        # top-level flags, help, or an unknown command (argparse prints the error, exit code 2)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
    command, rest = argv[0], argv[1:]
    if command == "info":
        return info()
    module = importlib.import_module(COMMANDS[command][0])
    code = module.main(rest)
    return 0 if code is None else int(code)
