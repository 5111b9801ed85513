"""Importance sampling and merge benchmarks, native vs the eager reference, side by side per group.

pi-GAN's CelebA hierarchical step: 64x64 rays per image, B=8 images on the CPU and B=28 on CUDA,
12 coarse samples: sample_pdf(mids [N, 11], weights[:, 1:-1] [N, 10], 12); then merging the 12 fine
with the 12 coarse depths and gathering the network outputs [B, R, 24, 4]: the reference
concatenates, sorts and gathers, the native path merges in one pass and gathers by the returned
indices.
"""
import pytest
import torch

from conftest import all_devices, run_case, size
from pigan import ops

BACKENDS = ["native", "reference"]
S = 12


def inputs(B, R, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.linspace(0.88, 1.12, S).expand(B, R, S).clone()
    z = z + (torch.rand(B, R, S, generator=g) - 0.5) * 0.24 / (S - 1)
    z = torch.sort(z, -1).values[..., None]                                  # [B, R, S, 1]
    weights = torch.rand(B * R, S, generator=g) ** 2 + 1e-5                  # [B*R, S]
    mids = 0.5 * (z[:, :, 1:] + z[:, :, :-1]).reshape(B * R, S - 1)          # [B*R, S-1]
    coarse_out = torch.randn(B, R, S, 4, generator=g)
    fine_out = torch.randn(B, R, S, 4, generator=g)
    return [t.to(device) for t in (z, weights, mids, coarse_out, fine_out)]


def dims(device):
    return size(device, cpu=8, cuda=28, tiny=1), size(device, cpu=4096, cuda=4096, tiny=256)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", all_devices())
def test_sample_pdf(benchmark, device, backend):
    B, R = dims(device)
    benchmark.group = f"sample_pdf {device} N={B}x{R} M=10 K=12"
    z, weights, mids, _, _ = inputs(B, R, device)

    def run():
        with ops.use_backend(backend):
            return ops.sample_pdf(mids, weights[:, 1:-1], S, det=False)

    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=20, backend=backend, B=B)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", all_devices())
def test_sample_pdf_merge_gather(benchmark, device, backend):
    B, R = dims(device)
    benchmark.group = f"sample_pdf + merge + gather {device} B={B} R={R} S=12+12"
    z, weights, mids, coarse_out, fine_out = inputs(B, R, device)
    outputs = torch.cat([fine_out, coarse_out], -2)                          # [B, R, 2S, 4]

    def run():
        with ops.use_backend(backend):
            fine = ops.sample_pdf(mids, weights[:, 1:-1], S, det=False).reshape(B, R, S, 1)
            if backend == "reference":  # pi-GAN: cat + sort + gather
                all_z = torch.cat([fine, z], -2)
                all_z, idx = torch.sort(all_z, -2)
            else:
                all_z, idx = ops.merge_samples(z, fine)
                idx = idx[..., None]
            gathered = torch.gather(outputs, -2, idx.expand(-1, -1, -1, 4))
        return all_z, gathered

    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=20, backend=backend, B=B)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", all_devices())
def test_merge_only(benchmark, device, backend):
    B, R = dims(device)
    benchmark.group = f"merge {device} B={B} R={R} S=12+12"
    z, weights, mids, _, _ = inputs(B, R, device)
    fine = ops._sample_pdf(mids, weights[:, 1:-1], S).reshape(B, R, S, 1)

    def run():
        with ops.use_backend(backend):
            return ops.merge_samples(z, fine)

    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=20, backend=backend, B=B)
