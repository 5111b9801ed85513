"""The ISA levels of pigan._C's vectorised CPU loops (csrc/cpu_isa.h): baseline x86-64, AVX2 + FMA,
AVX-512. The level is chosen once at import, the best the CPU supports unless $PIGAN_CPU_ISA forces
one, so each level's parity run is a subprocess with the variable set: the CPU parity tests of the FiLM
layer, the FiLM stack and compositing against their reference twins, plus the row tests here (a row
with a sine argument beyond the fast reduction's range, widths that leave vector tails).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

import pigan
import pigan._C as _C
from film_inputs import TOL, rel_err

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = ["baseline", "avx2", "avx512"]
SUPPORTED = _C.build_info()["cpu_isa_supported"].split(",")
K_MAX_FAST_ARG = 8192.0  # csrc/film_cpu.cpp's kMaxFastArg: beyond it a row's sines come from libm

# The CPU parity tests run under each forced level (pytest -k over the files below).
PARITY_FILES = ["tests/test_cpu_isa.py", "tests/test_film_siren.py", "tests/test_film_stack.py",
                "tests/test_compositing.py"]
PARITY_K = " or ".join([
    "test_in_process",
    "(test_native_matches_reference and fused-cpp)",
    "test_native_large_arguments_use_exact_sine",
    "test_native_epilogue_op_partials",
    "(test_native_double_backward_fp32_matches_reference and fused-cpp)",
    "test_native_stack_matches_reference",
    "test_film_sine_out_writes_every_element",
    "test_film_forward_pre_returns_preactivation",
    "test_film_bwd_pre",
    "(test_composite_native_matches_reference and cpu)",
    "(test_midpoint_native_matches_reference and cpu)",
    "test_composite_backward_cuda_variant_on_cpu",
    "test_composite_gradcheck",
])


def _env(**extra):
    env = dict(os.environ)
    # The subprocess must import this same pigan (the checkout under test, not an installed one).
    top = os.path.dirname(os.path.dirname(os.path.abspath(pigan.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([top, os.path.join(ROOT, "tests")] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------
# In this process (and, through PARITY_K, under every forced level)
# --------------------------------------------------------------------------------------------------
def test_in_process_level_is_reported():
    isa = _C.cpu_isa()
    assert isa in LEVELS and isa in SUPPORTED
    assert _C.build_info()["cpu_isa"] == isa
    forced = os.environ.get("PIGAN_CPU_ISA", "")
    assert isa == (forced if forced not in ("", "auto") else SUPPORTED[-1])


def _mixed_rows(B=2, N=300, H=37, seed=0):
    """pre-activations [B, N, H] and freq / phase [B, H] (H = 37 leaves a tail after every vector
    width). Column 5 of sample 0 has freq 1024 and phase 0, so its arguments 1024 * pre are exact in
    fp32; pre there is set to 9 in row 7 (argument 9216 > kMaxFastArg: that whole row goes to libm)
    and to 7.5 in row 8 (7680: the fast reduction near its limit)."""
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(B, N, H, generator=g)
    f = torch.randn(B, H, generator=g) * 4 + 30
    p = torch.randn(B, H, generator=g)
    f[0, 5], p[0, 5] = 1024.0, 0.0
    pre[0, 7, 5], pre[0, 8, 5] = 9.0, 7.5
    arg = f[:, None].double() * pre.double() + p[:, None].double()
    assert arg.abs().max() > K_MAX_FAST_ARG and arg[0, 8].abs().max() <= K_MAX_FAST_ARG
    return pre, f, p, arg


def test_in_process_sine_rows_match_the_twin():
    pre, f, p, arg = _mixed_rows()
    out = torch.full_like(pre, float("nan"))
    torch.ops.pigan.film_sine_out(out, pre, f, p)
    assert rel_err(out, torch.sin(arg)) < 1e-5
    # Exact arguments: the libm row's 9216 and the fast path's 7680 (the others round in fp32).
    assert (out[0, 7, 5].double() - torch.sin(arg[0, 7, 5])).abs() < 1e-6
    assert (out[0, 8, 5].double() - torch.sin(arg[0, 8, 5])).abs() < 1e-6


def test_in_process_backward_rows_match_the_twin():
    pre, f, p, _ = _mixed_rows(seed=1)
    dy = torch.randn(pre.shape, generator=torch.Generator().manual_seed(2))
    for op in ("film_bwd_pre_", "film_bwd_epilogue_"):
        bias = torch.randn(pre.shape[2]) if op == "film_bwd_epilogue_" else None
        z = pre if bias is None else pre - bias                   # z + bias == pre up to rounding
        v = (pre if bias is None else z + bias).double()          # the fp32 sum the kernel forms
        g = dy.double() * torch.cos(f[:, None].double() * v + p[:, None].double())
        if bias is None:
            dz = dy.clone()
            dfreq, dphase = torch.ops.pigan.film_bwd_pre_(dz, pre, f, p)
        else:
            dz = z.clone()
            dfreq, dphase = torch.ops.pigan.film_bwd_epilogue_(dz, dy, f, p, bias)
        assert rel_err(dz, g * f[:, None].double()) < 1e-5, op
        assert rel_err(dfreq, (g * v).sum(1)) < 1e-5, op
        assert rel_err(dphase, g.sum(1)) < 1e-5, op


def test_in_process_forward_matches_the_twin():
    from pigan.ops import _film_siren, film_siren, use_backend
    g = torch.Generator().manual_seed(3)
    B, N, K, H = 2, 700, 19, 45                                     # several row blocks; vector tails
    x = torch.rand(B, N, K, generator=g) * 2 - 1
    w, b = torch.randn(H, K, generator=g) / K ** 0.5, torch.randn(H, generator=g)
    f, p = torch.randn(B, H, generator=g) * 4 + 30, torch.randn(B, H, generator=g)
    with use_backend("native"):
        y = film_siren(x, w, b, f, p)
    ref = _film_siren(x.double(), w.double(), b.double(), f.double(), p.double())
    # The GEMM's fp32 rounding, times freq ~30, dominates here: the layer tests' tolerance.
    assert rel_err(y, ref) < TOL["float32"]["y"]


# --------------------------------------------------------------------------------------------------
# Each level, forced, in a subprocess
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", LEVELS)
def test_parity_under_forced_level(isa):
    if isa not in SUPPORTED:
        pytest.skip(f"this CPU cannot run the {isa} level (it supports {','.join(SUPPORTED)})")
    if os.environ.get("PIGAN_CPU_ISA"):
        pytest.skip("already inside a forced-level run")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *PARITY_FILES, "-k", PARITY_K],
        cwd=ROOT, env=_env(PIGAN_CPU_ISA=isa), capture_output=True, text=True, timeout=1200)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 100, tail                # the selection really ran
    assert "failed" not in proc.stdout.splitlines()[-1], tail


def _import_with(value):
    return subprocess.run([sys.executable, "-c", "import torch, pigan._C as C; print(C.cpu_isa())"],
                          cwd=ROOT, env=_env(PIGAN_CPU_ISA=value), capture_output=True, text=True, timeout=300)


def test_unknown_level_is_a_clear_error():
    proc = _import_with("sse9")
    assert proc.returncode != 0
    assert ("ImportError: PIGAN_CPU_ISA=sse9: unknown ISA level; use baseline, avx2, avx512 or auto"
            in proc.stderr), proc.stderr[-2000:]


def test_level_the_cpu_lacks_is_an_error():
    missing = [isa for isa in LEVELS if isa not in SUPPORTED]
    if not missing:
        pytest.skip("this CPU supports every level")
    proc = _import_with(missing[-1])
    assert proc.returncode != 0
    assert f"PIGAN_CPU_ISA={missing[-1]}: this CPU lacks it" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("value", ["", "auto"])
def test_auto_is_the_best_level(value):
    proc = _import_with(value)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == SUPPORTED[-1]
