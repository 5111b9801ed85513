"""Compositing (pi-GAN quadrature and EG3D midpoint): native vs reference, forward and backward."""
import pytest
import torch

import pigan._C as _C
from pigan import ops
from pigan.ops import _native_ops
from pigan.ops.compositing import _composite, _composite_midpoint


@pytest.fixture(autouse=True)
def poison_outputs():
    # Every native output starts as NaN: an element a kernel forgets to write shows up.
    _C._set_poison_outputs(True)
    yield
    _C._set_poison_outputs(False)


def make_inputs(B, R, S, C, dtype, seed=0, opaque=False):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(B, R, S, C, generator=g, dtype=torch.float64)
    sigma = torch.randn(B, R, S, 1, generator=g, dtype=torch.float64) * 3
    sigma = sigma + 0.2 * torch.sign(sigma)  # keep relu away from its kink (gradcheck)
    if opaque:  # alpha == 1 exactly in the middle of the ray
        sigma[:, :, S // 2] = 1e4
    z = torch.linspace(0.88, 1.12, S, dtype=torch.float64).expand(B, R, S).clone()
    if S > 1:
        z = z + (torch.rand(B, R, S, generator=g, dtype=torch.float64) - 0.5) * 0.24 / (S - 1)
    return torch.cat([rgb, sigma], -1).to(dtype), z[..., None].to(dtype)


def tols(dtype):
    return {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=2e-5, atol=2e-5)}[dtype]


def fwd_bwd(fn, rgb_sigma, z_vals, cot, *args):
    x = rgb_sigma.detach().clone().requires_grad_(True)
    outs = fn(x, z_vals, *args)
    loss = sum((o * c).sum() for o, c in zip(outs, cot))
    loss.backward()
    return [o.detach() for o in outs], x.grad


def cotangents(outs, seed):
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]


def assert_close(a, b, **tol):
    torch.testing.assert_close(a, b, equal_nan=True, **tol)


