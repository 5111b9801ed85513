"""Importance sampling and merge benchmarks, native vs the eager reference, side by side per group.

pi-GAN's CelebA hierarchical step: 64x64 rays per image, B=8 images on the CPU and B=28 on CUDA,
12 coarse samples: sample_pdf(mids [N, 11], weights [N, 10], 12); then merging the 12 fine with
the 12 coarse depths and their network outputs [B, R, 24, 4]: the reference concatenates, sorts and
gathers (pi-GAN), the native path is merge_samples_values (one merge pass, then one gather).
Inputs come from the tests' makers (tests/inputs.py).
"""
import pytest
import torch

from conftest import all_devices, run_case, size
from inputs import bins_weights, coarse_and_fine
from pigan import ops

BACKENDS = ["native", "reference"]
S = 12
# Every case runs on each device under each backend.
pytestmark = [pytest.mark.parametrize("backend", BACKENDS), pytest.mark.parametrize("device", all_devices())]


def inputs(B, R, device, seed=0):
    """Coarse depths z [B, R, S, 1], fine depths [B, R, S, 1] (unsorted), sample_pdf's bins
    [B*R, S-1] (the coarse midpoints) and weights [B*R, S-2], network outputs [B, R, S, 4] at both."""
    z, fine = coarse_and_fine(B, R, S, S, device=device, seed=seed)
    mids = (0.5 * (z[:, :, 1:] + z[:, :, :-1])).reshape(B * R, S - 1)
    _, weights = bins_weights(B * R, S, device=device, seed=seed)
    weights = weights[:, 1:-1]                      # a strided view, as pi-GAN passes it
    g = torch.Generator().manual_seed(seed)
    coarse_out, fine_out = (torch.randn(B, R, S, 4, generator=g).to(device) for _ in range(2))
    return z, fine, mids, weights, coarse_out, fine_out


def dims(device):
    return size(device, cpu=8, cuda=28, tiny=1), size(device, cpu=4096, cuda=4096, tiny=256)


def time_under_backend(benchmark, fn, device, backend, B):
    """Time fn() with ops dispatching to `backend`; the reference backend is the peer, not ours."""
    def run():
        with ops.use_backend(backend):
            return fn()

    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=20, backend=backend, B=B)


def test_sample_pdf(benchmark, device, backend):
    B, R = dims(device)
    benchmark.group = f"sample_pdf {device} N={B}x{R} M=10 K=12"
    _, _, mids, weights, _, _ = inputs(B, R, device)
    time_under_backend(benchmark, lambda: ops.sample_pdf(mids, weights, S, det=False), device, backend, B)


def test_sample_pdf_merge_gather(benchmark, device, backend):
    B, R = dims(device)
    benchmark.group = f"sample_pdf + merge + gather {device} B={B} R={R} S=12+12"
    z, _, mids, weights, coarse_out, fine_out = inputs(B, R, device)

    def step():
        fine = ops.sample_pdf(mids, weights, S, det=False).reshape(B, R, S, 1)
        if backend == "reference":  # pi-GAN: cat + sort + gather
            all_z, idx = torch.sort(torch.cat([fine, z], -2), -2)
            values = torch.gather(torch.cat([fine_out, coarse_out], -2), -2, idx.expand(-1, -1, -1, 4))
            return all_z, values
        return ops.merge_samples_values(z, fine, coarse_out, fine_out)

    time_under_backend(benchmark, step, device, backend, B)


def test_merge_only(benchmark, device, backend):
    B, R = dims(device)
    benchmark.group = f"merge {device} B={B} R={R} S=12+12"
    z, fine, _, _, _, _ = inputs(B, R, device)
    time_under_backend(benchmark, lambda: ops.merge_samples(z, fine), device, backend, B)
