"""Offline sm_90 compiles of the Triton FiLM kernels (no GPU needed): every kernel and autotune config
must compile, and a config the autotuner keeps must fit the H100/H200's 227 KB of shared memory
(configs over it must be the ones the shared-memory prune drops). Register spills are reported.

The compile is what a launch on the GPU would build: contiguous operands (unit strides specialised
to the constant 1, as Triton's launcher does), 16-byte aligned pointers and sizes, K = H = 256.

A representative subset runs by default (a few seconds per compile); the full sweep, every config of
both kernels in bf16, fp16, TF32 fp32 and IEEE fp32, is marked ``slow`` and runs with
PIGAN_COMPILE_SWEEP=1 (it takes minutes on two cores).
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

SM90_SMEM = 227 * 1024          # cudaDevAttrMaxSharedMemoryPerBlockOptin on sm_90
TARGET = GPUTarget("cuda", 90, 32)
K_DIM = H_DIM = 256
CHUNK = 512
UNIT_STRIDES = ("sxk", "swk", "sfh", "sph", "sdyh")
_TYPES = {"bf16": "*bf16", "fp16": "*fp16", "tf32": "*fp32", "ieee": "*fp32"}
_ELEM = {"bf16": 2, "fp16": 2, "tf32": 4, "ieee": 4}


def _ptxas():
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        tool = get_ptxas(90)
        path = getattr(tool, "path", tool)
    except Exception as exc:  # no NVIDIA backend in this triton build
        pytest.skip(f"no ptxas for sm_90 ({type(exc).__name__}: {exc})")
    if not path or not os.path.exists(path):
        pytest.skip(f"ptxas not found ({path!r})")
    return path


def _kernels():
    from pigan.kernels import film_siren as K
    return K


def _compile(kernel: str, prec: str, cfg):
    """triton.compile of one kernel at one config for sm_90 -> CompiledKernel."""
    K = _kernels()
    jit = {"fwd": K._film_fwd_kernel, "bwd": K._film_bwd_kernel}[kernel].fn.fn
    kw = cfg.kwargs
    consts = {"HAS_BIAS": True, "DOT_PRECISION": "tf32" if prec == "tf32" else "ieee",
              "EVEN_K": K_DIM % kw["BLOCK_K"] == 0, "K_TILES": triton.cdiv(K_DIM, kw["BLOCK_K"]), **kw}
    consts.update({"ACCURATE": True} if kernel == "fwd" else {"CHUNK": CHUNK})
    consts.update({s: 1 for s in UNIT_STRIDES if s in jit.arg_names})
    sig, attrs = {}, {}
    for i, name in enumerate(jit.arg_names):
        if name in consts:
            sig[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            sig[name] = "*fp32" if name in ("freq_ptr", "phase_ptr", "pgz_ptr", "pg_ptr") else _TYPES[prec]
        else:
            sig[name] = "i32"
        attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(jit, sig, constexprs={(jit.arg_names.index(k),): v for k, v in consts.items()},
                    attrs=attrs)
    return triton.compile(src, target=TARGET, options={"num_warps": cfg.num_warps,
                                                       "num_stages": cfg.num_stages})


def _spills(compiled, ptxas: str, tmp_path) -> tuple[int, int]:
    """(registers, spill-store bytes) by ptxas -v on the kernel's PTX."""
    ptx = tmp_path / "k.ptx"
    ptx.write_text(compiled.asm["ptx"])
    out = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", str(ptx), "-o", str(tmp_path / "k.cubin")],
                         capture_output=True, text=True, timeout=300)
    log = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores", log)
    return int(regs.group(1)) if regs else -1, int(spill.group(1)) if spill else 0


def _check(kernel, prec, cfg, tmp_path, record_property):
    ptxas = _ptxas()
    K = _kernels()
    elem = _ELEM[prec]
    estimate = K._config_smem(cfg, elem)
    if cfg not in K.prune_by_smem(K._CONFIGS, elem, SM90_SMEM):
        # Pruned before any compile on an sm_90 device: never launched, nothing to build.
        assert estimate > SM90_SMEM
        record_property("pruned", f"{kernel} {prec} {cfg}: {estimate // 1024} KB")
        return
    compiled = _compile(kernel, prec, cfg)
    shared = compiled.metadata.shared
    regs, spill = _spills(compiled, ptxas, tmp_path)
    line = (f"{kernel} {prec} {cfg}: shared {shared // 1024} KB (estimate {estimate // 1024} KB), "
            f"{regs} registers, {spill} bytes spill stores")
    print(line)
    record_property("sm90", line)
    assert shared <= SM90_SMEM, line


def _ids(cfg):
    kw = cfg.kwargs
    return f"{kw['BLOCK_M']}x{kw['BLOCK_N']}x{kw['BLOCK_K']}-w{cfg.num_warps}-s{cfg.num_stages}"


def _configs():
    from pigan.kernels import film_siren as K
    return K._CONFIGS


# (kernel, precision, index into _CONFIGS): the most used bf16 tiles of both kernels, a TF32 one, and
# an fp32 config that only the shared-memory prune keeps off the device.
SUBSET = [("fwd", "bf16", 0), ("bwd", "bf16", 6), ("fwd", "tf32", 0), ("fwd", "ieee", 4)]


@pytest.mark.parametrize("kernel,prec,idx", SUBSET, ids=[f"{k}-{p}-{i}" for k, p, i in SUBSET])
def test_sm90_compile_subset(kernel, prec, idx, tmp_path, record_property):
    _check(kernel, prec, _configs()[idx], tmp_path, record_property)


def test_sm90_prune_drops_exactly_the_oversized_fp32_configs():
    K = _kernels()
    for prec, elem in _ELEM.items():
        kept = K.prune_by_smem(K._CONFIGS, elem, SM90_SMEM)
        for cfg in K._CONFIGS:
            assert (cfg in kept) == (K._config_smem(cfg, elem) <= SM90_SMEM), (prec, str(cfg))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PIGAN_COMPILE_SWEEP") != "1",
                    reason="full sm_90 compile sweep (minutes): set PIGAN_COMPILE_SWEEP=1")
@pytest.mark.parametrize("prec", list(_ELEM))
@pytest.mark.parametrize("kernel", ["fwd", "bwd"])
@pytest.mark.parametrize("idx", range(11))
def test_sm90_compile_sweep(kernel, prec, idx, tmp_path, record_property):
    cfgs = _configs()
    assert len(cfgs) == 11, "update the sweep's range to the number of configs"
    _check(kernel, prec, cfgs[idx], tmp_path, record_property)
