"""Backend selection for pigan.ops, and the one way every op module is written.

Backends: "reference" (pure PyTorch, pi-GAN's formulas), "native" (the pigan._C extension: C++ on
CPU tensors, CUDA on CUDA tensors), "triton" (pigan.kernels: CUDA tensors, or CPU tensors when
TRITON_INTERPRET=1) and "auto" (the fastest available for the tensor's device).

The choice comes from ``use_backend(name)`` (a context manager, innermost wins, local to the
calling thread), else ``set_default_backend(name)`` (process-wide), else the environment variable
``PIGAN_BACKEND`` (default "auto"). An explicitly chosen backend that cannot serve the tensor's
device is an error that says why; an op that a backend does not implement at all (for example
compositing under "triton") uses the "auto" choice among the others.

How an op is written (compositing.py is a short complete example, film.py the longest):

1. One module ``pigan/ops/<op>.py`` holds everything of the op: the argument check, the reference
   twin ``_<op>`` (pure PyTorch, same signature), the fast paths and the public ``<op>``. It ends
   with its backend table::

       COMPOSITE = _backend.Op("composite", reference=_composite_impl, native=_composite_native)

   The public op checks its arguments once, then calls ``COMPOSITE.run(device, *args)``: the table
   is the only place a backend is picked. Where "auto" depends on more than the device, the table
   gets a ``prefer`` hook (film_siren: IEEE float32 runs native where auto would pick Triton).
   Table entries take checked arguments; the underscore twin checks and then calls its entry, so
   both public names validate exactly once.
2. The autograd of each fast path is one ``_autograd.FastPath`` (an autograd.Function written as
   ``compute`` / ``save`` / ``backward``), and the table entry calls its ``apply``. A FastPath whose
   ``compute`` is one ``torch.ops.pigan`` op is also registered on that op
   (``register_autograd(qualname, FastPath)``), so the raw op differentiates exactly as the public
   one.
3. Native ops are defined in C++ (``TORCH_LIBRARY_FRAGMENT(pigan, m)``) with one kernel per device.
   The op module registers their fake kernels (``register_fake``) and autograd
   (``_autograd.register_autograd``; ``_autograd.register_refusal`` on backward ops) in a function decorated ``@when_native_loaded``. It runs
   when the module is imported (pigan._C is loaded then, once, under a lock), so
   ``torch.ops.pigan.<op>`` is complete -- autograd, torch.compile, FakeTensor -- from then on.
4. A fast path promotes dtypes exactly as the twin does (the twin's output dtypes are the
   contract). A backward that is itself differentiated (grad mode on inside it: create_graph=True,
   e.g. a gradient penalty) returns ``_autograd.twin_grads``: the twin rebuilt on the saved inputs and
   differentiated as a graph, so every order of derivative is the twin's. A backward written in
   differentiable torch ops that are the twin's own (merge_samples) needs no such branch; a
   backward op that cannot be differentiated raises ``double_backward_error``.
5. Tests: ``tests/inputs.py`` makes inputs; each op test takes the ``device`` fixture and compares
   every backend with the twin on forward and backward with poisoned outputs.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from typing import Callable, Mapping

import torch

from pigan.kernels._runtime import triton_interpreting

BACKENDS = ("auto", "reference", "native", "triton")

# Per-device preference for "auto". Triton under the CPU interpreter is exact but slow: never auto.
_AUTO_ORDER = {
    "cuda": ("triton", "native", "reference"),
    "cpu": ("native", "reference"),
}

_state = threading.local()           # per-thread use_backend stack
_default: str | None = None          # set_default_backend, process-wide
_lock = threading.RLock()
_native = None
_native_error: str | None = None
_native_loaded = False
_native_hooks: list[Callable[[], None]] = []
_triton_error: str | None = None
_triton_checked = False


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def current_backend() -> str:
    """The backend in force in this thread: innermost ``use_backend``, else the process-wide
    ``set_default_backend``, else $PIGAN_BACKEND, else "auto"."""
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    if _default is not None:
        return _default
    env = os.environ.get("PIGAN_BACKEND", "auto").strip().lower() or "auto"
    if env not in BACKENDS:
        raise ValueError(f"PIGAN_BACKEND must be one of {BACKENDS}, got {env!r}")
    return env


def _require_available(name: str) -> None:
    if name not in ("auto", "reference"):
        ok, why = backend_status(name)
        if not ok:
            raise RuntimeError(f"pigan backend {name!r} is unavailable: {why}")


@contextlib.contextmanager
def use_backend(name: str):
    """Run the enclosed ops on backend ``name`` ("auto", "reference", "native" or "triton").

    Thread-local: it applies to ops called by this thread only (other threads, including
    DataLoader workers and threads this one starts, keep their own choice). For a process-wide
    choice use ``set_default_backend`` or $PIGAN_BACKEND.
    """
    _check_name(name)
    _require_available(name)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def set_default_backend(name: str | None) -> None:
    """Set the backend of every thread that is not inside a ``use_backend`` block (process-wide;
    it overrides $PIGAN_BACKEND). ``None`` returns to $PIGAN_BACKEND / "auto"."""
    global _default
    if name is not None:
        _check_name(name)
        _require_available(name)
    _default = name


def native_module():
    """The compiled ``pigan._C`` module, or None (with one warning saying why) when it can't load.

    Loaded once, under a lock: a thread that calls this while another is importing waits for the
    import to finish, so no thread sees a half-loaded state. The hooks of ``when_native_loaded``
    run right after a successful load.
    """
    global _native, _native_error, _native_loaded
    if _native_loaded:
        return _native
    with _lock:
        if not _native_loaded:
            try:
                mod = importlib.import_module("pigan._C")
            except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
                mod = None
                # A refused PIGAN_CPU_ISA is the user's setting, not a broken build.
                fix = ("unset PIGAN_CPU_ISA or pick a level this CPU has" if "PIGAN_CPU_ISA" in str(exc) else
                       "build it with `pip install --no-build-isolation -e .` against the installed torch")
                _native_error = f"pigan._C failed to import ({type(exc).__name__}: {exc}); {fix}"
                warnings.warn(
                    f"{_native_error}. Falling back to the pure-PyTorch reference ops.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _native = mod
            if mod is not None:
                for hook in _native_hooks:
                    hook()
            _native_loaded = True  # last: other threads return early only once everything is set
    return _native


def native_build_info():
    """What pigan._C says about its build (its ``build_info()``: CUDA runtime, torch version, CPU
    capability), or None when it can't load."""
    mod = native_module()
    if mod is None:
        return None
    return mod.build_info()