# (B, R, S, C, clamp_mode, last_back, white_back, fill_mode, opaque): B, R and S each take the
# values 1, 2, 3, 24, 97 and C the values 1, 3, 21, 32 across the cases, with every option covered.
CASES = [
    (1, 1, 1, 1, "relu", False, False, None, False),
    (2, 3, 24, 3, "relu", True, False, None, False),
    (3, 2, 97, 21, "softplus", False, True, None, False),
    (1, 97, 2, 32, "relu", False, False, "debug", False),
    (24, 2, 3, 3, "softplus", True, True, None, True),
    (97, 1, 24, 1, "relu", False, True, "weight", False),
    (2, 24, 1, 3, "softplus", True, False, "debug", False),
    (1, 3, 97, 32, "softplus", True, False, "weight", True),
    (3, 1, 24, 5, "relu", True, True, "debug", True),
    (2, 2, 7, 21, "relu", False, False, None, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}R{}S{}C{}-{}-lb{:d}-wb{:d}-{}-op{:d}".format(*c))
def test_composite_native_matches_reference(case, dtype):
    B, R, S, C, clamp, last_back, white_back, fill, opaque = case
    rgb_sigma, z = make_inputs(B, R, S, C, dtype, seed=B * 1000 + S, opaque=opaque)
    args = (None, clamp, last_back, white_back, fill)
    ref_out = _composite(rgb_sigma, z, *args)
    cot = cotangents(ref_out, seed=S)
    ref, ref_grad = fwd_bwd(_composite, rgb_sigma, z, cot, *args)
    with ops.use_backend("native"):
        nat, nat_grad = fwd_bwd(ops.composite, rgb_sigma, z, cot, *args)
    for a, b in zip(nat, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert_close(a, b, **tols(dtype))
    assert_close(nat_grad, ref_grad, **tols(dtype))


def test_composite_noise_and_its_gradient():
    rgb_sigma, z = make_inputs(2, 5, 12, 3, torch.float64, seed=3)
    noise = (torch.randn(z.shape, dtype=torch.float64) * 0.5).requires_grad_(True)
    grads = []
    for impl in (_composite, _native_ops._composite_native):
        x = rgb_sigma.clone().requires_grad_(True)
        n = noise.detach().clone().requires_grad_(True)
        rgb, depth, w = impl(x, z, n, "softplus", False, False, None)
        (rgb.sum() + 2 * depth.sum() + (w * torch.arange(12.0, dtype=torch.float64)[:, None]).sum()).backward()
        grads.append((rgb.detach(), x.grad, n.grad))
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert_close(grads[1][2], grads[1][1][..., -1:], rtol=0, atol=0)


def test_fancy_integration_reproducible_under_seed():
    rgb_sigma, z = make_inputs(2, 4, 12, 3, torch.float32, seed=5)
    torch.manual_seed(123)
    ref = ops._fancy_integration(rgb_sigma, z, noise_std=0.5, clamp_mode="relu", last_back=True)
    with ops.use_backend("native"):
        torch.manual_seed(123)
        nat = ops.fancy_integration(rgb_sigma, z, noise_std=0.5, clamp_mode="relu", last_back=True)
        torch.manual_seed(123)
        again = ops.fancy_integration(rgb_sigma, z, noise_std=0.5, clamp_mode="relu", last_back=True)
    for a, b, c in zip(nat, ref, again):
        assert_close(a, b, rtol=2e-5, atol=2e-5)
        assert torch.equal(a, c)


def test_composite_non_contiguous_inputs():
    base, zb = make_inputs(2, 6, 24, 4, torch.float32, seed=7)
    rgb_sigma = base.transpose(0, 1).contiguous().transpose(0, 1)[:, ::2, :, 1:]  # C = 3, strided
    z = zb.transpose(0, 1).contiguous().transpose(0, 1)[:, ::2]
    assert not rgb_sigma.is_contiguous() and not z.is_contiguous()
    cot = cotangents(_composite(rgb_sigma, z), seed=1)
    ref, ref_grad = fwd_bwd(_composite, rgb_sigma, z, cot, None, "relu", True)
    with ops.use_backend("native"):
        nat, nat_grad = fwd_bwd(ops.composite, rgb_sigma, z, cot, None, "relu", True)
    for a, b in zip(nat, ref):
        assert_close(a, b, rtol=2e-5, atol=2e-5)
    assert_close(nat_grad, ref_grad, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("shape", [(0, 4, 8, 4), (2, 0, 8, 4), (2, 3, 0, 4)])
@pytest.mark.parametrize("last_back", [False, True])
def test_composite_zero_size(shape, last_back):
    rgb_sigma = torch.rand(shape, requires_grad=True)
    z = torch.rand(shape[:3] + (1,))
    ref = _composite(rgb_sigma, z, None, "relu", last_back, True)
    with ops.use_backend("native"):
        nat = ops.composite(rgb_sigma, z, None, "relu", last_back, True)
        sum(o.sum() for o in nat).backward()
    for a, b in zip(nat, ref):
        assert a.shape == b.shape
        assert_close(a.detach(), b.detach(), rtol=0, atol=0)
    assert rgb_sigma.grad.shape == rgb_sigma.shape


def test_composite_nan_sigma_propagates_like_reference():
    rgb_sigma, z = make_inputs(2, 3, 10, 3, torch.float32, seed=11)
    rgb_sigma[0, 1, 4, -1] = float("nan")
    rgb_sigma[1, 2, 9, -1] = float("nan")
    for clamp in ("relu", "softplus"):
        ref = _composite(rgb_sigma, z, None, clamp, True)
        with ops.use_backend("native"):
            nat = ops.composite(rgb_sigma, z, None, clamp, True)
        for a, b in zip(nat, ref):
            assert torch.equal(a.isnan(), b.isnan())
            assert_close(a, b, rtol=2e-5, atol=2e-5)
        assert nat[0][0, 1].isnan().all()


@pytest.mark.parametrize("clamp", ["relu", "softplus"])
def test_composite_nan_sigma_gradient_pattern_like_reference(clamp):
    """Where relu's input is <= 0 torch's backward passes 0 even under a NaN upstream gradient; the
    native backward must give the same NaN pattern (and values elsewhere)."""
    rgb_sigma, z = make_inputs(2, 3, 10, 3, torch.float32, seed=11)
    rgb_sigma[0, 1, 4, -1] = float("nan")
    rgb_sigma[1, 2, 9, -1] = float("nan")
    # softplus' derivative underflows to exactly 0 here: torch multiplies (NaN * 0 = NaN), no select
    rgb_sigma[0, 1, 1, -1] = rgb_sigma[1, 2, 3, -1] = -200.0
    grads = []
    for backend in ("reference", "native"):
        x = rgb_sigma.clone().requires_grad_(True)
        with ops.use_backend(backend):
            outs = ops.composite(x, z, None, clamp, True)
        cots = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(outs)]
        torch.autograd.backward(list(outs), cots)
        grads.append(x.grad)
    assert torch.equal(grads[0].isnan(), grads[1].isnan())
    assert grads[0].isnan().any() and (~grads[0].isnan()).any()
    assert_close(grads[1], grads[0], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_composite_half_dtypes_on_cpu(dtype):
    rgb_sigma, z = make_inputs(2, 5, 24, 3, dtype, seed=13)
    ref = _composite(rgb_sigma.float(), z.float(), None, "softplus", True)
    x = rgb_sigma.clone().requires_grad_(True)
    with ops.use_backend("native"):
        nat = ops.composite(x, z, None, "softplus", True)
        nat[0].float().sum().backward()
    for a, b in zip(nat, ref):
        assert a.dtype == dtype
        assert_close(a.float(), b, rtol=2e-2, atol=2e-2)
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("options", [("relu", False, False, None), ("softplus", True, False, None),
                                     ("relu", True, True, "debug"), ("softplus", False, True, "weight")])
@pytest.mark.parametrize("C", [1, 3])
def test_composite_gradcheck(options, C):
    rgb_sigma, z = make_inputs(2, 3, 6, C, torch.float64, seed=17, opaque=True)
    x = rgb_sigma.requires_grad_(True)
    fn = lambda t: _native_ops._composite_native(t, z, None, *options)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_composite_torch_compile():
    rgb_sigma, z = make_inputs(2, 8, 12, 3, torch.float32, seed=19)

    def step(x):
        with ops.use_backend("native"):
            rgb, depth, w = ops.composite(x, z, None, "relu", True)
        return rgb.sum() + depth.sum() + w.square().sum()

    compiled = torch.compile(step, backend="aot_eager")
    x1 = rgb_sigma.clone().requires_grad_(True)
    x2 = rgb_sigma.clone().requires_grad_(True)
    step(x1).backward()
    compiled(x2).backward()
    assert_close(x2.grad, x1.grad, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- EG3D midpoint quadrature

MIDPOINT_CASES = [
    (1, 1, 1, 1, "softplus", False),
    (2, 3, 2, 3, None, False),
    (3, 2, 24, 32, "softplus", True),
    (1, 97, 3, 21, "softplus", False),
    (24, 1, 97, 3, None, True),
    (2, 2, 48, 7, "softplus", True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", MIDPOINT_CASES, ids=lambda c: "B{}R{}S{}C{}-{}-wb{:d}".format(*c))
def test_midpoint_native_matches_reference(case, dtype):
    B, R, S, C, clamp, white_back = case
    rgb_sigma, z = make_inputs(B, R, S, C, dtype, seed=S + 3)
    if clamp is None:
        rgb_sigma[..., -1] = rgb_sigma[..., -1].abs()  # raw densities: keep them non-negative
    ref_out = _composite_midpoint(rgb_sigma, z, clamp, white_back)
    cot = cotangents(ref_out, seed=S)
    ref, ref_grad = fwd_bwd(_composite_midpoint, rgb_sigma, z, cot, clamp, white_back)
    with ops.use_backend("native"):
        nat, nat_grad = fwd_bwd(ops.composite_midpoint, rgb_sigma, z, cot, clamp, white_back)
    for a, b in zip(nat, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert_close(a, b, **tols(dtype))
    assert_close(nat_grad, ref_grad, **tols(dtype))


def test_midpoint_depth_clamped_and_empty_weights():
    # Negative raw densities push sum(w z)/sum(w) outside [min z, max z]; S == 1 has no interval.
    rgb_sigma, z = make_inputs(3, 4, 8, 3, torch.float64, seed=23)
    rgb_sigma[..., -1] = -torch.rand(3, 4, 8, dtype=torch.float64) * 2
    for rs, zz in ((rgb_sigma, z), (rgb_sigma[:, :, :1], z[:, :, :1])):
        ref = _composite_midpoint(rs, zz, None)
        with ops.use_backend("native"):
            nat = ops.composite_midpoint(rs, zz, None)
        for a, b in zip(nat, ref):
            assert_close(a, b, rtol=1e-9, atol=1e-10)
        assert ((nat[1] >= zz.amin(2) - 1e-12) & (nat[1] <= zz.amax(2) + 1e-12)).all()


@pytest.mark.parametrize("clamp,white_back", [("softplus", False), (None, True)])
def test_midpoint_gradcheck(clamp, white_back):
    rgb_sigma, z = make_inputs(2, 3, 6, 3, torch.float64, seed=29)
    rgb_sigma[..., -1] = rgb_sigma[..., -1].abs()
    x = rgb_sigma.requires_grad_(True)
    fn = lambda t: _native_ops._composite_midpoint_native(t, z, clamp, white_back)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- bad input

def _rs(*shape, dtype=torch.float32):
    return torch.rand(*shape, dtype=dtype)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.composite(_rs(2, 3, 4), _rs(2, 3, 4, 1)), ValueError, "rgb_sigma"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), _rs(2, 3, 4)), ValueError, "z_vals"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), _rs(2, 3, 5, 1)), ValueError, "z_vals"),
    (lambda: ops.composite(_rs(2, 3, 4, 1), _rs(2, 3, 4, 1)), ValueError, "rgb_sigma"),
    (lambda: ops.composite(torch.ones(2, 3, 4, 4, dtype=torch.int32), _rs(2, 3, 4, 1)), TypeError, "rgb_sigma"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), torch.ones(2, 3, 4, 1, dtype=torch.int64)), TypeError, "z_vals"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1).to("meta")), ValueError, "device"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1), _rs(2, 3, 4, 2)), ValueError, "noise"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1), clamp_mode="tanh"), ValueError, "clamp_mode"),
    (lambda: ops.composite(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1), fill_mode="red"), ValueError, "fill_mode"),
    (lambda: ops.fancy_integration(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1)), ValueError, "clamp_mode"),
    (lambda: ops.composite_midpoint(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1), clamp_mode="relu"), ValueError, "clamp_mode"),
    (lambda: ops.composite_midpoint(_rs(2, 3, 0, 4), _rs(2, 3, 0, 1)), ValueError, "S >= 1"),
    (lambda: ops.composite_midpoint("x", _rs(2, 3, 4, 1)), TypeError, "rgb_sigma"),
])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_composite_bad_input(call, exc, match, backend):
    with ops.use_backend(backend), pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("call,exc,match", [
    (lambda o: o.composite_fwd(torch.ones(2, 3, 4, 4, dtype=torch.int32), _rs(2, 3, 4, 1), None, 0, False,
                               False, 0), TypeError, "rgb_sigma"),
    (lambda o: o.composite_fwd(_rs(2, 3, 4, 4), _rs(2, 3, 5, 1), None, 0, False, False, 0), ValueError, "z_vals"),
    (lambda o: o.composite_fwd(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1), None, 7, False, False, 0), ValueError, "clamp_mode"),
    (lambda o: o.composite_fwd(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1, dtype=torch.float64), None, 0, False, False, 0),
     TypeError, "z_vals"),
    (lambda o: o.composite_bwd(_rs(2, 3, 2), _rs(2, 3, 1), _rs(2, 3, 4, 1), _rs(2, 3, 4, 4), _rs(2, 3, 4, 1),
                               None, 0, False, False, 0), ValueError, "grad_rgb"),
    (lambda o: o.midpoint_fwd(_rs(2, 3, 4, 4), _rs(2, 3, 4, 1), 0, False), ValueError, "clamp_mode"),
])
def test_raw_native_ops_reject_bad_input(call, exc, match):
    # Direct torch.ops calls bypass the Python checks: the C++ checks must still raise, not crash.
    with pytest.raises(exc, match=match):
        call(_native_ops._ops())


