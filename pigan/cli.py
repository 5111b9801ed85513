"""The ``pigan`` command: train, invert, render, eval, shapes, convert, info.

Each subcommand's arguments are parsed by its own module's ``main(argv)``; this file routes, and
holds the one way every command reports a failure: raise a ``CommandError`` subclass (its exit code
is part of the command line interface) and let ``run_command`` print one line
``pigan CMD: error: ...``. ``--debug`` anywhere on the command line (or ``PIGAN_DEBUG=1``) adds the
traceback. Errors that are not ``CommandError`` are bugs and keep their traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import platform
import shutil
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1          # the work ran and failed (e.g. no input image could be read)
EXIT_USAGE = 2           # bad arguments, configuration or input files, found before any work
EXIT_OUTPUT = 3          # an output could not be written (disk full, read-only folder)
EXIT_DIVERGED = 4        # training stopped: the losses stayed NaN/Inf

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  success (also a training run stopped by SIGINT/SIGTERM after saving its checkpoint)
  {EXIT_FAILED}  the work failed (e.g. none of the input images could be read)
  {EXIT_USAGE}  bad arguments, curriculum values or input files (nothing was run)
  {EXIT_OUTPUT}  an output could not be written (full disk, read-only or wrong output path)
  {EXIT_DIVERGED}  training stopped because its losses were NaN/Inf for several steps in a row
--debug (anywhere on the command line) or PIGAN_DEBUG=1 adds the traceback to an error."""


class CommandError(Exception):
    """A failure reported as one line and an exit code (no traceback unless --debug)."""
    exit_code = EXIT_FAILED


class UsageError(CommandError, ValueError):
    """Bad arguments, configuration or input files: found before any work is done."""
    exit_code = EXIT_USAGE


class OutputError(CommandError, OSError):
    """An output file could not be written; the message names it."""
    exit_code = EXIT_OUTPUT


class DivergedError(CommandError):
    """Training losses stayed non-finite."""
    exit_code = EXIT_DIVERGED


_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "permission denied", errno.EISDIR: "is a directory",
                 errno.ENOTDIR: "a parent is not a directory", errno.ENOENT: "no such folder"}


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def free_bytes(path) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def describe_write_failure(path, exc: BaseException, needed: int | None = None) -> str:
    """``cannot write PATH: REASON (needed about X MB, Y MB free)`` for an OSError, or for torch's
    RuntimeError from its zip writer when the disk fills."""
    err = getattr(exc, "errno", None)
    reason = _WRITE_ERRNOS.get(err) or getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
    free = free_bytes(path)
    if err in (errno.ENOSPC, errno.EDQUOT) or (free is not None and needed and free < needed) or \
            not isinstance(exc, OSError):
        if not isinstance(exc, OSError) and free is not None and needed and free < needed:
            reason = "no space left on device"
        sizes = []
        if needed:
            sizes.append(f"needed about {_mb(needed)}")
        if free is not None:
            sizes.append(f"{_mb(free)} free")
        if sizes:
            reason += f" ({', '.join(sizes)})"
    return f"cannot write {path}: {reason}"


def _is_write_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    # torch.save reports a failed write of its zip container as a RuntimeError from the C++ writer
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("inline_container" in text or "file write failed" in text
                                              or "unexpected pos" in text)


@contextmanager
def writing(path, needed: int | None = None, note: str = "", remove_partial: bool = True):
    """Turn a failed write of ``path`` into an OutputError: one line naming the file, the reason,
    the space needed and free, then ``note`` (e.g. where the last good checkpoint is). With
    ``remove_partial`` a half-written ``path`` is deleted (pass False for atomic writers, which leave
    the old file in place on failure)."""
    try:
        yield
    except CommandError:
        raise
    except (OSError, RuntimeError) as exc:
        if not _is_write_failure(exc):
            raise
        if remove_partial:
            try:
                Path(path).unlink()
            except OSError:
                pass
        msg = describe_write_failure(path, exc, needed)
        raise OutputError(msg + (f"; {note}" if note else "")) from exc


def check_output_dir(folder, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it writable with a probe file, before any work."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = _WRITE_ERRNOS.get(exc.errno) or exc.strerror or str(exc)
        raise OutputError(f"{what} {str(folder)!r} is not writable: {reason}") from exc
    return folder


def check_output_file(path, what: str = "output file") -> Path:
    """Refuse an output file path that is a folder or sits in a folder that cannot be written."""
    path = Path(path).expanduser()
    if path.is_dir() or str(path).endswith(os.sep):
        raise OutputError(f"{what} {str(path)!r} is a folder; give a file name such as "
                          f"{str(path).rstrip(os.sep) + os.sep}model.pt")
    check_output_dir(path.parent, what=f"folder of the {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {str(path)!r} is not writable: permission denied")
    return path


def add_generator_args(ap: argparse.ArgumentParser) -> None:
    """The options shared by the commands that load a checkpoint's generator and run it."""
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    ap.add_argument("--no-ema", action="store_true", help="raw generator weights instead of the EMA")
    ap.add_argument("--no-progress", action="store_true")


def pick_device(name: str | None):
    """``--device`` as a ``torch.device``; ``None`` or ``"auto"`` picks cuda when there is one."""
    import torch
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    return device


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
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0 if code is None else int(code)


COMMANDS = {
    "train": ("pigan.training", "train a pi-GAN from a curriculum (demo, celeba, carla, cats, or a file)"),
    "invert": ("pigan.invert", "fit a trained generator to an image or a folder; render novel views"),
    "render": ("pigan.render", "render samples, multi-view grids, depth maps and videos from a checkpoint"),
    "eval": ("pigan.evaluate", "FID, KID and IS of a checkpoint against real images (pi-GAN's protocol)"),
    "shapes": ("pigan.shapes", "density volumes (.mrc) and coloured meshes (.ply/.obj) from a checkpoint"),
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
        for note in st.get("notes", ()):
            print(f"            note: {note}")
    native = ops._backend.native_module()
    if native is not None:
        build = getattr(native, "build_info", None)
        if callable(build):
            print(f"native build: {build()}")
        elif build is not None:
            print(f"native build: {build}")
    return 0


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
    if command == "info":
        return info()
    module = importlib.import_module(COMMANDS[command][0])
    code = module.main(rest)
    return 0 if code is None else int(code)
