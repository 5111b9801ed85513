"""pigan.ops.film_siren: every backend against the float64 reference twin, forward and backward.

- Triton kernels on CPU under TRITON_INTERPRET=1: run in ONE subprocess (the interpreter must be set
  before triton is imported, and must not leak into the other test modules of this process), which
  prints one JSON line of measured errors per case; the tests here assert on them.
- The native backend on CPU tensors (C++ ops of csrc/film_cpu.cpp) and its addmm + torch elementwise
  variant (what CUDA tensors run), float64 gradcheck of both.
- Bad input, autocast, and GPU tests (Triton for real: fp32, tf32, bf16, fp16) when CUDA is present.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from film_inputs import (GRAD_NAMES, TOL, check, make_inputs, reference, rel_err, run_case, run_double_case,
                         split_parts)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------------------------------
# Triton under the interpreter (subprocess)
# --------------------------------------------------------------------------------------------------
# id: (B, N, K, H, dtype, bias, split, config override or None, how: "kernel" | "op" | "autocast")
INTERP_CASES = {
    "fp32-1x1x3x32": (1, 1, 3, 32, "float32", True, 0, None, "kernel"),
    "fp32-3x7x256x256": (3, 7, 256, 256, "float32", True, 0, None, "kernel"),
    "fp32-1x129x259x32": (1, 129, 259, 32, "float32", True, 0, None, "kernel"),
    "fp32-3x129x3x256": (3, 129, 3, 256, "float32", True, 0, None, "kernel"),
    "fp32-parts-2x7x(3+256)x256": (2, 7, 259, 256, "float32", True, 3, None, "kernel"),
    "fp32-nobias-2x33x256x32": (2, 33, 256, 32, "float32", False, 0, None, "kernel"),
    "fp32-smalltiles-3x129x259x256": (3, 129, 259, 256, "float32", True, 0,
                                      {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "CHUNK": 32}, "kernel"),
    "fp32-smallN-config-2x7x3x256": (2, 7, 3, 256, "float32", True, 0,
                                     {"BLOCK_M": 16, "BLOCK_N": 128, "BLOCK_K": 16, "CHUNK": 256}, "kernel"),
    "fp32-public-op-3x7x256x256": (3, 7, 256, 256, "float32", True, 0, None, "op"),
    # bf16 code path with float16 operands (tl.dot on bfloat16 is wrong under the interpreter)
    "fp16-3x129x259x256": (3, 129, 259, 256, "float16", True, 0, None, "kernel"),
    "fp16-1x7x3x32": (1, 7, 3, 32, "float16", True, 0, None, "kernel"),
    "fp16-parts-1x129x(3+256)x32": (1, 129, 259, 32, "float16", True, 3, None, "kernel"),
    "autocast-fp16-2x33x256x64": (2, 33, 256, 64, "float32", True, 0, None, "autocast"),
    # Non-contiguous inputs ("kernel:<layout>", see strided()) and partial last H-tiles (odd K, no bias).
    "fp32-strided-xT-wT-2x37x33x40": (2, 37, 33, 40, "float32", True, 0, None, "kernel:xT+wT"),
    "fp32-strided-cols-bias2-dy0-2x37x33x40": (2, 37, 33, 40, "float32", True, 0, None,
                                               "kernel:cols+bias2+dy0"),
    "fp16-strided-all-1x20x5x32": (1, 20, 5, 32, "float16", True, 0, None,
                                   "kernel:xT+wT+cols+bias2+dy0"),
    "fp32-H97-nobias-2x21x5x97": (2, 21, 5, 97, "float32", False, 0, None, "kernel"),
    "fp32-H129-nobias-1x9x33x129": (1, 9, 33, 129, "float32", False, 0, None, "kernel"),
    # Double backward (create_graph=True) through the Triton backend's forward and first backward.
    "double-fp32-2x9x(3+5)x40": (2, 9, 8, 40, "float32", True, 3, None, "double"),
    "double-fp32-nobias-1x33x5x32": (1, 33, 5, 32, "float32", False, 0, None, "double"),
}


def _interpret_main():
    """Subprocess entry: run INTERP_CASES through the Triton kernels, print one JSON line each."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    from pigan.kernels import film_siren as K
    from pigan.ops import film as film_mod, film_siren, use_backend
    K.POISON = True                                   # unwritten outputs/partials would show as NaN
    default_cfg, default_chunk = dict(K.INTERPRET_CONFIG), K.INTERPRET_CHUNK
    for cid, (B, N, Kd, H, dt, bias, split, cfg, how) in INTERP_CASES.items():
        K.INTERPRET_CONFIG = dict(default_cfg)
        K.INTERPRET_CHUNK = default_chunk
        if cfg:
            cfg = dict(cfg)
            K.INTERPRET_CHUNK = cfg.pop("CHUNK", default_chunk)
            K.INTERPRET_CONFIG.update(cfg)
        how, _, layout = how.partition(":")
        try:
            if how == "kernel":
                fn = film_mod._film_triton                   # the backend entry, past the op's checks
            elif how == "op":
                def fn(*a):
                    with use_backend("triton"):
                        return film_siren(*a)
            elif how == "double":
                def fn(*a):
                    with use_backend("triton"):
                        return film_siren(*a)
                res = run_double_case(fn, B, N, Kd, H, getattr(torch, dt), bias, split)
                print("CASE " + json.dumps({"id": cid, **res}), flush=True)
                continue
            else:
                def fn(*a):
                    with torch.autocast("cpu", dtype=torch.float16), use_backend("triton"):
                        return film_siren(*a)
            res = run_case(fn, B, N, Kd, H, getattr(torch, dt), bias, split,
                           ref_cast=torch.float16 if how == "autocast" else None, layout=layout)
        except Exception as exc:  # reported to the parent, which fails the case
            res = {"error": f"{type(exc).__name__}: {exc}"}
        print("CASE " + json.dumps({"id": cid, **res}), flush=True)


