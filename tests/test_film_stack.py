"""pigan.ops.film_siren_stack: the native CPU stack (saves pre-activations, one recomputed GEMM) against
the float64 reference loop, its C++ passes alone, float64 gradcheck, fallbacks and bad input."""
from __future__ import annotations

import pytest
import torch

from pigan import ops
from pigan.ops import film as film_mod

pytestmark = pytest.mark.skipif(not film_mod._cpu_ops_available(), reason="pigan._C lacks the FiLM CPU ops")

# max |error| / max |reference| of fp32 against float64; worst measured over the parametrised cases
# below: y 1.2e-6, grads 1.2e-6 (SIREN-scaled weights: sine arguments of order 1 to 10).
TOL = {"y": 5e-6, "grad": 5e-6}


def make_stack(B, N, widths, dtype=torch.float32, bias=True, seed=0):
    """widths = [K, H_0, H_1, ...]; SIREN-like scales (sine arguments of a few hundred)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, N, widths[0], generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    ws, bs, fs, ps = [], [], [], []
    for k, h in zip(widths[:-1], widths[1:]):
        ws.append((torch.randn(h, k, generator=g, dtype=torch.float64) / k ** 0.5 / 25).to(dtype))
        bs.append((torch.randn(h, generator=g, dtype=torch.float64) * 0.02).to(dtype) if bias else None)
        fs.append((torch.randn(B, h, generator=g, dtype=torch.float64) * 4 + 30).to(dtype))
        ps.append(torch.randn(B, h, generator=g, dtype=torch.float64).to(dtype))
    return x, ws, bs, fs, ps


def leaves_of(x, ws, bs, fs, ps):
    return [x, *ws, *[b for b in bs if b is not None], *fs, *ps]


def rel_err(a, ref):
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-12)).item()


def run(backend, args, dy, x_grad=True):
    args = [[t.detach().clone().requires_grad_() if t is not None else None for t in a] if isinstance(a, list)
            else a.detach().clone().requires_grad_(x_grad) for a in args]
    leaves = [t for t in leaves_of(*args) if t.requires_grad]
    with ops.use_backend(backend):
        y = ops.film_siren_stack(*args)
    return y.detach(), torch.autograd.grad(y, leaves, dy.to(y.dtype))


@pytest.mark.parametrize("B,N", [(1, 1), (3, 7), (1, 97), (2, 129)])
@pytest.mark.parametrize("widths", [[3, 32, 32, 32], [3, 16], [5, 24, 8, 40], [259, 32, 32]])
@pytest.mark.parametrize("bias", [True, False])
def test_native_stack_matches_reference(B, N, widths, bias):
    args = make_stack(B, N, widths, bias=bias, seed=B * N + len(widths))
    dy = torch.randn(B, N, widths[-1], generator=torch.Generator().manual_seed(N), dtype=torch.float64)
    y, grads = run("native", args, dy)
    args64 = [[t.double() if t is not None else None for t in a] if isinstance(a, list) else a.double() for a in args]
    y_ref, grads_ref = run("reference", args64, dy)
    assert rel_err(y, y_ref) <= TOL["y"]
    assert len(grads) == len(grads_ref)
    for i, (a, r) in enumerate(zip(grads, grads_ref)):
        assert a.dtype == torch.float32 and a.shape == r.shape
        assert rel_err(a, r) <= TOL["grad"], i


def test_native_stack_equals_layer_loop():
    """The stack is the loop of the per-layer native op: the same forward values, and gradients that
    differ only by the rounding of the pre-activation (saved vs recomputed)."""
    args = make_stack(2, 77, [3, 48, 48, 48, 48], seed=3)
    dy = torch.randn(2, 77, 48, generator=torch.Generator().manual_seed(4))
    y, grads = run("native", args, dy)
    leaves = [t.detach().clone().requires_grad_() for t in leaves_of(*args)]
    x, rest = leaves[0], leaves[1:]
    ws, bs, fs, ps = (rest[k * 4:(k + 1) * 4] for k in range(4))
    with ops.use_backend("native"):
        h = x
        for w, b, f, p in zip(ws, bs, fs, ps):
            h = ops.film_siren(h, w, b, f, p)
    loop_grads = torch.autograd.grad(h, leaves, dy)
    assert torch.equal(y, h.detach())
    for a, r in zip(grads, loop_grads):
        assert rel_err(a, r) <= 1e-5


def test_native_stack_gradcheck_float64():
    for bias in (True, False):
        x, ws, bs, fs, ps = make_stack(2, 5, [3, 6, 4, 6], dtype=torch.float64, bias=bias, seed=7)
        leaves = [t.requires_grad_() for t in leaves_of(x, ws, bs, fs, ps)]
        n = len(ws)

        def fn(*a):
            x, rest = a[0], list(a[1:])
            ws_, rest = rest[:n], rest[n:]
            bs_ = rest[:n] if bias else [None] * n
            rest = rest[n:] if bias else rest
            with ops.use_backend("native"):
                return ops.film_siren_stack(x, ws_, bs_, rest[:n], rest[n:])

        assert torch.autograd.gradcheck(fn, leaves)


def test_stack_without_input_grad_returns_none_for_x():
    x, ws, bs, fs, ps = make_stack(1, 9, [3, 8, 8])
    ws = [w.requires_grad_() for w in ws]
    with ops.use_backend("native"):
        y = ops.film_siren_stack(x, ws, bs, fs, ps)
    y.sum().backward()
    assert x.grad is None and all(w.grad is not None and torch.isfinite(w.grad).all() for w in ws)


def test_film_sine_out_writes_every_element():
    g = torch.Generator().manual_seed(0)
    B, N, H = 3, 301, 19
    pre = torch.randn(B, N, H, generator=g)
    f, p = torch.randn(B, H, generator=g) * 4 + 30, torch.randn(B, H, generator=g)
    out = torch.full_like(pre, float("nan"))
    assert torch.ops.pigan.film_sine_out(out, pre, f, p) is None
    ref = torch.sin(f[:, None].double() * pre.double() + p[:, None].double())
    assert torch.isfinite(out).all() and rel_err(out, ref) < 3e-5
    with pytest.raises(ValueError, match="out must have shape"):
        torch.ops.pigan.film_sine_out(torch.empty(B, N, H + 1), pre, f, p)


def test_film_forward_pre_returns_preactivation():
    g = torch.Generator().manual_seed(1)
    B, N, K, H = 2, 600, 7, 33                                            # several row blocks
    x, w, b = torch.randn(B, N, K, generator=g), torch.randn(H, K, generator=g), torch.randn(H, generator=g)
    f, p = torch.randn(B, H, generator=g) + 30, torch.randn(B, H, generator=g)
    y, pre = torch.ops.pigan.film_forward_pre(x, w, b, f, p)
    pre_ref = x.double() @ w.double().t() + b.double()
    assert rel_err(pre, pre_ref) < 1e-5
    assert rel_err(y, torch.sin(f[:, None].double() * pre.double() + p[:, None].double())) < 3e-5
    assert torch.equal(y, torch.ops.pigan.film_forward(x, w, b, f, p))
    with pytest.raises(TypeError, match="float32 or float64"):
        torch.ops.pigan.film_forward_pre(x.half(), w.half(), b.half(), f, p)


def test_film_bwd_pre_in_place_and_sums():
    g = torch.Generator().manual_seed(2)
    B, N, H = 3, 600, 40                                                  # several partial-sum chunks
    pre, dy = torch.randn(B, N, H, generator=g), torch.randn(B, N, H, generator=g)
    f, p = torch.randn(B, H, generator=g) * 4 + 30, torch.randn(B, H, generator=g)
    gref = dy.double() * torch.cos(f[:, None].double() * pre.double() + p[:, None].double())
    pre_before, dz = pre.clone(), dy.clone()
    dfreq, dphase = torch.ops.pigan.film_bwd_pre_(dz, pre, f, p)
    assert torch.equal(pre, pre_before)
    assert rel_err(dz, gref * f[:, None].double()) < 1e-5
    assert rel_err(dfreq, (gref * pre.double()).sum(1)) < 1e-5
    assert rel_err(dphase, gref.sum(1)) < 1e-5
    with pytest.raises(ValueError, match="dy must be contiguous"):
        torch.ops.pigan.film_bwd_pre_(dy.transpose(0, 1).contiguous().transpose(0, 1), pre, f, p)


def test_film_bwd_pre_large_arguments_use_exact_cosine():
    xs = torch.arange(4, 257, dtype=torch.float64) / 4
    pre = torch.cat([xs, -xs]).reshape(2, -1, 1)                          # exact in fp32
    arg = pre * 2.0 ** 20
    f, p = torch.full((2, 1), 2.0 ** 20), torch.zeros(2, 1)
    dz = torch.ones(2, pre.shape[1], 1)
    torch.ops.pigan.film_bwd_pre_(dz, pre.float(), f, p)
    assert (dz.double() / 2.0 ** 20 - torch.cos(arg)).abs().max() <= 1e-6
    out = torch.empty(2, pre.shape[1], 1)
    torch.ops.pigan.film_sine_out(out, pre.float(), f, p)
    assert (out.double() - torch.sin(arg)).abs().max() <= 1e-6


def test_stack_falls_back_to_layers_under_autocast():
    x, ws, bs, fs, ps = make_stack(2, 11, [3, 16, 16])
    with torch.autocast("cpu", dtype=torch.bfloat16), ops.use_backend("native"):
        y = ops.film_siren_stack(x, ws, bs, fs, ps)
    assert y.dtype == torch.bfloat16
    y_ref = ops._film_siren_stack(x.double(), [w.double() for w in ws], [b.double() for b in bs],
                                  [f.double() for f in fs], [p.double() for p in ps])
    assert rel_err(y, y_ref) < 2e-2


def test_stack_bad_input():
    x, ws, bs, fs, ps = make_stack(2, 5, [3, 8, 8])
    with pytest.raises(ValueError, match="at least one layer"):
        ops.film_siren_stack(x, [], [], [], [])
    with pytest.raises(ValueError, match="biases must have one entry per layer"):
        ops.film_siren_stack(x, ws, bs[:1], fs, ps)
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \[H, 8\]"):
        ops.film_siren_stack(x, [ws[0], torch.randn(8, 5)], bs, fs, ps)
    with pytest.raises(ValueError, match=r"freqs\[1\] must have shape \[B, H\] = \[2, 8\]"):
        ops.film_siren_stack(x, ws, bs, [fs[0], fs[1][:1]], ps)
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \[H, 2\] \(the last dim of x\)"):
        ops.film_siren_stack(x[..., :2], ws, bs, fs, ps)
    with pytest.raises((TypeError, ValueError), match="dtype"):
        ops.film_siren_stack(x, [ws[0].double(), ws[1]], bs, fs, ps)


def test_siren_with_hooks_runs_layer_by_layer():
    """A forward hook on a FiLM layer still fires (the trunk then calls the layers one by one), and the
    result equals the stacked trunk's."""
    from pigan.siren import SPATIALSIRENBASELINE
    torch.manual_seed(0)
    siren = SPATIALSIRENBASELINE(3, 16, hidden_dim=32, map_hidden_dim=32)
    pts, dirs, z = torch.rand(2, 13, 3) - 0.5, torch.randn(2, 13, 3), torch.randn(2, 16)
    with ops.use_backend("native"):
        out = siren(pts, z, dirs)
        seen = []
        handle = siren.network[3].register_forward_hook(lambda m, i, o: seen.append(o.shape))
        out_hooked = siren(pts, z, dirs)
        handle.remove()
    assert seen == [torch.Size([2, 13, 32])]
    assert torch.allclose(out, out_hooked, rtol=0, atol=1e-6)


