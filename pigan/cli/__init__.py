"""The ``pigan`` command line: the top layer, the only one that knows argparse and exit codes.

One module per command (``pigan.cli.train``, ``train_encoder``, ``invert``, ``edit``, ``render``,
``eval``, ``shapes``, ``convert``, ``info``), each with ``build_parser()`` and ``main(argv)``; this file routes to them
and holds what they share: the parser class (one-line usage errors, exit code 2), the exit-code
help text, and ``run_command``, the one place where a ``CommandError`` raised by the library
(pigan.common) becomes one line ``pigan CMD: error: ...`` and its exit code. ``--debug`` anywhere
on the command line (or ``PIGAN_DEBUG=1``) adds the traceback. Errors that are not
``CommandError`` are bugs and keep their traceback. A new command is one module here plus one
entry in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from pigan.common import (EXIT_DIVERGED, EXIT_FAILED, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, CommandError,
                          DivergedError, OutputError, UsageError)

__all__ = ["COMMANDS", "EXIT_CODES_HELP", "ArgumentParser", "add_generator_args", "run_command", "main",
           "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_OUTPUT", "EXIT_DIVERGED", "CommandError",
           "UsageError", "OutputError", "DivergedError"]

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  success (also a training run stopped by SIGINT/SIGTERM after saving its checkpoint)
  {EXIT_FAILED}  the work failed (e.g. none of the input images could be read)
  {EXIT_USAGE}  bad arguments, curriculum values or input files (nothing was run)
  {EXIT_OUTPUT}  an output could not be written (full disk, read-only or wrong output path)
  {EXIT_DIVERGED}  training stopped because its losses were NaN/Inf for several steps in a row
--debug (anywhere on the command line) or PIGAN_DEBUG=1 adds the traceback to an error."""


def add_generator_args(ap: argparse.ArgumentParser) -> None:
    """The options shared by the commands that load a checkpoint's generator and run it."""
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    ap.add_argument("--no-ema", action="store_true", help="raw generator weights instead of the EMA")
    ap.add_argument("--no-progress", action="store_true")


def run_command(prog: str, body, argv=None) -> int:
    """Run ``body(argv)``; a CommandError becomes one line on stderr and its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("PIGAN_DEBUG", "") not in ("", "0")
    if "--debug" in argv:
        debug = True
        argv = [a for a in argv if a != "--debug"]
    try:
        code = body(argv)
    except CommandError as exc:
        if debug:
            traceback.print_exc()
        if getattr(exc, "usage", None):
            print(exc.usage, file=sys.stderr)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0 if code is None else int(code)


COMMANDS = {
    "train": ("pigan.cli.train", "train a pi-GAN from a curriculum (demo, celeba, carla, cats, or a file)"),
    "invert": ("pigan.cli.invert", "fit a trained generator to an image or a folder; render novel views"),
    "edit": ("pigan.cli.edit", "edit a portrait through its label map with a semantic (FENeRF) checkpoint"),
    "train-encoder": ("pigan.cli.train_encoder", "train an encoder on a checkpoint's renders to start `pigan invert`"),
    "render": ("pigan.cli.render", "render samples, multi-view grids, depth maps and videos from a checkpoint"),
    "eval": ("pigan.cli.eval", "FID, KID and IS of a checkpoint against real images (pi-GAN's protocol)"),
    "shapes": ("pigan.cli.shapes", "density volumes (.mrc) and coloured meshes (.ply/.obj) from a checkpoint"),
    "convert": ("pigan.cli.convert", "convert a released pi-GAN checkpoint to this project's safe format"),
    "info": ("pigan.cli.info", "print versions, devices and the available kernel backends"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are two lines and exit code 2: a one-line usage (the
    positionals, the required options and ``[options]``, with where the full list is), then
    ``PROG: error: MESSAGE``. argparse's own usage lists every option and runs to 20 lines."""

    def short_usage(self) -> str:
        fmt = self._get_formatter()
        parts = [self.prog]
        optional = False
        for a in self._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS:
                continue
            if a.required:
                metavar = fmt._format_args(a, fmt._get_default_metavar_for_optional(a)) if a.nargs != 0 else ""
                parts.append(f"{a.option_strings[-1]} {metavar}".rstrip())
            else:
                optional = True
        if optional:
            parts.append("[options]")
        parts += [fmt._format_args(a, fmt._get_default_metavar_for_positional(a))
                  for a in self._get_positional_actions()]
        return f"usage: {' '.join(parts)}  (all options: {self.prog} --help)"

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.short_usage()}\n{self.prog}: error: {message}\n")

    def parse_checked(self, argv, check=None) -> argparse.Namespace:
        """``parse_args``, then ``check(args)``, the command's value checks (pigan.common's
        check_positive / check_number). A UsageError they raise carries the one-line usage, which
        ``run_command`` prints above the error as argparse does for its own errors (exit code 2)."""
        args = self.parse_args(argv)
        if check is not None:
            try:
                check(args)
            except UsageError as exc:
                exc.usage = self.short_usage()
                raise
        return args


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pigan", description="pi-GAN on fused kernels: training, inversion, "
                                "rendering, checkpoint conversion.", epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from pigan import __version__
    p.add_argument("--version", action="version", version=f"pigan-kernels {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv        # applies to the subcommand wherever it was given
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        # top-level flags, help, or an unknown command (argparse prints the error, exit code 2)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
    command, rest = argv[0], argv[1:] + (["--debug"] if debug else [])
    module = importlib.import_module(COMMANDS[command][0])
    code = module.main(rest)
    return 0 if code is None else int(code)

