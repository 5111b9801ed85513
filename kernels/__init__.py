"""Triton kernels of pigan-kernels (installed as ``pigan.kernels``), one module per op (Liger style):
``film_siren`` holds the fused FiLM-SIREN kernels and their host wrappers (forward, backward
epilogue); the autograd Function that serves them and the native path is pigan.ops.film's. Importing
this package imports triton; pigan.ops imports it lazily, only when the "triton" backend runs."""
from . import film_siren

__all__ = ["film_siren"]
