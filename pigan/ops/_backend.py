"""Backend selection for pigan.ops.

Backends: "reference" (pure PyTorch, pi-GAN's formulas), "native" (the pigan._C extension: C++ on
CPU tensors, CUDA on CUDA tensors), "triton" (pigan.kernels: CUDA tensors, or CPU tensors when
TRITON_INTERPRET=1) and "auto" (the fastest available for the tensor's device).

The choice comes from ``use_backend(name)`` (a context manager, innermost wins) or else the
environment variable ``PIGAN_BACKEND`` (default "auto"). An explicitly chosen backend that cannot
serve the tensor's device is an error that says why; an op that a backend does not implement at all
(for example compositing under "triton") uses the "auto" choice among the others.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from typing import Callable, Mapping

import torch

BACKENDS = ("auto", "reference", "native", "triton")

# Per-device preference for "auto". Triton under the CPU interpreter is exact but slow: never auto.
_AUTO_ORDER = {
    "cuda": ("triton", "native", "reference"),
    "cpu": ("native", "reference"),
}

_state = threading.local()
_native = None
_native_error: str | None = None
_native_loaded = False
_triton_error: str | None = None
_triton_checked = False


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def current_backend() -> str:
    """The backend in force: innermost ``use_backend``, else $PIGAN_BACKEND, else "auto"."""
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    env = os.environ.get("PIGAN_BACKEND", "auto").strip().lower() or "auto"
    if env not in BACKENDS:
        raise ValueError(f"PIGAN_BACKEND must be one of {BACKENDS}, got {env!r}")
    return env


@contextlib.contextmanager
def use_backend(name: str):
    """Run the enclosed ops on backend ``name`` ("auto", "reference", "native" or "triton")."""
    _check_name(name)
    if name not in ("auto", "reference"):
        ok, why = backend_status(name)
        if not ok:
            raise RuntimeError(f"pigan backend {name!r} is unavailable: {why}")
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def native_module():
    """The compiled ``pigan._C`` module, or None (with one warning saying why) when it can't load."""
    global _native, _native_error, _native_loaded
    if not _native_loaded:
        _native_loaded = True
        try:
            _native = importlib.import_module("pigan._C")
        except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
            _native = None
            _native_error = (
                f"pigan._C failed to import ({type(exc).__name__}: {exc}); build it with "
                "`pip install --no-build-isolation -e .` against the installed torch"
            )
            warnings.warn(
                f"{_native_error}. Falling back to the pure-PyTorch reference ops.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _native


def native_has_cuda() -> bool:
    mod = native_module()
    return bool(mod is not None and mod.has_cuda())


def _triton_status() -> tuple[bool, str | None]:
    global _triton_error, _triton_checked
    if not _triton_checked:
        _triton_checked = True
        try:
            importlib.import_module("triton")
        except Exception as exc:
            _triton_error = f"triton failed to import ({type(exc).__name__}: {exc})"
    return _triton_error is None, _triton_error


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backend_status(name: str, device: torch.device | str | None = None) -> tuple[bool, str | None]:
    """(available, reason-if-not) of backend ``name``, for ``device`` when given."""
    _check_name(name)
    dev = torch.device(device).type if device is not None else None
    if name in ("auto", "reference"):
        return True, None
    if name == "native":
        if native_module() is None:
            return False, _native_error
        if dev == "cuda" and not native_has_cuda():
            return False, "pigan._C was built without CUDA (no CUDA toolkit or CPU-only torch at build time)"
        if dev not in (None, "cpu", "cuda"):
            return False, f"no native kernels for device type {dev!r}"
        return True, None
    ok, why = _triton_status()
    if not ok:
        return False, why
    if dev == "cpu" and not triton_interpreting():
        return False, "Triton runs CPU tensors only under TRITON_INTERPRET=1 (set before importing triton)"
    if dev is None and not torch.cuda.is_available() and not triton_interpreting():
        return False, "no CUDA device, and TRITON_INTERPRET=1 is not set"
    if dev not in (None, "cpu", "cuda"):
        return False, f"no Triton kernels for device type {dev!r}"
    return True, None


def available_backends() -> dict[str, dict]:
    """Every backend with whether it is available and, when it is not, why.

    >>> pigan.ops.available_backends()["native"]
    {'available': True, 'reason': None, 'cpu': True, 'cuda': False, 'cuda_compiled': True}
    """
    out = {}
    for name in ("reference", "native", "triton"):
        ok, why = backend_status(name)
        entry = {"available": ok, "reason": why}
        for dev in ("cpu", "cuda"):
            dok, _ = backend_status(name, dev)
            entry[dev] = dok and (dev == "cpu" or torch.cuda.is_available() or name == "native")
        if name == "native":
            # "cuda": serves CUDA tensors here; "cuda_compiled": the extension holds CUDA kernels.
            entry["cuda_compiled"] = ok and native_has_cuda()
            entry["cuda"] = entry["cuda_compiled"] and torch.cuda.is_available()
        out[name] = entry
    return out


def select(op: str, device: torch.device, impls: Mapping[str, Callable]) -> tuple[str, Callable]:
    """Pick the implementation of ``op`` for tensors on ``device``.

    ``impls`` maps backend names to callables; it must contain "reference".
    """
    chosen = current_backend()
    dev = device.type
    if chosen != "auto" and chosen in impls:
        ok, why = backend_status(chosen, device)
        if not ok:
            raise RuntimeError(f"{op}: backend {chosen!r} cannot run {dev} tensors: {why}")
        return chosen, impls[chosen]
    for name in _AUTO_ORDER.get(dev, ("reference",)):
        if name in impls and backend_status(name, device)[0]:
            return name, impls[name]
    return "reference", impls["reference"]
