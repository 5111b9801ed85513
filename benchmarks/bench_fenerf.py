"""FENeRF benchmarks: compositing its many channels, and its generator against pi-GAN's of the same width.

``test_semantic_composite_forward_backward``: composite forward + backward of random cotangents at
FENeRF's CelebA marcher sizes: B=4 images of 64x64 rays, S=24 samples (12 coarse + 12 fine merged),
C = 3 + 18 (FENeRF's 21 channels: rgb and CelebAMask-HQ's 18 classes) and C = 3 + 19; "native"
(pigan.ops' fast path) vs "reference" (the eager twin), side by side per group. extra_info: the bytes
autograd saves for backward.

``test_semantic_generator_forward_backward``: one training pass (jitter, random pose, 12 + 12 samples,
density noise 1.0) and a backward of a fixed random cotangent on every output channel, for
SemanticGenerator3d (K = 18, feature grid 32 x 32^3) and ImplicitGenerator3d (SPATIALSIRENBASELINE) of the
same hidden width, each on the native and the reference backend: a small size (B=2, 32x32, width 64) on
the CPU, B=4 64x64 width 256 on CUDA.

    pytest benchmarks/bench_fenerf.py --benchmark-only
"""
import math

import pytest
import torch

from conftest import all_devices, devices, run_case, saved_bytes, size
from inputs import composite_inputs
from pigan import ops
from pigan.model.fenerf import SemanticGenerator3d
from pigan.model.generators import ImplicitGenerator3d

BACKENDS = ["native", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("classes", [18, 19])
@pytest.mark.parametrize("device", all_devices())
def test_semantic_composite_forward_backward(benchmark, device, classes, backend):
    B, R = size(device, cpu=4, cuda=4, tiny=1), size(device, cpu=4096, cuda=4096, tiny=256)
    C = 3 + classes
    rgb_sigma, z = composite_inputs(B, R, 24, C, device=device)
    x = rgb_sigma.clone().requires_grad_(True)

    def forward():
        with ops.use_backend(backend):
            return ops.composite(x, z, None, "relu", False)

    saved, outs = saved_bytes(forward)
    g = [torch.randn_like(o) for o in outs]
    del outs

    def run():
        torch.autograd.backward(list(forward()), g)
        x.grad = None

    benchmark.group = f"semantic composite forward+backward {device} B={B} R={R} S=24 C={C}"
    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=10, backend=backend,
             B=B, C=C, saved_bytes=saved, input_bytes=rgb_sigma.nbytes + z.nbytes)


def _meta(img_size):
    return dict(img_size=img_size, fov=12, ray_start=0.88, ray_end=1.12, num_steps=12, h_stddev=0.3,
                v_stddev=0.155, h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True,
                sample_dist="gaussian", clamp_mode="relu", nerf_noise=1.0)


def _generator(model, width, device):
    torch.manual_seed(0)
    if model == "fenerf":
        g = SemanticGenerator3d(z_geo_dim=256, z_app_dim=256, num_classes=18, hidden_dim=width,
                                feature_grid_size=32)
    else:
        g = ImplicitGenerator3d("SPATIALSIRENBASELINE", 256, hidden_dim=width)
    return g.to(device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["fenerf", "pigan"])
@pytest.mark.parametrize("device", devices())
def test_semantic_generator_forward_backward(benchmark, device, model, backend):
    B, img = size(device, cpu=2, cuda=4, tiny=1), size(device, cpu=32, cuda=64, tiny=8)
    width = size(device, cpu=64, cuda=256, tiny=16)
    g = _generator(model, width, device)
    meta = _meta(img)
    z = torch.randn(B, g.z_dim, device=device)
    channels = 3 + (18 if model == "fenerf" else 0)
    cot = torch.randn(B, channels, img, img, device=device)

    def step():
        g.zero_grad(set_to_none=True)
        with ops.use_backend(backend):
            images, _ = g(z, **meta)
            (images * cot).sum().backward()

    benchmark.group = f"semantic generator fwd+bwd {device} B={B} {img}x{img} S=12+12 hidden={width}"
    run_case(benchmark, step, device, kind=f"{model} {backend}", ours=backend != "reference", rounds=3,
             backend=backend, model=model, B=B, channels=channels)