def when_native_loaded(fn: Callable[[], None]) -> Callable[[], None]:
    """Decorator: run ``fn`` (registering fake kernels / autograd of native ops) once pigan._C is
    loaded -- now, loading it if needed. Nothing runs when pigan._C is unavailable."""
    with _lock:
        _native_hooks.append(fn)
        if _native_loaded:
            if _native is not None:
                fn()
        else:
            native_module()
    return fn


def register_fake(qualname: str, fn: Callable) -> None:
    """``torch.library.register_fake``, tolerating a second registration (a reloaded module)."""
    try:
        torch.library.register_fake(qualname, fn)
    except RuntimeError as exc:
        if "already" not in str(exc):
            raise


def native_has_cuda() -> bool:
    mod = native_module()
    return bool(mod is not None and mod.has_cuda())


def _triton_status() -> tuple[bool, str | None]:
    global _triton_error, _triton_checked
    if not _triton_checked:
        with _lock:
            if not _triton_checked:
                try:
                    importlib.import_module("triton")
                except Exception as exc:
                    _triton_error = f"triton failed to import ({type(exc).__name__}: {exc})"
                _triton_checked = True
    return _triton_error is None, _triton_error


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


_notes: dict[str, list[str]] = {}


def add_note(backend: str, note: str) -> None:
    """A line for ``available_backends()[backend]["notes"]``: an op module saying how it uses the
    backend (e.g. which precisions "auto" sends elsewhere)."""
    lines = _notes.setdefault(_check_name(backend), [])
    if note not in lines:
        lines.append(note)


def available_backends() -> dict[str, dict]:
    """Every backend with whether it is available and, when it is not, why, and the op modules'
    notes on how they use it.

    >>> pigan.ops.available_backends()["native"]
    {'available': True, 'reason': None, 'cpu': True, 'cuda': False, 'cuda_compiled': True, 'notes': []}
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
        entry["notes"] = list(_notes.get(name, ()))
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


class Op:
    """The backend table of one public op: backend name -> implementation taking checked arguments.

    ``prefer(name, device, *args, **kwargs)``, when given, refines "auto" for one call: it returns
    the backend to use instead of ``name`` (the device's "auto" choice); a backend the table lacks
    or the device cannot run is ignored. Explicit choices are never changed.
    """

    def __init__(self, name: str, *, reference: Callable, prefer: Callable | None = None, **impls: Callable):
        unknown = set(impls) - set(BACKENDS[2:])
        if unknown:
            raise ValueError(f"{name}: unknown backends {sorted(unknown)}")
        self.name = name
        self.prefer = prefer
        self.impls: dict[str, Callable] = {"reference": reference, **impls}

    def select(self, device: torch.device, *args, **kwargs) -> tuple[str, Callable]:
        """(backend, implementation) of a call with these arguments on ``device``."""
        name, impl = select(self.name, device, self.impls)
        if self.prefer is not None and current_backend() == "auto":
            better = self.prefer(name, device, *args, **kwargs)
            if better != name and better in self.impls and backend_status(better, device)[0]:
                return better, self.impls[better]
        return name, impl

    def run(self, device: torch.device, *args, **kwargs):
        return self.select(device, *args, **kwargs)[1](*args, **kwargs)

    def __repr__(self) -> str:
        return f"Op({self.name!r}, backends={list(self.impls)})"
