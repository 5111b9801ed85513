"""Generator forward+backward at pi-GAN's CelebA training size, reference vs native, side by side.

ImplicitGenerator3d(SPATIALSIRENBASELINE, z_dim=256, hidden 256), B=4 images of 64x64 rays,
12 coarse + 12 fine samples, hierarchical sampling, density noise 1.0 (pi-GAN's first steps):
one `g(z, **CelebA)` forward and a backward of a fixed random cotangent on the pixels, the hot loop of
a generator step. Backends: "reference" (pi-GAN's formulas, eager PyTorch) and "native" (pigan.ops'
fast paths: native C++/CUDA compositing, sampling and merging; the fastest FiLM-SIREN path on the
device); on CUDA also "auto". extra_info: device, backend, peak CUDA memory (GPU), and on the CPU the
bytes autograd saves for backward in one pass.

    pytest benchmarks/bench_generator.py --benchmark-only --benchmark-group-by=group
PIGAN_BENCH_B overrides the batch (default 4).
"""
import math
import os

import pytest
import torch

from conftest import devices, machine_info, saved_bytes, sync
from pigan import ops
from pigan.generators import ImplicitGenerator3d

B = int(os.environ.get("PIGAN_BENCH_B", "4"))
META = dict(img_size=64, fov=12, ray_start=0.88, ray_end=1.12, num_steps=12, h_stddev=0.3,
            v_stddev=0.155, h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True,
            sample_dist="gaussian", clamp_mode="relu", nerf_noise=1.0)


def backends(device):
    avail = ops.available_backends()
    out = ["reference"]
    if avail["native"][device]:
        out.append("native")
    if device == "cuda":
        out.append("auto")
    return out


def cases():
    return [(d, b) for d in devices() for b in backends(d)]


def make(device):
    torch.manual_seed(0)
    g = ImplicitGenerator3d("SPATIALSIRENBASELINE", 256).to(device)
    z = torch.randn(B, 256, device=device)
    cot = torch.randn(B, 3, 64, 64, device=device)
    return g, z, cot


@pytest.mark.parametrize("device,backend", cases())
def test_generator_forward_backward(benchmark, device, backend):
    benchmark.group = f"generator fwd+bwd {device} B={B} 64x64 S=12+12 hidden=256"
    g, z, cot = make(device)

    saved = []

    def step():
        g.zero_grad(set_to_none=True)
        with ops.use_backend(backend):
            nbytes, (pixels, _) = saved_bytes(lambda: g(z, **META))
            (pixels * cot).sum().backward()
        saved.append(nbytes)
        sync(device)

    info = dict(device=device, B=B, backend=backend, **machine_info())
    if device == "cuda":
        step()                                                        # warm-up, kernels compiled
        torch.cuda.reset_peak_memory_stats()
        step()
        info["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    benchmark.extra_info.update(info)
    # CPU: one step of the reference takes about a minute at B=4 on 2 cores, so 2 rounds, no warm-up.
    benchmark.pedantic(step, rounds=2 if device == "cpu" else 10, iterations=1,
                       warmup_rounds=0 if device == "cpu" else 1)
    benchmark.extra_info["saved_bytes"] = saved[-1]                   # autograd's saved tensors, 1 pass