def test_native_stack_under_torch_compile():
    """The stack's autograd Function and its C++ ops (fake kernels registered) trace under torch.compile."""
    args = make_stack(2, 19, [3, 16, 16, 16], seed=9)

    def step(x, ws, bs, fs, ps):
        with ops.use_backend("native"):
            return ops.film_siren_stack(x, ws, bs, fs, ps).square().sum()

    def fresh():
        return [[t.detach().clone().requires_grad_() for t in a] if isinstance(a, list)
                else a.detach().clone() for a in args]

    eager_args, compiled_args = fresh(), fresh()
    step(*eager_args).backward()
    torch.compile(step, backend="aot_eager")(*compiled_args).backward()
    for a, b in zip(leaves_of(*eager_args)[1:], leaves_of(*compiled_args)[1:]):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("B,N", [(2, 0), (0, 5)])
def test_native_stack_empty_batches(B, N):
    x, ws, bs, fs, ps = make_stack(B, N, [3, 8, 8])
    x.requires_grad_()
    ws = [w.requires_grad_() for w in ws]
    with ops.use_backend("native"):
        y = ops.film_siren_stack(x, ws, bs, fs, ps)
    y.sum().backward()
    assert y.shape == (B, N, 8) and x.grad.shape == x.shape
    assert all(torch.equal(w.grad, torch.zeros_like(w)) for w in ws)


