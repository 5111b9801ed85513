"""Compositing (pi-GAN quadrature and EG3D midpoint): native vs reference, forward and backward."""
import subprocess
import sys

import pytest
import torch

import pigan._C as _C
from inputs import assert_close, composite_inputs, cotangents, fwd_bwd, raises_on, tol
from pigan import ops
from pigan.ops import compositing
from pigan.ops.compositing import _composite, _composite_midpoint

pytestmark = pytest.mark.usefixtures("poison_outputs")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def compare(native_fn, ref_fn, rgb_sigma, z, device, seed, *args):
    """Native on ``rgb_sigma``'s dtype vs the float64 twin on the same rounded inputs, forward and
    backward (random cotangents); the native outputs must have the twin's dtypes."""
    ref_out = ref_fn(rgb_sigma.double(), z.double(), *args)
    cot = cotangents(ref_out, seed)
    ref, ref_grad = fwd_bwd(ref_fn, rgb_sigma.double(), z.double(), cot, *args)
    with ops.use_backend("native"):
        nat, nat_grad = fwd_bwd(native_fn, rgb_sigma, z, cot, *args)
    twin_dtypes = [o.dtype for o in ref_fn(rgb_sigma, z, *args)]
    for a, b, dt in zip(nat, ref, twin_dtypes):
        assert a.shape == b.shape and a.dtype == dt and a.device == rgb_sigma.device
        assert_close(a, b, **tol(rgb_sigma.dtype, device))
    assert nat_grad.dtype == rgb_sigma.dtype
    scale = ref_grad.abs().max().clamp_min(1)
    assert_close(nat_grad / scale, ref_grad / scale, **tol(rgb_sigma.dtype, device))


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
    (2, 5, 17, 13, "softplus", True, True, None, False),     # generic kernel, C > 8: two chunks
    (1, 9, 24, 40, "relu", False, False, "debug", True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}R{}S{}C{}-{}-lb{:d}-wb{:d}-{}-op{:d}".format(*c))
def test_composite_native_matches_reference(case, dtype, device):
    B, R, S, C, clamp, last_back, white_back, fill, opaque = case
    rgb_sigma, z = composite_inputs(B, R, S, C, dtype, device, seed=B * 1000 + S, opaque=opaque)
    compare(ops.composite, _composite, rgb_sigma, z, device, S, None, clamp, last_back, white_back, fill)


@pytest.mark.parametrize("C", [3, 13])
def test_composite_noise_and_its_gradient(device, C):
    rgb_sigma, z = composite_inputs(2, 5, 12, C, torch.float64, device, seed=3)
    noise = (torch.randn(z.shape, dtype=torch.float64) * 0.5).to(device).requires_grad_(True)
    grads = []
    for impl in (_composite, compositing._composite_native):
        x = rgb_sigma.clone().requires_grad_(True)
        n = noise.detach().clone().requires_grad_(True)
        rgb, depth, w = impl(x, z, n, "softplus", False, False, None)
        (rgb.sum() + 2 * depth.sum() + (w * torch.arange(12.0, dtype=torch.float64, device=device)[:, None]).sum()).backward()
        grads.append((rgb.detach(), x.grad, n.grad))
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert_close(grads[1][2], grads[1][1][..., -1:], rtol=0, atol=0)


def test_fancy_integration_reproducible_under_seed():
    rgb_sigma, z = composite_inputs(2, 4, 12, 3, torch.float32, seed=5)
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


def test_composite_non_contiguous_inputs(device):
    base, zb = composite_inputs(2, 6, 24, 4, torch.float32, device, seed=7)
    rgb_sigma = base.transpose(0, 1).contiguous().transpose(0, 1)[:, ::2, :, 1:]  # C = 3, strided
    z = zb.transpose(0, 1).contiguous().transpose(0, 1)[:, ::2]
    assert not rgb_sigma.is_contiguous() and not z.is_contiguous()
    cot = cotangents(_composite(rgb_sigma, z), seed=1)
    ref, ref_grad = fwd_bwd(_composite, rgb_sigma, z, cot, None, "relu", True)
    with ops.use_backend("native"):
        nat, nat_grad = fwd_bwd(ops.composite, rgb_sigma, z, cot, None, "relu", True)
    for a, b in zip(nat, ref):
        assert_close(a, b, **tol(torch.float32, device))
    assert_close(nat_grad, ref_grad, **tol(torch.float32, device))


