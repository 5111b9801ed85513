"""FiLM-SIREN layer benchmarks: one 256 -> 256 layer ``sin(freq * (x W^T + b) + phase)``.

Per group (device, precision, points, fwd or fwd+bwd), side by side: the project's path ("auto",
what a user gets, plus the "triton" and "native" backends on CUDA), a bare ``torch.addmm`` of the
same shape and precision (the GEMM floor; in fwd+bwd its three GEMMs), the eager pi-GAN formula
("reference") and ``torch.compile`` of that formula.
CPU: 32 768 points (B = 8), fp32. CUDA: 2^20 points (B = 8) in fp32 (IEEE), tf32 and bf16.
Memory: bytes saved for backward per sample point by SPATIALSIRENBASELINE (extra_info).

`pytest benchmarks -k "film_" --benchmark-only` (name the folder, not this file: benchmarks/conftest.py
collects bench_*.py itself, so naming the file collects every case twice).
"""
import contextlib
import time

import pytest
import torch

from conftest import (COMPILE_BACKEND, TINY, all_devices, machine_info, run_case, saved_bytes, size,
                      skip_unless_backend)
from pigan import ops

H = 256
B = 8
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}
OURS = ("auto", "triton", "native")


def layer_inputs(B, N, K, dtype, device, grad, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, N, K, generator=g) * 2 - 1
    w = torch.randn(H, K, generator=g) / K ** 0.5
    b = torch.randn(H, generator=g) * 0.5
    f = torch.randn(B, H, generator=g) * 4 + 30
    p = torch.randn(B, H, generator=g)
    ts = [t.to(device=device, dtype=dtype) for t in (x, w, b, f, p)]
    return [t.requires_grad_(grad) for t in ts]


@contextlib.contextmanager
def matmul_precision(precision):
    """fp32 matmuls in IEEE or TF32 for the duration (torch's newer fp32_precision switch if present)."""
    m = torch.backends.cuda.matmul
    if hasattr(m, "fp32_precision"):
        old = m.fp32_precision
        m.fp32_precision = "tf32" if precision == "tf32" else "ieee"
        try:
            yield
        finally:
            m.fp32_precision = old
    else:
        old = m.allow_tf32
        m.allow_tf32 = precision == "tf32"
        try:
            yield
        finally:
            m.allow_tf32 = old


_compiled = {}


def compiled_reference(key):
    """One torch.compile wrapper per precision and pass, so each case's warm-up is its own compile."""
    if key not in _compiled:
        _compiled[key] = torch.compile(ops._film_siren, dynamic=False, backend=COMPILE_BACKEND)
    return _compiled[key]


def make_fn(kind, ts, backward, key):
    """A callable running one layer (and its backward when asked) the way `kind` does it."""
    x, w, b, f, p = ts
    Bx, N, K = x.shape
    if kind == "addmm":
        x2 = x.detach().reshape(Bx * N, K).requires_grad_(backward)
        dy2 = torch.randn(Bx * N, H, device=x.device, dtype=x.dtype) if backward else None

        def run():
            y = torch.addmm(b, x2, w.t())
            if backward:
                torch.autograd.backward(y, dy2)
            return y
        return run
    if kind == "compile":
        layer = compiled_reference(key)
    else:
        def layer(*a):
            with ops.use_backend(kind):
                return ops.film_siren(*a)
    dy = torch.randn(Bx, N, H, device=x.device, dtype=x.dtype) if backward else None

    def run():
        y = layer(x, w, b, f, p)
        if backward:
            torch.autograd.backward(y, dy)
        return y
    return run


