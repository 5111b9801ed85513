"""Compositing benchmarks, reference vs native, side by side per group.

pi-GAN CelebA size: B=8 images of 64x64 rays, S=24 samples (12 coarse + 12 fine), C=3; on CUDA also
the GPU batch B=28 of issue 4. forward, forward+backward, and the bytes autograd saves for backward
(extra_info: saved_bytes, input_bytes, saved_over_inputs). EG3D's midpoint quadrature (C=32) as well.
"""
import pytest
import torch

from conftest import devices, machine_info, saved_bytes, sync
from pigan import ops

BACKENDS = ["reference", "native"]


def sizes(device):
    return [8] + ([28] if device == "cuda" else [])


def cases():
    return [(d, b) for d in devices() for b in sizes(d)]


def inputs(B, device, R=64 * 64, S=24, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb_sigma = torch.cat([torch.rand(B, R, S, C, generator=g), torch.randn(B, R, S, 1, generator=g) * 3], -1)
    z = torch.linspace(0.88, 1.12, S).expand(B, R, S).clone()
    z = z + (torch.rand(B, R, S, generator=g) - 0.5) * 0.24 / (S - 1)
    return rgb_sigma.to(device), torch.sort(z, -1).values[..., None].to(device)


def record(benchmark, device, B, backend, **extra):
    benchmark.extra_info.update(device=device, B=B, backend=backend, **machine_info(), **extra)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device,B", cases())
def test_composite_forward(benchmark, device, B, backend):
    benchmark.group = f"composite forward {device} B={B} R=4096 S=24 C=3"
    rgb_sigma, z = inputs(B, device)

    def run():
        with torch.no_grad(), ops.use_backend(backend):
            out = ops.composite(rgb_sigma, z, None, "relu", True)
        sync(device)
        return out

    record(benchmark, device, B, backend)
    benchmark(run)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device,B", cases())
def test_composite_forward_backward(benchmark, device, B, backend):
    benchmark.group = f"composite forward+backward {device} B={B} R=4096 S=24 C=3"
    rgb_sigma, z = inputs(B, device)
    x = rgb_sigma.clone().requires_grad_(True)
    g = [torch.randn(s, device=device) for s in ((B, 4096, 3), (B, 4096, 1), (B, 4096, 24, 1))]

    def forward():
        with ops.use_backend(backend):
            return ops.composite(x, z, None, "relu", True)

    saved, outs = saved_bytes(forward)
    in_bytes = rgb_sigma.nbytes + z.nbytes
    out_bytes = sum(o.nbytes for o in outs)
    del outs

    def run():
        rgb, depth, w = forward()
        torch.autograd.backward([rgb, depth, w], g)
        x.grad = None
        sync(device)

    record(benchmark, device, B, backend, saved_bytes=saved, input_bytes=in_bytes, output_bytes=out_bytes,
           saved_over_inputs=round(saved / in_bytes, 3))
    benchmark(run)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", devices())
def test_midpoint_forward_backward(benchmark, device, backend):
    B = 4 if device == "cuda" else 1
    benchmark.group = f"midpoint (EG3D) forward+backward {device} B={B} R=4096 S=48 C=32"
    rgb_sigma, z = inputs(B, device, S=48, C=32)
    x = rgb_sigma.clone().requires_grad_(True)

    def forward():
        with ops.use_backend(backend):
            return ops.composite_midpoint(x, z, "softplus")

    saved, outs = saved_bytes(forward)
    in_bytes = rgb_sigma.nbytes + z.nbytes
    g = [torch.randn_like(o) for o in outs]
    del outs

    def run():
        torch.autograd.backward(list(forward()), g)
        x.grad = None
        sync(device)

    record(benchmark, device, B, backend, saved_bytes=saved, input_bytes=in_bytes,
           saved_over_inputs=round(saved / in_bytes, 3))
    benchmark(run)