def test_stack_keeps_nothing_without_grad(monkeypatch):
    """Under no_grad (or with no input requiring grad) the native stack runs the per-layer forward, which
    keeps nothing, instead of its autograd Function, which keeps every pre-activation."""
    from pigan.ops import film_stack

    def refuse(*a):
        raise AssertionError("the stack's autograd Function ran without a backward to serve")
    args = make_stack(2, 33, [3, 16, 16, 16])
    with ops.use_backend("native"):
        expected = ops.film_siren_stack(*args)                      # nothing requires grad
        monkeypatch.setattr(film_stack._FiLMStackNative, "apply", refuse)
        assert torch.equal(ops.film_siren_stack(*args), expected)
        with torch.no_grad():
            ws = [w.requires_grad_() for w in args[1]]
            assert torch.equal(ops.film_siren_stack(args[0], ws, *args[2:]), expected)


def test_siren_backward_hooks_and_layer_subclasses_are_honoured():
    from pigan.siren import SPATIALSIRENBASELINE, FiLMLayer
    torch.manual_seed(0)
    siren = SPATIALSIRENBASELINE(3, 16, hidden_dim=32, map_hidden_dim=32)
    pts, dirs, z = torch.rand(2, 13, 3) - 0.5, torch.randn(2, 13, 3), torch.randn(2, 16)
    calls = []
    handles = [siren.network[1].register_full_backward_hook(lambda m, gi, go: calls.append("hook")),
               siren.network[2].register_full_backward_pre_hook(lambda m, go: calls.append("pre"))]
    with ops.use_backend("native"):
        siren(pts, z, dirs).sum().backward()
    for h in handles:
        h.remove()
    assert sorted(calls) == ["hook", "pre"]

    class Doubled(FiLMLayer):                                       # a wrapper with its own forward
        def forward(self, x, freq, phase_shift):
            return 2 * super().forward(x, freq, phase_shift)
    with ops.use_backend("native"):
        plain = siren(pts, z, dirs)
        layer = Doubled(32, 32)
        layer.load_state_dict(siren.network[4].state_dict())
        siren.network[4] = layer
        assert not torch.allclose(siren(pts, z, dirs), plain)


def test_native_stack_double_backward_gradgradcheck():
    """create_graph=True through the native stack (a gradient penalty through the SIREN trunk): exact
    second derivatives w.r.t. x, every parameter and the cotangent."""
    x, ws, bs, fs, ps = make_stack(2, 5, [3, 4, 5], dtype=torch.float64, seed=9)
    fs = [f / 15 for f in fs]                                   # keep the finite differences accurate
    bs[1] = None
    leaves = [x, *ws, bs[0], *fs, *ps]
    leaves = [t.requires_grad_() for t in leaves]

    def fn(x, w0, w1, b0, f0, f1, p0, p1):
        with ops.use_backend("native"):
            return ops.film_siren_stack(x, [w0, w1], [b0, None], [f0, f1], [p0, p1])

    assert torch.autograd.gradgradcheck(fn, leaves)
    # The second backward reaches the weights (before, the first gradient did not require grad).
    with ops.use_backend("native"):
        y = fn(*leaves)
    gx, = torch.autograd.grad(y.square().sum(), [leaves[0]], create_graph=True)
    gw = torch.autograd.grad(gx.square().sum(), leaves[1])[0]
    assert gw.abs().sum() > 0
