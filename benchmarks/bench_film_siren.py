"""FiLM-SIREN layer benchmarks (issue 3): one 256 -> 256 layer, side by side per group.

CPU (N = 32768 points, B = 8 samples): native (C++ blocked GEMM + sine) vs a bare torch.addmm of the
same shape (the floor: target native <= 1.2x) vs the eager reference vs torch.compile(reference).
GPU (N = 2^20 and 2^22 points, fp32 and bf16): triton vs cuBLAS addmm of the same shape and precision
vs eager vs torch.compile(reference). Forward, and forward + backward (random cotangent, gradients of
x, weight, bias, freq and phase; the addmm floor does its three GEMMs).
Memory: bytes saved for backward per sample point by SPATIALSIRENBASELINE (extra_info).

`pytest benchmarks -k "test_film_" --benchmark-only` (name the folder, not this file: benchmarks/conftest.py
collects bench_*.py itself, so naming the file collects every case twice).
"""
import pytest
import torch

from conftest import machine_info, saved_bytes, sync
from pigan import ops

H = 256
CPU_POINTS, CPU_B = 32768, 8
GPU_POINTS = [2 ** 20, 2 ** 22]
GPU_B = 8


def layer_inputs(B, N, K, dtype, device, grad, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, N, K, generator=g) * 2 - 1
    w = torch.randn(H, K, generator=g) / K ** 0.5
    b = torch.randn(H, generator=g) * 0.5
    f = torch.randn(B, H, generator=g) * 4 + 30
    p = torch.randn(B, H, generator=g)
    ts = [t.to(device=device, dtype=dtype) for t in (x, w, b, f, p)]
    return [t.requires_grad_(grad) for t in ts]


_compiled = {}


def compiled_reference():
    if "fn" not in _compiled:
        _compiled["fn"] = torch.compile(ops._film_siren, dynamic=False)
    return _compiled["fn"]


def make_fn(kind, ts, backward):
    """A callable running one layer (and its backward when asked) the way `kind` does it."""
    x, w, b, f, p = ts
    B, N, K = x.shape
    if kind == "addmm":
        x2 = x.detach().reshape(B * N, K).requires_grad_(backward)

        def run():
            y = torch.addmm(b, x2, w.t())
            if backward:
                torch.autograd.backward(y, dy2)
            return y
        dy2 = torch.randn(B * N, H, device=x.device, dtype=x.dtype) if backward else None
        return run
    if kind == "compile":
        layer = compiled_reference()
    else:
        def layer(*a):
            with ops.use_backend(kind):
                return ops.film_siren(*a)
    dy = torch.randn(B, N, H, device=x.device, dtype=x.dtype) if backward else None

    def run():
        y = layer(x, w, b, f, p)
        if backward:
            torch.autograd.backward(y, dy)
        return y
    return run


def bench(benchmark, fn, device, rounds):
    def call():
        out = fn()
        sync(device)
        return out
    try:
        call()                                                  # compile / autotune / warm caches
    except Exception as exc:  # torch.compile unavailable or failing here: say so, don't fake a row
        pytest.skip(f"{type(exc).__name__}: {str(exc)[:200]}")
    sync(device)
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=1, iterations=1)


def record(benchmark, **extra):
    benchmark.extra_info.update(**machine_info(), **extra)


CPU_KINDS = ["native", "addmm", "reference", "compile"]


@pytest.mark.parametrize("kind", CPU_KINDS)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_film_cpu(benchmark, kind, backward):
    N = CPU_POINTS // CPU_B
    benchmark.group = f"film 256->256 cpu fp32 {CPU_POINTS} points {'fwd+bwd' if backward else 'fwd'}"
    record(benchmark, device="cpu", kind=kind, points=CPU_POINTS, B=CPU_B, dtype="float32")
    ts = layer_inputs(CPU_B, N, H, torch.float32, "cpu", backward)
    bench(benchmark, make_fn(kind, ts, backward), "cpu", rounds=10)


GPU_KINDS = ["triton", "addmm", "reference", "compile", "native"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", GPU_KINDS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("points", GPU_POINTS)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_film_gpu(benchmark, kind, dtype, points, backward):
    benchmark.group = (f"film 256->256 cuda {dtype} {points} points {'fwd+bwd' if backward else 'fwd'} "
                       f"(tf32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'})")
    record(benchmark, device="cuda", kind=kind, points=points, B=GPU_B, dtype=dtype)
    ts = layer_inputs(GPU_B, points // GPU_B, H, getattr(torch, dtype), "cuda", backward)
    bench(benchmark, make_fn(kind, ts, backward), "cuda", rounds=20)


def _siren_model_and_inputs(device, N, B=2):
    from pigan.siren import SPATIALSIRENBASELINE
    torch.manual_seed(0)
    model = SPATIALSIRENBASELINE(input_dim=3, z_dim=256, hidden_dim=256, output_dim=4).to(device)
    pts = torch.rand(B, N, 3, device=device) * 0.24 - 0.12
    dirs = torch.nn.functional.normalize(torch.randn(B, N, 3, device=device), dim=-1)
    z = torch.randn(B, 256, device=device)
    return model, (pts, z, dirs)


@pytest.mark.parametrize("backend", ["reference", "native", "triton"])
def test_film_memory_per_point(benchmark, backend):
    """Bytes saved for backward per sample point by a SPATIALSIRENBASELINE forward (extra_info), as
    the slope between two point counts (parameters and per-batch tensors cancel); timed: the forward."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ok, why = ops._backend.backend_status(backend, device)
    if not ok:
        pytest.skip(why)
    B, n1, n2 = 2, 64, 192
    totals = {}
    for N in (n1, n2):
        model, args = _siren_model_and_inputs(device, N, B)
        with ops.use_backend(backend):
            totals[N], _ = saved_bytes(lambda: model(*args))
    per_point = (totals[n2] - totals[n1]) / (B * (n2 - n1))
    benchmark.group = f"film memory: SPATIALSIRENBASELINE forward, bytes saved per point ({device})"
    record(benchmark, device=device, backend=backend, saved_bytes_per_point=per_point,
           saved_kib_per_point=round(per_point / 1024, 3), points=B * n2)

    def run():
        with ops.use_backend(backend):
            return model(*args)
    bench(benchmark, run, device, rounds=5)