@pytest.mark.parametrize("shape", [(0, 4, 8, 4), (2, 0, 8, 4), (2, 3, 0, 4), (1, 1, 1, 2)])
@pytest.mark.parametrize("last_back", [False, True])
def test_composite_zero_size(shape, last_back, device):
    rgb_sigma = torch.rand(shape, device=device, requires_grad=True)
    z = torch.rand(shape[:3] + (1,), device=device)
    ref = _composite(rgb_sigma, z, None, "relu", last_back, True)
    with ops.use_backend("native"):
        nat = ops.composite(rgb_sigma, z, None, "relu", last_back, True)
        sum(o.sum() for o in nat).backward()
    for a, b in zip(nat, ref):
        assert a.shape == b.shape
        assert_close(a.detach(), b.detach(), **tol(torch.float32, device))
    assert rgb_sigma.grad.shape == rgb_sigma.shape


def test_composite_nan_sigma_propagates_like_reference():
    rgb_sigma, z = composite_inputs(2, 3, 10, 3, torch.float32, seed=11)
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
    rgb_sigma, z = composite_inputs(2, 3, 10, 3, torch.float32, seed=11)
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


@pytest.mark.parametrize("options", [("relu", False, False, None), ("softplus", True, False, None),
                                     ("relu", True, True, "debug"), ("softplus", False, True, "weight")])
@pytest.mark.parametrize("C", [1, 3])
def test_composite_gradcheck(options, C):
    rgb_sigma, z = composite_inputs(2, 3, 6, C, torch.float64, seed=17, opaque=True)
    x = rgb_sigma.requires_grad_(True)
    fn = lambda t: compositing._composite_native(t, z, None, *options)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_composite_torch_compile():
    rgb_sigma, z = composite_inputs(2, 8, 12, 3, torch.float32, seed=19)

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


