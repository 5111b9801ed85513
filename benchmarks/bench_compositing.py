"""Compositing benchmarks, native vs the eager reference, side by side per group.

pi-GAN's CelebA sizes: 64x64 rays, S=24 samples (12 coarse + 12 fine), C=3; B=8 images on the CPU,
B=28 (one sub-batch of CelebA's 56 at batch_split 2) on CUDA. EG3D's midpoint quadrature with C=32
features as well. extra_info: the bytes autograd saves for backward, and ``min_bytes``: the bytes
any implementation must move (forward: read rgb_sigma and z, write rgb, depth and weights; backward:
read them and the three cotangents again, write the gradient of rgb_sigma). Together with the
"device copy" case (a clone's read + write bandwidth, same run) the summary turns min_bytes into the
bandwidth floor: min_bytes / copy bandwidth.
"""
import pytest
import torch

from conftest import all_devices, run_case, saved_bytes, size
from inputs import composite_inputs
from pigan import ops

BACKENDS = ["native", "reference"]


def inputs(B, device, R=64 * 64, S=24, C=3, seed=0):
    """rgb_sigma [B, R, S, C+1], z_vals [B, R, S, 1]: the tests' maker (tests/inputs.py)."""
    return composite_inputs(B, R, S, C, device=device, seed=seed)


def dims(device):
    return dict(B=size(device, cpu=8, cuda=28, tiny=1), R=size(device, cpu=4096, cuda=4096, tiny=256))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", all_devices())
def test_composite_forward(benchmark, device, backend):
    d = dims(device)
    benchmark.group = f"composite forward {device} B={d['B']} R={d['R']} S=24 C=3"
    rgb_sigma, z = inputs(d["B"], device, R=d["R"])

    def run():
        with torch.no_grad(), ops.use_backend(backend):
            return ops.composite(rgb_sigma, z, None, "relu", True)

    out_bytes = sum(o.nbytes for o in run())
    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=20, backend=backend,
             B=d["B"], min_bytes=rgb_sigma.nbytes + z.nbytes + out_bytes)


def _fwd_bwd_case(benchmark, device, backend, group, rgb_sigma, z, forward_op):
    x = rgb_sigma.clone().requires_grad_(True)

    def forward():
        with ops.use_backend(backend):
            return forward_op(x, z)

    saved, outs = saved_bytes(forward)
    in_bytes = rgb_sigma.nbytes + z.nbytes
    out_bytes = sum(o.nbytes for o in outs)
    g = [torch.randn_like(o) for o in outs]
    del outs

    def run():
        torch.autograd.backward(list(forward()), g)
        x.grad = None

    benchmark.group = group
    run_case(benchmark, run, device, kind=backend, ours=backend != "reference", rounds=20, backend=backend,
             B=rgb_sigma.shape[0], saved_bytes=saved, input_bytes=in_bytes, output_bytes=out_bytes,
             saved_over_inputs=round(saved / in_bytes, 3),
             min_bytes=2 * in_bytes + 2 * out_bytes + rgb_sigma.nbytes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", all_devices())
def test_composite_forward_backward(benchmark, device, backend):
    d = dims(device)
    rgb_sigma, z = inputs(d["B"], device, R=d["R"])
    _fwd_bwd_case(benchmark, device, backend, f"composite forward+backward {device} B={d['B']} R={d['R']} S=24 C=3",
                  rgb_sigma, z, lambda x, z: ops.composite(x, z, None, "relu", True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("device", all_devices())
def test_midpoint_forward_backward(benchmark, device, backend):
    B, R = size(device, cpu=1, cuda=28, tiny=1), size(device, cpu=4096, cuda=4096, tiny=256)
    S = size(device, cpu=48, cuda=24, tiny=24)
    rgb_sigma, z = inputs(B, device, R=R, S=S, C=32)
    _fwd_bwd_case(benchmark, device, backend, f"midpoint (EG3D) forward+backward {device} B={B} R={R} S={S} C=32",
                  rgb_sigma, z, lambda x, z: ops.composite_midpoint(x, z, "softplus"))


@pytest.mark.parametrize("device", all_devices())
def test_device_copy(benchmark, device):
    """Copy bandwidth of the device (read + write of a 256 MiB tensor on CUDA), the unit of the
    compositing bandwidth floor."""
    n = size(device, cpu=2 ** 24, cuda=2 ** 26, tiny=2 ** 20)
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    benchmark.group = f"device copy {device}"
    run_case(benchmark, lambda: dst.copy_(src), device, kind="copy", ours=False, rounds=20,
             bytes_moved=2 * src.nbytes)
