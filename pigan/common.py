"""What every job of the library shares: errors with their exit codes, output writing, the device
choice and progress bars. It imports nothing of pigan, so any layer may use it.

A job reports a failure by raising a ``CommandError`` subclass; the command line prints it as one line
and exits with its ``exit_code``. Errors that are not ``CommandError`` are bugs and keep their traceback.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1          # the work ran and failed (e.g. no input image could be read)
EXIT_USAGE = 2           # bad arguments, configuration or input files, found before any work
EXIT_OUTPUT = 3          # an output could not be written (disk full, read-only folder)
EXIT_DIVERGED = 4        # training stopped: the losses stayed NaN/Inf


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


# ---------------------------------------------------------------------------- output files
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj, path) -> Path:
    """``torch.save`` through a temporary file in the same folder, fsync and ``os.replace``: a crash
    or a full disk leaves the previous file (or none), never a truncated one."""
    import torch
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


# ---------------------------------------------------------------------------- device, progress
def pick_device(name: str | None = None, local_rank: int | None = None):
    """``--device`` as a ``torch.device``; ``None`` or ``"auto"`` picks CUDA when there is one. With
    ``local_rank`` (a process of a torchrun job), a CUDA device without an index becomes
    ``cuda:(local_rank % device count)``, so each process takes its own GPU."""
    import torch
    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device: {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda requested but CUDA is not available")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def progress(iterable=None, enabled: bool = True, desc: str = "", total=None, **kwargs):
    """A tqdm bar over ``iterable`` (or a manual bar with ``total`` when iterable is None), or the
    iterable itself when disabled."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, **kwargs)


# ---------------------------------------------------------------------------- value checks
def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_positive(name: str, v, allow_zero: bool = False):
    """UsageError naming ``name`` unless ``v`` is a positive (or, with allow_zero, non-negative) int."""
    if not is_int(v) or v < (0 if allow_zero else 1):
        raise UsageError(f"{name} must be a{' non-negative' if allow_zero else ' positive'} integer, got {v!r}")
    return v


def check_number(name: str, v, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False):
    """UsageError naming ``name`` unless ``v`` is a finite number in the given (half-)open range."""
    ok = is_number(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        want = " and ".join(x for x in (lo_s, hi_s) if x) or "finite"
        raise UsageError(f"{name} must be a number {want}, got {v!r}")
    return v
