"""How Triton kernels run in this process: in the CPU interpreter or not, and the precision of fp32
CUDA matmuls. Imports no triton, so pigan.ops reads these without loading the kernels."""
from __future__ import annotations

import os

import torch


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1). Read at each call:
    tests switch it per process or per test."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cuda_fp32_matmul_precision() -> str:
    """"tf32" or "ieee": how torch runs fp32 CUDA matmuls now (the Triton kernels' dot follows it)."""
    m = torch.backends.cuda.matmul
    prec = getattr(m, "fp32_precision", None)
    if prec in ("tf32", "ieee"):
        return prec
    return "tf32" if m.allow_tf32 else "ieee"