def film_cases():
    out = []
    for dev in all_devices():
        d = dev.values[0]
        kinds = ["auto", "triton", "native", "addmm", "reference", "compile"] if d == "cuda" else \
            ["native", "addmm", "reference", "compile"]
        # CPU: fp32 (its table); a tiny rehearsal adds bf16 to walk the low-precision path as well.
        precisions = ["fp32", "tf32", "bf16"] if d == "cuda" else (["fp32", "bf16"] if TINY else ["fp32"])
        out += [pytest.param(d, p, k, marks=dev.marks) for p in precisions for k in kinds]
    return out


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("device,precision,kind", film_cases())
def test_film_layer(benchmark, device, precision, kind, backward):
    if kind in ("triton", "native"):
        skip_unless_backend(kind, device)
    points = size(device, cpu=32768, cuda=2 ** 20, tiny=512)
    pas = "fwd+bwd" if backward else "fwd"
    benchmark.group = f"film 256->256 {device} {precision} {points} points {pas}"
    ts = layer_inputs(B, points // B, H, DTYPES[precision], device, backward)
    with matmul_precision(precision):
        fn = make_fn(kind, ts, backward, (precision, backward))
        run_case(benchmark, fn, device, kind=kind, ours=kind in OURS, rounds=10 if device == "cuda" else 5,
                 skip_on_error=kind == "compile", points=points, B=B, precision=precision)


@pytest.mark.parametrize("kind", ["native", "addmm", "reference", "compile"])
@pytest.mark.parametrize("points", [2 ** 15, 2 ** 20])
def test_film_isa_forward(benchmark, points, kind):
    """The CPU layer forward at one sample (x [1, N, 256]) per ISA level of pigan._C's row loops: run
    once as is and once with PIGAN_CPU_ISA=baseline (the level is in extra_info and the group name),
    `pytest benchmarks -k film_isa --benchmark-only`. addmm is the same GEMM with its bias, the
    floor the fused layer is measured against; reference the eager formula; compile its
    torch.compile (first call excluded)."""
    import pigan._C
    if kind == "native":
        skip_unless_backend(kind, "cpu")
    points = 512 if TINY else points
    isa = pigan._C.cpu_isa()
    benchmark.group = f"film fwd 256->256 cpu fp32 B=1 {points} points, pigan cpu_isa={isa}"
    ts = layer_inputs(1, points, H, torch.float32, "cpu", False)
    with torch.no_grad():
        fn = make_fn(kind, ts, False, ("isa", points))
        run_case(benchmark, lambda: fn(), "cpu", kind=kind, ours=kind == "native",
                 rounds=10 if points <= 2 ** 15 else 3, skip_on_error=kind == "compile", points=points, B=1,
                 precision="fp32")


@pytest.mark.parametrize("points", [2 ** 15, 2 ** 20])
def test_film_isa_forward_paired(benchmark, points):
    """test_film_isa_forward's four kinds timed round-robin, one call of each per round, for a shared
    machine: the load moves between the cases of a sequential run (its ratios can swing by 2x there),
    much less between adjacent calls. extra_info has each kind's median and min and the median over
    rounds of native / addmm of the same round (paired_native_vs_addmm); the timed stat is a round."""
    import statistics
    import pigan._C
    skip_unless_backend("native", "cpu")
    points = 512 if TINY else points
    isa = pigan._C.cpu_isa()
    benchmark.group = f"film fwd 256->256 cpu fp32 B=1 {points} points, round-robin, pigan cpu_isa={isa}"
    ts = layer_inputs(1, points, H, torch.float32, "cpu", False)
    times, warmup = {}, {}
    with torch.no_grad():
        fns = {}
        for kind in ("native", "addmm", "reference", "compile"):
            fn = make_fn(kind, ts, False, ("isa", points))
            t0 = time.perf_counter()
            try:
                fn()
            except Exception as exc:  # torch.compile unavailable: the other kinds still run
                warmup[kind] = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            warmup[kind] = round(time.perf_counter() - t0, 4)
            fns[kind], times[kind] = fn, []

        def one_round():
            for kind, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[kind].append(time.perf_counter() - t0)

        benchmark.extra_info.update(**machine_info(), device="cpu", kind="round-robin", ours=False, points=points,
                                    B=1, precision="fp32", warmup_s=warmup)
        rounds = 2 if TINY else (20 if points <= 2 ** 15 else 5)
        benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=0, iterations=1)
    for kind, ts_ in times.items():
        benchmark.extra_info[f"{kind}_median_s"] = statistics.median(ts_)
        benchmark.extra_info[f"{kind}_min_s"] = min(ts_)
    for kind in ("reference", "compile", "native"):
        if kind in times:
            benchmark.extra_info[f"paired_{kind}_vs_addmm"] = statistics.median(
                a / b for a, b in zip(times[kind], times["addmm"]))


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
    skip_unless_backend(backend, device)
    Bm, n1, n2 = 2, 64, 192
    totals = {}
    for N in (n1, n2):
        model, args = _siren_model_and_inputs(device, N, Bm)
        with ops.use_backend(backend):
            totals[N], _ = saved_bytes(lambda: model(*args))
    per_point = (totals[n2] - totals[n1]) / (Bm * (n2 - n1))
    benchmark.group = f"film memory: SPATIALSIRENBASELINE forward, bytes saved per point ({device})"
    benchmark.extra_info.update(**machine_info(), saved_bytes_per_point=per_point,
                                saved_kib_per_point=round(per_point / 1024, 3), points=Bm * n2)

    def run():
        with ops.use_backend(backend):
            return model(*args)
    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=5)
