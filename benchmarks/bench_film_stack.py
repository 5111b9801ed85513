"""SIREN trunk benchmarks: pi-GAN's 8 FiLM layers (3 -> 256, then 7 x 256 -> 256), forward and
forward + backward, side by side per group.

"stack": pigan.ops.film_siren_stack on the backend "auto" picks (on the CPU the native stack, which
saves the pre-activations and recomputes one GEMM per stack; on CUDA the per-layer kernels);
"layers": the same layers one by one through the per-layer native op (CPU only; it recomputes each
layer's GEMM in backward); "reference": eager PyTorch. CPU: 32 768 points in fp32; CUDA: 2^20 points
in fp32 and bf16. extra_info: bytes saved for backward per point.

`pytest benchmarks -k film_stack --benchmark-only`
"""
import pytest
import torch

from conftest import all_devices, run_case, saved_bytes, size
from pigan import ops

H, LAYERS = 256, 8
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def trunk_inputs(B, N, device, dtype, seed=0):
    """pi-GAN's init scales: first layer U(+-1/3), the others U(+-sqrt(6/256)/25); freq = 15 r + 30."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, N, 3, generator=g) * 0.24 - 0.12) / 0.12                 # [B, N, 3]
    ws = [(torch.rand(H, 3, generator=g) * 2 - 1) / 3]
    ws += [(torch.rand(H, H, generator=g) * 2 - 1) * (6 / H) ** 0.5 / 25 for _ in range(LAYERS - 1)]
    bs = [(torch.rand(H, generator=g) * 2 - 1) / w.shape[1] ** 0.5 for w in ws]
    fs = [torch.randn(B, H, generator=g) * 15 * 0.25 + 30 for _ in ws]          # [B, H] each
    ps = [torch.randn(B, H, generator=g) * 0.25 for _ in ws]
    move = lambda ts: [t.to(device, dtype).requires_grad_() for t in ts]  # noqa: E731
    return x.to(device, dtype), move(ws), move(bs), move(fs), move(ps)


def make_fn(kind, args, backward):
    x, ws, bs, fs, ps = args
    dy = torch.randn(x.shape[0], x.shape[1], H, device=x.device, dtype=x.dtype)

    def forward():
        if kind == "stack":
            return ops.film_siren_stack(x, ws, bs, fs, ps)
        h = x
        with ops.use_backend("reference" if kind == "reference" else "native"):
            for w, b, f, p in zip(ws, bs, fs, ps):
                h = ops.film_siren(h, w, b, f, p)
        return h

    def run():
        if not backward:
            with torch.no_grad():
                return forward()
        y = forward()
        torch.autograd.backward(y, dy)
        return y
    return forward, run


def cases():
    out = []
    for dev in all_devices():
        d = dev.values[0]
        kinds = ["stack", "reference"] if d == "cuda" else ["stack", "layers", "reference"]
        precisions = ["fp32", "bf16"] if d == "cuda" else ["fp32"]
        out += [pytest.param(d, p, k, marks=dev.marks) for p in precisions for k in kinds]
    return out


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("device,precision,kind", cases())
def test_film_stack(benchmark, device, precision, kind, backward):
    B, N = size(device, cpu=(4, 8192), cuda=(8, 2 ** 17), tiny=(2, 256))
    pas = "fwd+bwd" if backward else "fwd"
    benchmark.group = f"SIREN trunk {LAYERS} layers {pas} {device} {precision} {B * N} points"
    args = trunk_inputs(B, N, device, DTYPES[precision])
    forward, run = make_fn(kind, args, backward)
    extra = {}
    if backward:
        nbytes, _ = saved_bytes(forward)
        extra["saved_bytes_per_point"] = round(nbytes / (B * N), 1)
    run_case(benchmark, run, device, kind=kind, ours=kind != "reference",
             rounds=5 if device == "cpu" else 10, points=B * N, precision=precision, **extra)