@pytest.fixture(scope="module")
def interp_results():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--interpret"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CASE "):
            rec = json.loads(line[5:])
            out[rec.pop("id")] = rec
    if not out:
        pytest.fail(f"interpreter subprocess produced no results (rc {proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return out


@pytest.mark.parametrize("case", list(INTERP_CASES))
def test_triton_interpreter_matches_reference(interp_results, case):
    res = interp_results.get(case)
    assert res is not None, f"case {case} did not run"
    assert "error" not in res, res["error"]
    how = INTERP_CASES[case][8]
    expect = "float16" if how == "autocast" else INTERP_CASES[case][4]
    assert res["dtype"] == expect, res
    check(res, "double" if how == "double" else expect)


# --------------------------------------------------------------------------------------------------
# Native backend on CPU tensors
# --------------------------------------------------------------------------------------------------
def _film():
    from pigan.ops import film
    return film


@pytest.fixture(params=["fused-cpp", "addmm-torch"])
def native_variant(request, monkeypatch):
    """The C++ path of CPU tensors, and the cuBLAS-style addmm + torch path that CUDA tensors run."""
    film = _film()
    if request.param == "fused-cpp":
        assert film._cpu_ops_available(), ("pigan._C lacks the film ops (build the extension): "
                                           f"{film._backend.backend_status('native')}")
    else:
        monkeypatch.setattr(film, "_fused_cpu", lambda t: False)
    return request.param


def _native(x, w, b, f, p):
    from pigan.ops import film_siren, use_backend
    with use_backend("native"):
        return film_siren(x, w, b, f, p)


NATIVE_SHAPES = [  # (B, N, K, H, split, bias)
    (1, 1, 3, 32, 0, True),
    (3, 7, 256, 256, 0, True),
    (2, 129, 259, 32, 3, True),
    (3, 97, 3, 256, 0, False),
    (2, 300, 259, 256, 3, True),   # 600 rows: GEMM blocks of 256 span samples
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("shape", NATIVE_SHAPES, ids=lambda s: "x".join(map(str, s[:4])) + f"-s{s[4]}-b{int(s[5])}")
def test_native_matches_reference(native_variant, shape, dtype):
    B, N, K, H, split, bias = shape
    check(run_case(_native, B, N, K, H, getattr(torch, dtype), bias, split, seed=N + K), dtype)


@pytest.mark.parametrize("split", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_native_gradcheck_float64(native_variant, split, bias):
    film = _film()
    x, w, b, f, p = make_inputs(2, 5, 3, 4, torch.float64, bias, seed=3)
    leaves = [t.requires_grad_() for t in (x, w, b, f, p) if t is not None]

    def fn(*ts):
        if bias:
            x, w, b, f, p = ts
        else:
            (x, w, f, p), b = ts, None
        parts = split_parts(x, split)
        return film._FiLMNative.apply(*(parts if split else (parts,)), w, b, f, p)

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("split", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_native_gradgradcheck_float64(native_variant, split, bias):
    """create_graph=True through the native backend (a gradient penalty): exact second derivatives,
    w.r.t. every input and the cotangent."""
    from pigan.ops import film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 5, 3, 4, torch.float64, bias, seed=4, freq_scale=0.5)
    f = f / 15                                                  # keep the finite differences accurate
    leaves = [t.requires_grad_() for t in (x, w, b, f, p) if t is not None]

    def fn(*ts):
        x, w, *rest = ts
        b, f, p = rest if bias else (None, *rest)
        with use_backend("native"):
            return film_siren(split_parts(x, split), w, b, f, p)

    assert torch.autograd.gradgradcheck(fn, leaves)


def test_native_double_backward_fp32_matches_reference(native_variant):
    """The gradient of a gradient penalty (fp32 native) against the float64 reference twin."""
    def fn(*a):
        from pigan.ops import film_siren, use_backend
        with use_backend("native"):
            return film_siren(*a)
    for shape in [(2, 9, 8, 40, True, 3), (3, 129, 259, 256, False, 0)]:
        B, N, K, H, bias, split = shape
        check(run_double_case(fn, B, N, K, H, torch.float32, bias, split, seed=N), "double")


def test_native_large_arguments_use_exact_sine():
    """|freq * z + phase| >= 1e6 (beyond the fast pi/2 reduction, whose error there is ~0.1) switches
    rows to libm, forward and backward epilogue. Exact arguments: K = 1, W = 1, b = 0, x a multiple of
    1/4 and freq = 2**20, phase = 0, so arg = x * 2**20 is the same number in fp32 and float64."""
    film = _film()
    assert film._cpu_ops_available()
    xs = torch.arange(4, 257, dtype=torch.float64) / 4                   # 1 .. 64 -> arg 1.0e6 .. 6.7e7
    xs = torch.cat([xs, -xs]).reshape(2, -1, 1)                          # [B=2, N, K=1]
    B, N = xs.shape[:2]
    arg = xs * 2.0 ** 20                                                 # float64, exact
    w, b = torch.ones(1, 1), torch.zeros(1)
    f, p = torch.full((B, 1), 2.0 ** 20), torch.zeros(B, 1)
    y = torch.ops.pigan.film_forward(xs.float(), w, b, f, p)
    assert (y.double() - torch.sin(arg)).abs().max() <= 1e-6
    z = xs.float().clone()                                               # z = x W^T + b = x
    dy = torch.ones(B, N, 1)
    dfreq, dphase = torch.ops.pigan.film_bwd_epilogue_(z, dy, f, p)
    cos = torch.cos(arg)
    assert (z.double() / 2.0 ** 20 - cos).abs().max() <= 1e-6          # dz = cos(arg) * freq
    assert (dphase.double() - cos.sum(1)).abs().max() <= 1e-6 * N
    assert (dfreq.double() - (cos * xs).sum(1)).abs().max() <= 1e-6 * (xs.abs().sum(1)).max()


def test_native_epilogue_op_partials():
    """film_bwd_epilogue_ alone: in-place dz and per-sample sums over N across several chunks."""
    film = _film()
    assert film._cpu_ops_available()
    g = torch.Generator().manual_seed(5)
    B, N, H = 3, 600, 40
    z = torch.randn(B, N, H, generator=g)
    dy = torch.randn(B, N, H, generator=g)
    f = torch.randn(B, H, generator=g) * 4 + 30
    p = torch.randn(B, H, generator=g)
    gref = dy.double() * torch.cos(f[:, None].double() * z.double() + p[:, None].double())
    zw = z.clone()
    dfreq, dphase = torch.ops.pigan.film_bwd_epilogue_(zw, dy, f, p)
    assert rel_err(zw, gref * f[:, None].double()) < 1e-5
    assert rel_err(dfreq, (gref * z.double()).sum(1)) < 1e-5
    assert rel_err(dphase, gref.sum(1)) < 1e-5


def test_native_autocast_cpu_bfloat16():
    """Under CPU autocast the layer follows the autocast dtype as linear does; grads reach fp32 leaves."""
    from pigan.ops import film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 33, 259, 64, torch.float32)
    leaves = [t.requires_grad_() for t in (x, w, b, f, p)]
    with torch.autocast("cpu", dtype=torch.bfloat16), use_backend("native"):
        y = film_siren((x[..., :3], x[..., 3:]), w, b, f, p)
    assert y.dtype == torch.bfloat16
    dy = torch.randn(y.shape, dtype=torch.float64).to(torch.bfloat16)
    grads = torch.autograd.grad(y, leaves, dy)
    assert all(a.dtype == torch.float32 for a in grads)
    bf = [t.detach().to(torch.bfloat16) for t in (x, w, b)]
    y_ref, g_ref = reference(bf[0], bf[1], bf[2], f.detach(), p.detach(), dy)
    assert rel_err(y, y_ref) <= TOL["bfloat16"]["y"]
    for name, a, r in zip(GRAD_NAMES, grads, g_ref):
        assert rel_err(a, r) <= TOL["bfloat16"]["grad"], name


def test_cpu_ops_reject_integer_and_mismatched_dtypes():
    """Direct torch.ops.pigan calls with integer tensors raise a TypeError naming the argument (not
    zeros); mismatched or wrong-device arguments name theirs too."""
    film = _film()
    assert film._cpu_ops_available()
    ops = torch.ops.pigan
    x, w, b, f, p = make_inputs(2, 5, 8, 4)
    for dt in (torch.int32, torch.int64):
        with pytest.raises(TypeError, match="x must have a floating dtype"):
            ops.film_forward(x.to(dt), w.to(dt), None, f, p)
        with pytest.raises(TypeError, match="x must have a floating dtype"):
            ops.film_forward_pre(x.to(dt), w.to(dt), b.to(dt), f, p)
        with pytest.raises(TypeError, match="weight must have a floating dtype"):
            ops.film_forward(x, w.to(dt), None, f, p)
        with pytest.raises(TypeError, match="freq must have a floating dtype"):
            ops.film_forward(x, w, b, f.to(dt), p)
        z = torch.zeros(2, 5, 4)
        with pytest.raises(TypeError, match="z must be float32 or float64"):
            ops.film_bwd_epilogue_(z.to(dt), z, f, p)
        with pytest.raises(TypeError, match="dy must have a floating dtype"):
            ops.film_bwd_epilogue_(z, z.to(dt), f, p)
        with pytest.raises(TypeError, match="pre must be float32 or float64"):
            ops.film_sine_out(z, z.to(dt), f, p)
        with pytest.raises(TypeError, match="out must have a floating dtype"):
            ops.film_sine_out(z.to(dt), z, f, p)
        with pytest.raises(TypeError, match="dy must have a floating dtype"):
            ops.film_bwd_pre_(z.to(dt), z, f, p)
        with pytest.raises(TypeError, match="phase must have a floating dtype"):
            ops.film_bwd_pre_(z, z, f, p.to(dt))
    with pytest.raises(TypeError, match="weight must have dtype Float, got Double"):
        ops.film_forward(x, w.double(), b, f, p)
    with pytest.raises(TypeError, match="bias must have dtype Float"):
        ops.film_forward(x, w, b.half(), f, p)
    with pytest.raises(ValueError, match="weight must have shape"):
        ops.film_forward(x, w[:, :5], b, f, p)
    with pytest.raises(ValueError, match="freq must have shape"):
        ops.film_forward(x, w, b, f[:1], p)
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.film_forward(x, w, b[:2], f, p)
    with pytest.raises(ValueError, match="z must be contiguous"):
        ops.film_bwd_epilogue_(torch.zeros(2, 4, 5).transpose(1, 2), torch.zeros(2, 5, 4), f, p)


@pytest.mark.parametrize("op", ["film_forward", "film_forward_pre"])
def test_raw_cpu_ops_have_autograd(op):
    """torch.ops.pigan.film_forward / film_forward_pre are complete ops from import on: float64
    gradcheck and gradgradcheck (film_forward_pre through both of its outputs)."""
    film = _film()
    assert film._cpu_ops_available()
    x, w, b, f, p = make_inputs(2, 5, 3, 4, torch.float64, seed=6, freq_scale=0.5)
    f = f / 15
    leaves = [t.requires_grad_() for t in (x, w, b, f, p)]
    fn = getattr(torch.ops.pigan, op)
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


def test_film_registration_runs_inside_the_native_load(monkeypatch):
    """film's registration hook may be the one that loads pigan._C (film imported first): it must not
    re-enter the load (it recursed without end)."""
    from pigan.ops import _backend
    film = _film()
    monkeypatch.setattr(_backend, "_native_loaded", False)
    monkeypatch.setattr(_backend, "_native", None)
    monkeypatch.setattr(_backend, "_native_hooks", [film._register_native])
    assert _backend.native_module() is not None and film._cpu_ops_available()


def test_auto_runs_native_for_ieee_fp32(monkeypatch):
    """Where "auto" would pick Triton, IEEE fp32 (TF32 off) runs the cuBLAS-based native path instead
    (FILM's prefer hook); TF32, half and bfloat16 stay on Triton, and an explicit choice is obeyed."""
    from pigan.ops import _backend
    film = _film()
    monkeypatch.setattr(_backend, "select", lambda op, dev, impls: ("triton", impls["triton"]))
    cpu = torch.device("cpu")

    def chosen(dtype):
        return film.FILM.select(cpu, *make_inputs(1, 2, 3, 4, dtype))[0]

    monkeypatch.setattr(film, "cuda_fp32_matmul_precision", lambda: "ieee")
    assert chosen(torch.float32) == "native"
    assert chosen(torch.bfloat16) == "triton"
    assert chosen(torch.float16) == "triton"
    with torch.autocast("cpu", dtype=torch.bfloat16):       # the GEMM's dtype is the autocast one
        assert chosen(torch.float32) == "triton"
    with _backend.use_backend("reference"):                 # an explicit choice (select is faked)
        assert chosen(torch.float32) == "triton"
    monkeypatch.setattr(film, "cuda_fp32_matmul_precision", lambda: "tf32")
    assert chosen(torch.float32) == "triton"
    assert "IEEE float32" in film.AUTO_NOTE


def test_fp32_matmul_precision_follows_torch(monkeypatch):
    film = _film()
    m = torch.backends.cuda.matmul
    old = m.allow_tf32
    try:
        m.allow_tf32 = True
        assert film.cuda_fp32_matmul_precision() == "tf32"
        m.allow_tf32 = False
        assert film.cuda_fp32_matmul_precision() == "ieee"
    finally:
        m.allow_tf32 = old


def _kernels():
    from pigan.kernels import film_siren as K   # imports triton (no launch happens in these tests)
    return K


def test_triton_smem_estimate_and_prune():
    """The autotuner's configs are pruned by shared memory before anything compiles: fake device
    limits (sm_90's 227 KB, sm_86's 99 KB, a tiny one) on fp32 and bf16 operands."""
    K = _kernels()
    assert K.smem_bytes(128, 256, 64, 3, 4) == 288 * 1024             # x and W^T tiles, 3 stages
    assert K.smem_bytes(64, 128, 64, 4, 2) == 96 * 1024
    h100 = 227 * 1024
    kept = K.prune_by_smem(K._CONFIGS, 4, h100)
    dropped = [c for c in K._CONFIGS if c not in kept]
    # 128x256x64/3 (288 KB), 128x128x64/4 (256 KB), 64x256x64/3 (240 KB)
    assert len(dropped) == 3, [str(c) for c in dropped]
    assert all(K._config_smem(c, 4) > h100 for c in dropped)
    assert K.prune_by_smem(K._CONFIGS, 2, h100) == K._CONFIGS          # bf16/fp16: all fit
    small = K.prune_by_smem(K._CONFIGS, 2, 99 * 1024)
    assert small and all(K._config_smem(c, 2) <= 99 * 1024 for c in small)
    with pytest.raises(RuntimeError, match="shared memory.*use_backend"):
        K.prune_by_smem(K._CONFIGS, 4, 1024)


def test_triton_prune_applies_the_device_limit(monkeypatch):
    """_prune (the autotuner's early prune) asks the device's limit for CUDA operands."""
    K = _kernels()

    class FakeCuda:
        device = torch.device("cuda", 0)

        def element_size(self):
            return 4
    monkeypatch.setattr(K, "smem_limit", lambda dev: 160 * 1024)
    kept = K._prune(K._CONFIGS, {"x_ptr": FakeCuda(), "N": 2 ** 20, "H": 256, "K": 256}, CHUNK=512)
    assert kept and all(K._config_smem(c, 4) <= 160 * 1024 for c in kept)
    assert len(kept) < len(K._CONFIGS)


def test_triton_grid_guard():
    """B is folded into grid axis 0 (axis 1 would stop at 65535); more programs than axis 0 holds
    raise a clear error instead of a failed launch."""
    K = _kernels()
    K._check_grid(70000, 1000, "film_fwd")                                  # B > 65535 is fine
    with pytest.raises(ValueError, match="film_fwd.*B = 1048576"):
        K._check_grid(2 ** 20, 2 ** 12, "film_fwd")


def test_triton_chunk_must_be_a_multiple_of_block_m(monkeypatch):
    """Fixed-config launches (interpreter, small N) skip the autotuner's pruning: a chunk that is not
    a multiple of BLOCK_M would count points twice, so it is refused before any launch."""
    K = _kernels()
    for n in (1, 7, 97, 129, 1000, 4095):                              # the small-N path's pair
        assert K._chunk(n) % K._small_config(n, 3, 256)["BLOCK_M"] == 0
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(K, "INTERPRET_CHUNK", 48)                       # BLOCK_M is 32
    x, w, b, f, p = make_inputs(1, 7, 3, 32)
    with pytest.raises(ValueError, match="multiple of BLOCK_M"):
        K.film_bwd_epilogue(x, w, b, f, p, torch.ones(1, 7, 32))


def test_reference_backend_is_the_twin():
    from pigan.ops import _film_siren, film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 9, 5, 7)
    with use_backend("reference"):
        y = film_siren((x[..., :2], x[..., 2:]), w, b, f, p)
    assert torch.equal(y, _film_siren(x, w, b, f, p))


def test_native_saves_only_inputs():
    """Backward keeps the input parts (not their concatenation) and the per-sample parameters."""
    from pigan.ops import film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 50, 259, 32)
    parts = (x[..., :3].contiguous().requires_grad_(), x[..., 3:].contiguous().requires_grad_())
    w.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with use_backend("native"):
            film_siren(parts, w, b, f, p)
    ptrs = {t.untyped_storage().data_ptr() for t in saved}
    per_point = [t for t in saved if t.dim() == 3]
    assert {t.untyped_storage().data_ptr() for t in per_point} == {q.untyped_storage().data_ptr() for q in parts}
    assert parts[0].untyped_storage().data_ptr() in ptrs


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_bad_input_errors(backend):
    from pigan.ops import film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 5, 8, 4)
    with use_backend(backend):
        with pytest.raises(ValueError, match="weight"):
            film_siren(x, w[:, :7], b, f, p)                           # mismatched K
        with pytest.raises(ValueError, match="weight"):
            film_siren((x[..., :3], x[..., 4:]), w, b, f, p)           # parts sum to K - 1
        with pytest.raises(ValueError, match="freq"):
            film_siren(x, w, b, f[:, :3], p)                           # wrong freq shape
        with pytest.raises(ValueError, match="phase"):
            film_siren(x, w, b, f, p[:1])                              # wrong batch
        with pytest.raises(ValueError, match="freq"):
            film_siren(x, w, b, f[0], p)                               # 1-D freq
        with pytest.raises(ValueError, match="bias"):
            film_siren(x, w, b[:3], f, p)
        with pytest.raises(ValueError, match="x"):
            film_siren(x[0], w, b, f, p)                               # 2-D x
        with pytest.raises(ValueError, match=r"x\[1\]"):
            film_siren((x, x[:1, :, :0]), w, b, f, p)                  # parts disagree on [B, N]
        with pytest.raises(TypeError, match="dtype"):
            film_siren(x, w.double(), b, f, p)                         # mixed dtypes
        with pytest.raises(TypeError, match="dtype"):
            film_siren(x, w, b, f.half(), p)
        with pytest.raises(TypeError, match="x"):
            film_siren(x.long(), w, b, f, p)                           # integer input
        with pytest.raises(TypeError, match="weight"):
            film_siren(x, w.tolist(), b, f, p)                         # not a tensor
        with pytest.raises(ValueError, match="device"):
            film_siren(x, w.to("meta"), b, f, p)                       # mixed devices
        with pytest.raises(ValueError, match="non-empty"):
            film_siren((), w, b, f, p)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_autocast_mixed_float64_is_a_type_error(backend):
    """Autocast leaves a float64 weight alone (and then casts nothing): fp32 x with it is a TypeError
    naming the operands, not a RuntimeError from inside the GEMM."""
    from pigan.ops import film_siren, use_backend
    x, w, b, f, p = make_inputs(2, 5, 8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16), use_backend(backend):
        with pytest.raises(TypeError, match="x0 is torch.float32, weight is torch.float64"):
            film_siren(x, w.double(), b, f, p)
        with pytest.raises(TypeError, match="bias is torch.float32"):
            film_siren(x.double(), w.double(), b, f, p)
        assert film_siren(x.double(), w.double(), b.double(), f, p).dtype == torch.float64


if __name__ == "__main__" and "--interpret" in sys.argv:
    _interpret_main()
