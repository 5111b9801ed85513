"""SIREN trunk benchmarks: pi-GAN's 8 FiLM layers (3 -> 256, then 7 x 256 -> 256), forward + backward.

Side by side per group: "stack" (pigan.ops.film_siren_stack on the native backend: saves the
pre-activations and recomputes one GEMM per stack), "layers" (the same layers through the per-layer
native op, which recomputes each layer's GEMM in backward), and "reference" (eager PyTorch). On CUDA
the stack runs its layers one by one (per-layer kernels), so there the group compares "triton" layers
with the reference. extra_info: bytes saved for backward per point.

`pytest benchmarks -k film_stack --benchmark-only`
"""
import pytest
import torch

from conftest import machine_info, saved_bytes, sync
from pigan import ops

H, LAYERS = 256, 8
CPU_B, CPU_N = 4, 8192                     # 32768 points
GPU_B, GPU_N = 8, 2 ** 17                  # 2^20 points


def trunk_inputs(B, N, device, seed=0):
    """pi-GAN's init scales: first layer U(+-1/3), the others U(+-sqrt(6/256)/25); freq = 15 r + 30."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, N, 3, generator=g) * 0.24 - 0.12) / 0.12
    ws = [(torch.rand(H, 3, generator=g) * 2 - 1) / 3]
    ws += [(torch.rand(H, H, generator=g) * 2 - 1) * (6 / H) ** 0.5 / 25 for _ in range(LAYERS - 1)]
    bs = [(torch.rand(H, generator=g) * 2 - 1) / w.shape[1] ** 0.5 for w in ws]
    fs = [torch.randn(B, H, generator=g) * 15 * 0.25 + 30 for _ in ws]
    ps = [torch.randn(B, H, generator=g) * 0.25 for _ in ws]
    move = lambda ts: [t.to(device).requires_grad_() for t in ts]  # noqa: E731
    return x.to(device), move(ws), move(bs), move(fs), move(ps)


def make_fn(kind, args):
    x, ws, bs, fs, ps = args
    dy = torch.randn(x.shape[0], x.shape[1], H, device=x.device)

    def forward():
        if kind == "stack":
            with ops.use_backend("native"):
                return ops.film_siren_stack(x, ws, bs, fs, ps)
        backend = "reference" if kind == "reference" else ("triton" if kind == "triton" else "native")
        h = x
        with ops.use_backend(backend):
            for w, b, f, p in zip(ws, bs, fs, ps):
                h = ops.film_siren(h, w, b, f, p)
        return h

    def run():
        y = forward()
        torch.autograd.backward(y, dy)
        return y
    return forward, run


def cases():
    out = [("cpu", k) for k in ("stack", "layers", "reference")]
    if torch.cuda.is_available():
        out += [("cuda", k) for k in ("triton", "reference")]
    return out


@pytest.mark.parametrize("device,kind", cases())
def test_film_stack_fwd_bwd(benchmark, device, kind):
    B, N = (CPU_B, CPU_N) if device == "cpu" else (GPU_B, GPU_N)
    if kind == "triton":
        ok, why = ops._backend.backend_status("triton", torch.device(device))
        if not ok:
            pytest.skip(why)
    benchmark.group = f"SIREN trunk {LAYERS} layers fwd+bwd {device} fp32 {B * N} points"
    args = trunk_inputs(B, N, device)
    forward, run = make_fn(kind, args)
    nbytes, _ = saved_bytes(forward)
    benchmark.extra_info.update(**machine_info(), device=device, kind=kind, points=B * N,
                                saved_bytes_per_point=round(nbytes / (B * N), 1))

    def call():
        out = run()
        sync(device)
        return out
    call()
    benchmark.pedantic(call, rounds=5 if device == "cpu" else 20, warmup_rounds=0, iterations=1)