@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: "B{}R{}S{}C{}".format(*c[:4]))
def test_composite_backward_cuda_variant_on_cpu(case):
    # The CUDA kernel recomputes the exponentials in its reverse pass instead of caching them; the
    # CPU can run that variant too: it must give bit-identical gradients.
    B, R, S, C, clamp, last_back, white_back, fill, opaque = case
    rgb_sigma, z = make_inputs(B, R, S, C, torch.float32, seed=S, opaque=opaque)
    noise = torch.randn(z.shape) * 0.5
    cot = cotangents(_composite(rgb_sigma, z), seed=S)
    grads = []
    for recompute in (False, True):
        _C._set_composite_recompute(recompute)
        try:
            grads.append(torch.ops.pigan.composite_bwd(*cot, rgb_sigma, z, noise,
                                                       _native_ops._CLAMP[clamp], last_back, white_back,
                                                       _native_ops._FILL[fill]))
        finally:
            _C._set_composite_recompute(False)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_fancy_integration_draws_noise_like_pigan(backend):
    # pi-GAN draws randn(sigma.shape) * noise_std in the default dtype on every call, even when
    # noise_std == 0; the random stream after the call must be the same as pi-GAN's.
    rs = torch.randn(2, 5, 6, 4, dtype=torch.float64)
    z = torch.linspace(0.9, 1.1, 6, dtype=torch.float64).expand(2, 5, 6).unsqueeze(-1).contiguous()
    for std in (0.0, 0.5):
        torch.manual_seed(3)
        with ops.use_backend(backend):
            rgb, depth, w = ops.fancy_integration(rs, z, noise_std=std, clamp_mode="relu")
        after = torch.rand(4)
        torch.manual_seed(3)
        noise = (torch.randn(z.shape) * std).to(torch.float64)
        expected = ops._composite(rs, z, noise if std else None, clamp_mode="relu")
        assert torch.equal(torch.rand(4), after)
        torch.testing.assert_close(rgb, expected[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(w, expected[2], rtol=1e-12, atol=1e-12)
