"""Triton kernels of pigan-kernels (installed as ``pigan.kernels``), one module per op (Liger style):
``film_siren`` holds the fused FiLM-SIREN kernels and their host wrappers (forward, backward
epilogue); the autograd that serves them is pigan.ops.film's. ``film_siren`` imports triton, so it
loads on first use (``from pigan.kernels import film_siren``); ``_runtime`` (no triton) is what
pigan.ops reads at import. Nothing here imports pigan.ops."""
import importlib

__all__ = ["film_siren"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