def test_raw_ops_are_complete_after_import():
    """Importing pigan.ops registers the fake kernels and autograd of torch.ops.pigan.*: a raw op
    compiles with fullgraph and differentiates in a fresh process, with no prior Python op call."""
    code = (
        "import torch, pigan.ops\n"
        "rs = torch.rand(2, 8, 12, 4, requires_grad=True)\n"
        "z = torch.sort(torch.rand(2, 8, 12, 1), 2).values\n"
        "f = torch.compile(lambda a, b: torch.ops.pigan.composite_fwd(a, b, None, 0, True, False, 0)[0].sum(),\n"
        "                  backend='aot_eager', fullgraph=True)\n"
        "f(rs, z).backward()\n"
        "ref = torch.autograd.grad(pigan.ops._composite(rs, z, None, 'relu', True)[0].sum(), rs)[0]\n"
        "assert torch.allclose(rs.grad, ref, rtol=1e-5, atol=1e-6)\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ---------------------------------------------------------------- EG3D midpoint quadrature

MIDPOINT_CASES = [
    (1, 1, 1, 1, "softplus", False),
    (2, 3, 2, 3, None, False),
    (3, 2, 24, 32, "softplus", True),
    (1, 97, 3, 21, "softplus", False),
    (24, 1, 97, 3, None, True),
    (2, 2, 48, 7, "softplus", True),
    (2, 5, 17, 13, "softplus", True),
    (1, 7, 9, 40, None, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MIDPOINT_CASES, ids=lambda c: "B{}R{}S{}C{}-{}-wb{:d}".format(*c))
def test_midpoint_native_matches_reference(case, dtype, device):
    B, R, S, C, clamp, white_back = case
    rgb_sigma, z = composite_inputs(B, R, S, C, torch.float64, seed=S + 3)
    if clamp is None:
        rgb_sigma[..., -1] = rgb_sigma[..., -1].abs()  # raw densities: keep them non-negative
    compare(ops.composite_midpoint, _composite_midpoint, rgb_sigma.to(dtype).to(device),
            z.to(dtype).to(device), device, S, clamp, white_back)


def test_midpoint_depth_clamped_and_empty_weights():
    # Negative raw densities push sum(w z)/sum(w) outside [min z, max z]; S == 1 has no interval.
    rgb_sigma, z = composite_inputs(3, 4, 8, 3, torch.float64, seed=23)
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
    rgb_sigma, z = composite_inputs(2, 3, 6, 3, torch.float64, seed=29)
    rgb_sigma[..., -1] = rgb_sigma[..., -1].abs()
    x = rgb_sigma.requires_grad_(True)
    fn = lambda t: compositing._composite_midpoint_native(t, z, clamp, white_back)  # noqa: E731
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
    with raises_on(backend, exc, match):
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
        call(torch.ops.pigan)


@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: "B{}R{}S{}C{}".format(*c[:4]))
def test_composite_backward_cuda_variant_on_cpu(case):
    # The CUDA kernel recomputes the exponentials in its reverse pass instead of caching them; the
    # CPU can run that variant too: it must give bit-identical gradients.
    B, R, S, C, clamp, last_back, white_back, fill, opaque = case
    rgb_sigma, z = composite_inputs(B, R, S, C, torch.float32, seed=S, opaque=opaque)
    noise = torch.randn(z.shape) * 0.5
    cot = [c.float() for c in cotangents(_composite(rgb_sigma, z), seed=S)]
    grads = []
    for recompute in (False, True):
        _C._set_composite_recompute(recompute)
        try:
            grads.append(torch.ops.pigan.composite_bwd(*cot, rgb_sigma, z, noise,
                                                       compositing._CLAMP[clamp], last_back, white_back,
                                                       compositing._FILL[fill]))
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


# ---------------------------------------------------------------- mixed dtypes, autocast

def _call(op, backend, rgb_sigma, z):
    with ops.use_backend(backend):
        if op == "composite_midpoint":
            return ops.composite_midpoint(rgb_sigma, z, "softplus", True)
        if op == "fancy_integration":
            torch.manual_seed(5)  # the same density noise for both backends
            return ops.fancy_integration(rgb_sigma, z, noise_std=0.5, clamp_mode="relu", last_back=True)
        return ops.composite(rgb_sigma, z, None, "softplus", True, True)


def _exact(op, rgb_sigma, z):
    """The float64 twin on the same rounded inputs (fancy_integration's noise, like the twin's, is
    rounded to rgb_sigma's dtype before it is added)."""
    x, zz = rgb_sigma.double(), z.double()
    if op == "fancy_integration":
        torch.manual_seed(5)
        noise = ops.draw_noise(z, 0.5).to(rgb_sigma.dtype).double()
        return _composite(x, zz, noise, "relu", True)
    return _call(op, "reference", x, zz)


OPS = ["composite", "fancy_integration", "composite_midpoint"]


def _fwd_bwd(fn, rgb_sigma):
    x = rgb_sigma.detach().clone().requires_grad_(True)
    outs = fn(x)
    sum((t.double() * (i + 1)).sum() for i, t in enumerate(outs)).backward()
    return [o.detach() for o in outs], x.grad


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_mixed_dtypes_promote_like_the_twin(op, low, device):
    """Half-precision network output with float32 depths: the twin composites in float32 (depths in
    [0.88, 1.12] keep their 24 bits), and so must native: the twin's dtypes, and float32 accuracy
    against the float64 answer on the same inputs (rounding z to bf16 was off by ~1e-1)."""
    rgb_sigma, z = composite_inputs(1, 64, 48, 3, torch.float32, device, seed=31)
    rgb_sigma = rgb_sigma.to(low)
    twin = _call(op, "reference", rgb_sigma, z)
    nat, nat_grad = _fwd_bwd(lambda x: _call(op, "native", x, z), rgb_sigma)
    exact, exact_grad = _fwd_bwd(lambda x: _exact(op, x, z), rgb_sigma)
    for a, b, t in zip(nat, exact, twin):
        assert a.dtype == t.dtype == torch.float32
        assert_close(a, b, **tol(torch.float32, device))
    assert nat_grad.dtype == low
    scale = exact_grad.abs().max()
    assert_close(nat_grad / scale, exact_grad / scale, **tol(low, device))


@pytest.mark.parametrize("op", OPS)
def test_under_autocast_like_the_twin(op, device):
    rgb_sigma, z = composite_inputs(2, 16, 24, 3, torch.float32, device, seed=33)
    w = torch.eye(4, device=device, dtype=torch.float32)
    res = {}
    for backend in ("reference", "native"):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            h = torch.nn.functional.linear(rgb_sigma, w)  # a bf16 network output, as in the generator
            assert h.dtype == torch.bfloat16
            res[backend] = _call(op, backend, h, z)
    exact = _exact(op, h, z)
    for a, b, e in zip(res["native"], res["reference"], exact):
        assert a.dtype == b.dtype == torch.float32
        assert_close(a, e, **tol(torch.float32, device))


# ---------------------------------------------------------------- double backward

@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("op", ["composite", "composite_midpoint"])
def test_double_backward_matches_finite_differences(op, backend, device):
    """Gradient penalties differentiate the backward: native gives the twin's second derivatives
    (gradgradcheck), not a silent wrong answer."""
    rgb_sigma, z = composite_inputs(1, 3, 5, 2, torch.float64, device, seed=37)
    x = rgb_sigma.clone().requires_grad_(True)
    noise = (torch.randn(z.shape, dtype=torch.float64) * 0.3).to(device).requires_grad_(True)
    with ops.use_backend(backend):
        if op == "composite":
            def fn(x, n):
                return ops.composite(x, z, n, "softplus", True, True)
            args = (x, noise)
        else:
            def fn(x):
                return ops.composite_midpoint(x, z, "softplus", True)
            args = (x,)
        assert torch.autograd.gradgradcheck(fn, args, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_create_graph_gradient_equals_plain_native_gradient(device):
    rgb_sigma, z = composite_inputs(2, 7, 9, 3, torch.float64, device, seed=39)
    cot = cotangents(_composite(rgb_sigma, z), seed=3)
    grads = []
    for create_graph in (False, True):
        x = rgb_sigma.clone().requires_grad_(True)
        with ops.use_backend("native"):
            outs = ops.composite(x, z, None, "relu", True)
        (g,) = torch.autograd.grad(outs, x, cot, create_graph=create_graph)
        assert g.requires_grad == create_graph
        grads.append(g.detach())
    assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["composite_bwd", "midpoint_bwd"])
def test_raw_backward_ops_refuse_double_backward(name):
    rgb_sigma, z = composite_inputs(1, 2, 4, 3, torch.float32, seed=43)
    x = rgb_sigma.clone().requires_grad_(True)
    S = 4 if name == "composite_bwd" else 3
    g = (torch.rand(1, 2, 3), torch.rand(1, 2, 1), torch.rand(1, 2, S, 1))
    args = (None, 0, True, False, 0) if name == "composite_bwd" else (1, False)
    grad = getattr(torch.ops.pigan, name)(*g, x, z, *args)
    with pytest.raises(RuntimeError, match=rf"{name}: .*not differentiable.*use_backend\(\"reference\"\)"):
        grad.sum().backward()


# ---------------------------------------------------------------- edge values

def test_raw_midpoint_rejects_rays_without_samples():
    # S == 0 with rays would read depth 0 of an empty ray: a clear error, not a crash.
    for B, R in ((2, 3), (1, 1)):
        with pytest.raises(ValueError, match="S >= 1"):
            torch.ops.pigan.midpoint_fwd(torch.rand(B, R, 0, 4), torch.rand(B, R, 0, 1), 1, False)
        with pytest.raises(ValueError, match="S >= 1"):
            torch.ops.pigan.midpoint_bwd(torch.rand(B, R, 3), torch.rand(B, R, 1), torch.rand(B, R, 0, 1),
                                         torch.rand(B, R, 0, 4), torch.rand(B, R, 0, 1), 1, False)
    rgb, depth, w = torch.ops.pigan.midpoint_fwd(torch.rand(0, 3, 0, 4), torch.rand(0, 3, 0, 1), 1, False)
    assert rgb.shape == (0, 3, 3) and w.shape == (0, 3, 0, 1)


def test_midpoint_nan_and_inf_depths_like_reference(device):
    rgb_sigma, z = composite_inputs(3, 4, 8, 3, torch.float64, device, seed=41)
    z[0, 1, 3] = float("nan")
    z[1, 2, 0] = float("nan")
    z[2, 0, 7] = float("inf")
    z[2, 3, 0] = -float("inf")
    ref = _composite_midpoint(rgb_sigma, z, "softplus", True)
    with ops.use_backend("native"):
        nat = ops.composite_midpoint(rgb_sigma, z, "softplus", True)
    assert ref[1][0, 1].isnan().all() and ref[1][1, 2].isnan().all()
    for a, b in zip(nat, ref):
        assert torch.equal(a.isnan(), b.isnan())
        assert_close(a, b, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- GPU only: scale and streams

@pytest.mark.gpu
@pytest.mark.parametrize("op", ["composite", "composite_midpoint"])
def test_production_size_cuda(op):
    """More than 2^20 samples (int64 offsets, many blocks) with EG3D's C = 32, float32 vs float64."""
    B, R, S, C = 2, 8192, 72, 32                                   # 1.18M samples
    rgb_sigma, z = composite_inputs(B, R, S, C, torch.float32, "cuda", seed=47)
    fn = ops.composite if op == "composite" else ops.composite_midpoint
    ref_fn = _composite if op == "composite" else _composite_midpoint
    args = (None, "relu", True) if op == "composite" else ("softplus", True)
    compare(fn, ref_fn, rgb_sigma, z, "cuda", 5, *args)


@pytest.mark.gpu
def test_ops_follow_the_current_stream():
    """Kernels run on torch's current stream: inputs produced on a side stream after a delay are
    read only once written, and the results match the same ops on the default stream."""
    rgb_sigma, z = composite_inputs(4, 1024, 24, 3, torch.float32, "cuda", seed=53)
    with ops.use_backend("native"):
        expected = ops.composite(rgb_sigma, z, None, "relu", True)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.cuda._sleep(20_000_000)  # the write below lands late on this stream
            x = rgb_sigma * 1.0
            got = ops.composite(x, z, None, "relu", True)
        torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
