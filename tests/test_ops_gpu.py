"""GPU parity: every native CUDA op against the reference on CUDA tensors, for every dtype and
channel count; plus a generator forward+backward on CUDA against the reference backend."""
import math

import pytest
import torch

from pigan import ops
from pigan.ops.compositing import _composite, _composite_midpoint
from pigan.ops.sampling import _merge_samples, _sample_pdf

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# float32 accumulation everywhere; half inputs are compared with the float64 reference computed on the
# same (already rounded) inputs, so the tolerance only covers output rounding and exp/ulp differences.
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-4),
       torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=4e-2, atol=4e-2)}


@pytest.fixture(autouse=True)
def poison_outputs():
    import pigan._C as _C
    _C._set_poison_outputs(True)
    yield
    _C._set_poison_outputs(False)


def make_inputs(B, R, S, C, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(B, R, S, C, generator=g, dtype=torch.float64)
    sigma = torch.randn(B, R, S, 1, generator=g, dtype=torch.float64) * 3
    sigma[:, :, S // 2] += 50 * (torch.rand(B, R, 1, generator=g, dtype=torch.float64) > 0.7)  # opaque
    z = torch.linspace(0.88, 1.12, S, dtype=torch.float64).expand(B, R, S).clone()
    if S > 1:
        z = z + (torch.rand(B, R, S, generator=g, dtype=torch.float64) - 0.5) * 0.24 / (S - 1)
    return (torch.cat([rgb, sigma], -1).to(dtype).cuda(), z[..., None].to(dtype).cuda())


def run(fn, rgb_sigma, z, cot, *args):
    x = rgb_sigma.detach().clone().requires_grad_(True)
    outs = fn(x, z, *args)
    sum((o.double() * c).sum() for o, c in zip(outs, cot)).backward()
    return [o.detach().double() for o in outs], x.grad.double()


def compare(native_fn, ref_fn, rgb_sigma, z, dtype, *args):
    # reference in float64 on the same rounded inputs, on the GPU
    ref_out = ref_fn(rgb_sigma.double(), z.double(), *args)
    g = torch.Generator(device="cuda").manual_seed(1)
    cot = [torch.randn(o.shape, generator=g, device="cuda", dtype=torch.float64) for o in ref_out]
    ref, ref_grad = run(ref_fn, rgb_sigma.double(), z.double(), cot, *args)
    with ops.use_backend("native"):
        nat, nat_grad = run(native_fn, rgb_sigma, z, cot, *args)
    for a, b in zip(nat, ref):
        torch.testing.assert_close(a, b, **TOL[dtype])
    scale = ref_grad.abs().max().clamp_min(1)
    torch.testing.assert_close(nat_grad / scale, ref_grad / scale, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 3, 21, 32, 5])
@pytest.mark.parametrize("options", [("relu", True, False, None), ("softplus", False, True, None),
                                     ("relu", False, False, "debug"), ("softplus", True, True, "weight")])
def test_composite_cuda(C, dtype, options):
    rgb_sigma, z = make_inputs(3, 97, 24, C, dtype, seed=C)
    noise = torch.randn(z.shape, device="cuda", dtype=dtype) * 0.5
    compare(ops.composite, _composite, rgb_sigma, z, dtype, noise, *options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 3, 21, 32, 5])
@pytest.mark.parametrize("clamp,white_back", [("softplus", False), (None, True)])
def test_midpoint_cuda(C, dtype, clamp, white_back):
    rgb_sigma, z = make_inputs(2, 97, 48, C, dtype, seed=C + 1)
    if clamp is None:
        rgb_sigma[..., -1] = rgb_sigma[..., -1].abs()
    compare(ops.composite_midpoint, _composite_midpoint, rgb_sigma, z, dtype, clamp, white_back)


@pytest.mark.parametrize("shape", [(0, 4, 8, 4), (2, 3, 0, 4), (1, 1, 1, 2)])
def test_composite_cuda_small_and_empty(shape):
    rgb_sigma = torch.rand(shape, device="cuda", requires_grad=True)
    z = torch.rand(shape[:3] + (1,), device="cuda")
    ref = _composite(rgb_sigma, z, None, "relu", True)
    with ops.use_backend("native"):
        nat = ops.composite(rgb_sigma, z, None, "relu", True)
        sum(o.sum() for o in nat).backward()
    for a, b in zip(nat, ref):
        torch.testing.assert_close(a, b)


def bins_weights(N, M, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    bins = torch.sort(torch.rand(N, M + 1, generator=g, dtype=torch.float64), -1).values * 0.24 + 0.88
    weights = torch.rand(N, M, generator=g, dtype=torch.float64) ** 3
    weights[0] = 0
    return bins.to(dtype).cuda(), weights.to(dtype).cuda()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("det", [True, False])
@pytest.mark.parametrize("N,M,K", [(4096, 10, 12), (97, 46, 48), (3, 1, 5)])
def test_sample_pdf_cuda(N, M, K, det, dtype):
    bins, weights = bins_weights(N, M, dtype, seed=M)
    torch.manual_seed(7)  # Philox offsets on the CUDA generator: the same u for both
    ref = _sample_pdf(bins.double(), weights.double(), K, det=det,
                      u=ops.draw_uniforms(bins, K, det).double())
    torch.manual_seed(7)
    with ops.use_backend("native"):
        nat = ops.sample_pdf(bins, weights, K, det=det)
        torch.manual_seed(7)
        again = ops.sample_pdf(bins, weights, K, det=det)
    assert nat.dtype == dtype and nat.is_cuda
    assert torch.equal(nat, again)
    # Inside a bin of small mass the inverse cdf is steep, so a last-bit difference of the cdf (float32
    # accumulation vs the float64 reference) moves the depth a lot but the cdf value very little:
    # accept a sample when it is close in depth or when its cdf value is.
    tol = {torch.float64: 1e-9, torch.float32: 1e-5}.get(dtype, 1e-2)
    close = ((nat.double() - ref).abs() <= tol) | ((cdf_at(nat, bins, weights) - cdf_at(ref, bins, weights)).abs()
                                                   <= tol)
    assert close.all(), (nat.double() - ref).abs().max()


def cdf_at(t, bins, weights, eps=1e-5):
    """The piecewise-linear cdf of sample_pdf's pdf, in float64, at depths t [N, K]."""
    w = weights.double() + eps
    cdf = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w / w.sum(-1, keepdim=True), -1)], -1)
    b = bins.double().contiguous()
    t = t.double().contiguous()
    i = torch.searchsorted(b, t, right=True).clamp(1, b.shape[1] - 1)
    b0, b1, c0, c1 = b.gather(1, i - 1), b.gather(1, i), cdf.gather(1, i - 1), cdf.gather(1, i)
    return c0 + (t - b0).clamp(min=0) / (b1 - b0).clamp_min(1e-30) * (c1 - c0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("S1,S2", [(12, 12), (24, 24), (48, 48), (3, 97), (1, 1)])
def test_merge_cuda(S1, S2, dtype):
    g = torch.Generator(device="cuda").manual_seed(S1)
    zc = torch.sort(torch.rand(2, 300, S1, 1, generator=g, device="cuda"), -2).values.to(dtype)
    zf = torch.rand(2, 300, S2, 1, generator=g, device="cuda").to(dtype)  # unsorted, with ties in half
    zf[0, 0, 0] = zc[0, 0, 0]
    z_ref, i_ref = _merge_samples(zc, zf)
    with ops.use_backend("native"):
        z_nat, i_nat = ops.merge_samples(zc, zf)
    assert torch.equal(i_nat, i_ref)
    assert torch.equal(z_nat, z_ref)


def test_generator_forward_backward_cuda_matches_reference():
    from pigan.generators import ImplicitGenerator3d
    from pigan.siren import SPATIALSIRENBASELINE

    torch.manual_seed(0)
    gen = ImplicitGenerator3d(SPATIALSIRENBASELINE, 16, hidden_dim=32).cuda()
    z = torch.randn(2, 16, device="cuda")
    meta = dict(img_size=16, fov=12, ray_start=0.88, ray_end=1.12, num_steps=12, h_stddev=0.3,
                v_stddev=0.155, h_mean=math.pi / 2, v_mean=math.pi / 2, hierarchical_sample=True,
                sample_dist="gaussian", clamp_mode="relu", nerf_noise=0.5)

    def step(backend):
        gen.zero_grad()
        torch.manual_seed(1)
        with ops.use_backend(backend):
            img, pose = gen(z, **meta)
            img.square().mean().backward()
        return img.detach(), [p.grad.detach().clone() for p in gen.parameters() if p.grad is not None]

    ref_img, ref_grads = step("reference")
    nat_img, nat_grads = step("native")
    # film_siren runs on Triton under both "native" and auto (TF32 matmuls): ~1e-3 relative per layer.
    torch.testing.assert_close(nat_img, ref_img, rtol=1e-2, atol=1e-2)
    assert len(nat_grads) == len(ref_grads)
    for a, b in zip(nat_grads, ref_grads):
        scale = b.abs().max().clamp_min(1e-6)
        torch.testing.assert_close(a / scale, b / scale, rtol=2e-2, atol=2e-2)
