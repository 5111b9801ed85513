"""Empty-space skipping (grid_occupied, march_window, composite_window): native vs the reference twins.

Lookups, window ends and stops must be identical; composited values agree to rounding (the twin's
cumprod and sums run in another order, and the CPU kernel's float exp is its own).
"""
import pytest
import torch

from inputs import assert_close, composite_inputs, raises_on
from pigan import ops
from pigan.ops import skipping
from pigan.ops.compositing import _composite
from pigan.ops.skipping import _composite_window, _grid_occupied, _march_window

pytestmark = pytest.mark.usefixtures("poison_outputs")

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def native(fn, *args):
    with ops.use_backend("native"):
        return fn(*args)


def window_tol(dtype, device="cpu"):
    if dtype == torch.float64:
        return dict(rtol=1e-12, atol=1e-12)
    return dict(rtol=1e-5, atol=1e-6 if torch.device(device).type == "cpu" else 1e-5)


# ---------------------------------------------------------------- grid_occupied

def grid_inputs(B, N, G, dtype, device, seed, box_dtype=F64):
    """Points around a random box (about a tenth outside it on each axis), a random grid."""
    g = _gen(seed)
    lo = torch.rand(B, 3, generator=g, dtype=F64) - 1
    hi = lo + 0.5 + torch.rand(B, 3, generator=g, dtype=F64)
    u = torch.rand(B, N, 3, generator=g, dtype=F64) * 1.2 - 0.1
    points = lo[:, None] + u * (hi - lo)[:, None]
    grid = torch.rand(B, G, G, G, generator=g) < 0.4
    return points.to(dtype).to(device), grid.to(device), lo.to(box_dtype).to(device), hi.to(box_dtype).to(device)


def assert_grid_matches(points, grid, lo, hi):
    ref = _grid_occupied(points, grid, lo, hi)
    nat = native(skipping.grid_occupied, points, grid, lo, hi)
    assert nat.dtype == torch.bool and nat.shape == ref.shape and nat.device == ref.device
    assert torch.equal(nat, ref)
    return nat


@pytest.mark.parametrize("dtype,box_dtype", [(torch.float32, torch.float32), (F64, F64),
                                             (torch.float32, F64), (torch.float16, torch.float32),
                                             (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("B,N,G", [(1, 1, 1), (2, 7, 2), (3, 97, 5), (1, 129, 16), (2, 0, 3)])
def test_grid_occupied_matches_twin(B, N, G, dtype, box_dtype, device):
    points, grid, lo, hi = grid_inputs(B, N, G, dtype, device, seed=B * 100 + N + G, box_dtype=box_dtype)
    nat = assert_grid_matches(points, grid, lo, hi)
    if N >= 97:
        assert (~nat).any() and nat.any()


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.float16])
@pytest.mark.parametrize("lo_v,hi_v,G", [(0.0, 1.0, 4), (-0.3, 0.7, 5), (0.1, 0.4, 3)])
def test_grid_occupied_cell_boundaries_and_outside(lo_v, hi_v, G, dtype, device):
    # Every cell boundary, its neighbours one step either side, the box's faces and points beyond.
    lo, hi = torch.full((1, 3), lo_v, dtype=dtype), torch.full((1, 3), hi_v, dtype=dtype)
    edges = (lo_v + torch.arange(G + 1, dtype=F64) * (hi_v - lo_v) / G).to(dtype)
    inf = torch.tensor([float("inf")], dtype=dtype)
    coords = torch.cat([edges, torch.nextafter(edges, inf), torch.nextafter(edges, -inf),
                        torch.tensor([lo_v - 1, hi_v + 1, float("inf"), -float("inf")], dtype=dtype)])
    mesh = torch.stack(torch.meshgrid(coords, coords, coords[::3], indexing="ij"), -1).reshape(1, -1, 3)
    for grid in (torch.rand(1, G, G, G, generator=_gen(G)) < 0.5, torch.zeros(1, G, G, G, dtype=torch.bool)):
        nat = assert_grid_matches(mesh.to(device), grid.to(device), lo.to(device), hi.to(device))
        outside = ((mesh < lo) | (mesh >= hi)).any(-1).to(device)
        assert nat[outside].all()
    if (lo_v, hi_v) == (0.0, 1.0):  # exact box: a point on a boundary lies in the cell above it
        grid = torch.zeros(1, G, G, G, dtype=torch.bool)
        grid[0, 2, 1, 3] = True
        p = torch.tensor([[[0.75, 0.25, 0.5], [0.75, 0.25, 0.49], [1.0, 0.25, 0.5], [0.0, 0.0, 0.0]]], dtype=dtype)
        got = native(skipping.grid_occupied, p.to(device), grid.to(device), lo.to(device), hi.to(device))
        assert got.tolist() == [[True, False, True, False]]


def test_grid_occupied_nan_point_is_evaluated():
    points = torch.tensor([[[0.5, float("nan"), 0.5], [0.5, 0.5, 0.5]]])
    grid = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    got = native(skipping.grid_occupied, points, grid, torch.zeros(1, 3), torch.ones(1, 3))
    assert got.tolist() == [[True, False]]


# ---------------------------------------------------------------- march_window

def march_inputs(R, S, p_need, device, seed):
    g = _gen(seed)
    need = torch.rand(R, S, generator=g) < p_need
    start = torch.randint(0, S + 1, (R,), generator=g)
    alive = torch.rand(R, generator=g) > 0.2
    return need.to(device), start.to(device), alive.to(device)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("R,S", [(1, 1), (7, 2), (97, 7), (129, 24), (7, 48), (129, 48)])
@pytest.mark.parametrize("p_need", [0.2, 0.9])
def test_march_window_matches_twin(R, S, k, p_need, device):
    need, start, alive = march_inputs(R, S, p_need, device, seed=R + S + k)
    ref = _march_window(need, start, alive, k)
    nat = native(skipping.march_window, need, start, alive, k)
    assert nat.dtype == torch.int64 and torch.equal(nat, ref)
    assert torch.equal(nat[~alive], start[~alive])


def test_march_window_starts_outside_the_ray(device):
    need = (torch.rand(6, 9, generator=_gen(1)) < 0.5).to(device)
    start = torch.tensor([-3, 0, 9, 12, -1, 4], device=device)
    alive = torch.tensor([True, True, True, True, False, True], device=device)
    for k in (1, 3):
        assert torch.equal(native(skipping.march_window, need, start, alive, k), _march_window(need, start, alive, k))


# ---------------------------------------------------------------- composite_window

def window_inputs(R, S, C, dtype, device, seed):
    """rgb_sigma [R, S, C+1] with some opaque samples, z [R, S] spaced widely enough for rays to
    terminate mid-window, occupancy, windows (the first full, the second empty, the third reversed,
    the rest random) and transmittances (every fifth 1, the rest in [0.1, 1))."""
    g = _gen(seed)
    rgb = torch.rand(R, S, C, generator=g, dtype=F64)
    sigma = torch.randn(R, S, 1, generator=g, dtype=F64) * 3
    sigma = torch.where(torch.rand(R, S, 1, generator=g, dtype=F64) < 0.05, torch.full_like(sigma, 1e4), sigma)
    z = 0.5 + torch.cumsum(torch.rand(R, S, generator=g, dtype=F64) * 0.3, -1)
    occ = torch.rand(R, S, generator=g) < 0.7
    start = torch.randint(0, S + 1, (R,), generator=g)
    end = torch.minimum(start + torch.randint(0, S + 1, (R,), generator=g), torch.tensor(S))
    start[0], end[0] = 0, S
    if R > 2:
        end[1], start[2], end[2] = start[1], S, max(S - 1, 0)
    t0 = torch.rand(R, generator=g, dtype=F64) * 0.9 + 0.1
    t0[::5] = 1.0
    rs = torch.cat([rgb, sigma], -1).to(dtype)
    return [x.to(device) for x in (rs, z.to(dtype), occ, start, end, t0.to(dtype))]


def assert_window_matches(args, eps, clamp, device):
    ref = _composite_window(*args, eps, clamp)
    nat = native(skipping.composite_window, *args, eps, clamp)
    for a, b in zip(nat, ref):
        assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    assert torch.equal(nat[3], ref[3])
    for a, b in zip(nat[:3], ref[:3]):
        assert_close(a, b, **window_tol(ref[0].dtype, device))
    return nat


WINDOW_CASES = [(1, 1, 1), (7, 2, 3), (97, 7, 19), (129, 24, 3), (7, 48, 1), (129, 48, 19), (97, 24, 1)]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("clamp", ["relu", "softplus"])
@pytest.mark.parametrize("eps", [0.0, 1e-4, 0.5])
@pytest.mark.parametrize("R,S,C", WINDOW_CASES)
def test_composite_window_matches_twin(R, S, C, eps, clamp, dtype, device):
    args = window_inputs(R, S, C, dtype, device, seed=R * 7 + S + C)
    w, _, _, stop = assert_window_matches(args, eps, clamp, device)
    start, end = args[3], args[4]
    idx = torch.arange(S, device=device)
    assert (w[(idx < start[:, None]) | (idx >= stop[:, None])] == 0).all()
    if R >= 97 and S >= 24 and eps > 0:  # rays that stop mid-window and rays that run to its end
        assert ((stop > start) & (stop < end)).any() and ((stop == end) & (end > start)).any()


@pytest.mark.parametrize("rs_dtype,z_dtype,t_dtype", [(torch.float32, F64, torch.float32),
                                                      (torch.float16, torch.float32, F64),
                                                      (torch.bfloat16, torch.float32, torch.float32)])
def test_composite_window_promotes_like_twin(rs_dtype, z_dtype, t_dtype, device):
    rs, z, occ, start, end, t0 = window_inputs(97, 24, 3, F64, device, seed=3)
    args = [rs.to(rs_dtype), z.to(z_dtype), occ, start, end, t0.to(t_dtype)]
    assert_window_matches(args, 1e-4, "softplus", device)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_composite_window_half_accumulates_in_float32(dtype, device):
    """Half inputs are read as stored and composited in float32: the float32 run on the same values,
    rounded, and close to the twin's half arithmetic."""
    rs, z, occ, start, end, t0 = window_inputs(129, 24, 3, dtype, device, seed=5)
    nat = native(skipping.composite_window, rs, z, occ, start, end, t0, 1e-4, "relu")
    wide = native(skipping.composite_window, rs.float(), z.float(), occ, start, end, t0.float(), 1e-4, "relu")
    assert all(a.dtype == dtype for a in nat[:3])
    for a, b in zip(nat[:3], wide[:3]):
        assert torch.equal(a, b.to(dtype))
    assert torch.equal(nat[3], wide[3])
    ref = _composite_window(rs.float(), z.float(), occ, start, end, t0.float(), 1e-4, "relu")
    for a, b in zip(nat[:3], ref[:3]):
        assert_close(a, b, rtol=1e-2, atol=1e-2)


def test_composite_window_reads_only_occupied_window_samples(device):
    # The twin multiplies unread values by a zero weight (NaN * 0 = NaN); the kernel never reads them.
    rs, z, occ, start, end, t0 = window_inputs(97, 24, 3, torch.float32, device, seed=11)
    ref = native(skipping.composite_window, rs, z, occ, start, end, t0, 1e-4, "relu")
    idx = torch.arange(24, device=device)
    unread = ~(occ & (idx >= start[:, None]) & (idx < ref[3][:, None]))
    garbage = torch.where(unread[..., None], torch.full_like(rs, float("nan")), rs)
    got = native(skipping.composite_window, garbage, z, occ, start, end, t0, 1e-4, "relu")
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("clamp", ["relu", "softplus"])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_full_window_equals_dense_composite(backend, clamp, dtype, device):
    R, S, C = 129, 48, 3
    rs4, z4 = composite_inputs(1, R, S, C, dtype, device, seed=2)
    rgb, depth, w_ref = _composite(rs4, z4, None, clamp)
    rs, z = rs4[0], z4[0, ..., 0]
    with ops.use_backend(backend):
        w, acc, _, stop = skipping.composite_window(
            rs, z, torch.ones(R, S, dtype=torch.bool, device=device), torch.zeros(R, dtype=torch.long, device=device),
            torch.full((R,), S, device=device), torch.ones(R, dtype=dtype, device=device), 0.0, clamp)
    tol = window_tol(dtype, device) if dtype == F64 else dict(rtol=1e-5, atol=2e-6)
    assert_close(w, w_ref[0, ..., 0], **tol)
    assert_close(acc[:, :C], rgb[0], **tol)
    assert_close(acc[:, C], depth[0, :, 0], **tol)
    assert (stop == S).all()


def march_in_rounds(rs, z, occ, k, eps, clamp):
    """The skipping render's loop: per round, each live ray's window up to its next k occupied,
    unevaluated samples, composited from where it stopped."""
    R, S = occ.shape
    dev = rs.device
    idx = torch.arange(S, device=dev)
    start = torch.zeros(R, dtype=torch.long, device=dev)
    alive = torch.ones(R, dtype=torch.bool, device=dev)
    evaluated = torch.zeros(R, S, dtype=torch.bool, device=dev)
    t = torch.ones(R, dtype=rs.dtype, device=dev)
    weights, acc = torch.zeros_like(z), torch.zeros(R, rs.shape[-1], dtype=rs.dtype, device=dev)
    rounds = 0
    while alive.any():
        end = skipping.march_window(occ & ~evaluated, start, alive, k)
        w, a, t, stop = skipping.composite_window(rs, z, occ, start, end, t, eps, clamp)
        weights, acc = weights + w, acc + a
        evaluated |= (idx >= start[:, None]) & (idx < end[:, None])
        alive = alive & (stop < S) & ~(t < eps)
        start = stop
        rounds += 1
    return weights, acc, t, start, rounds


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("eps", [0.0, 1e-4])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_marching_in_rounds_equals_one_window(k, eps, dtype, device):
    R, S, C = 97, 24, 3
    rs, z, occ, _, _, _ = window_inputs(R, S, C, dtype, device, seed=k)
    full = (torch.zeros(R, dtype=torch.long, device=device), torch.full((R,), S, device=device),
            torch.ones(R, dtype=dtype, device=device))
    ref = _composite_window(rs, z, occ, *full, eps, "relu")
    for backend in ("reference", "native"):
        with ops.use_backend(backend):
            w, acc, t, stop, rounds = march_in_rounds(rs, z, occ, k, eps, "relu")
            one = skipping.composite_window(rs, z, occ, *full, eps, "relu")
        assert rounds > 1 and torch.equal(stop, ref[3])
        if backend == "native":  # the same products in the same order: only acc's sums regroup
            assert torch.equal(w, one[0]) and torch.equal(t, one[2])
        for a, b in zip((w, acc, t), ref[:3]):
            assert_close(a, b, **window_tol(dtype, device))


def test_composite_window_non_contiguous_and_empty(device):
    rs, z, occ, start, end, t0 = window_inputs(97, 24, 3, torch.float32, device, seed=13)
    args = [rs.transpose(0, 1).contiguous().transpose(0, 1), z.t().contiguous().t(), occ.t().contiguous().t(),
            *(torch.stack([a, a], 1)[:, 0] for a in (start, end, t0))]
    assert not any(a.is_contiguous() for a in args)
    assert_window_matches(args, 1e-4, "softplus", device)
    empty = window_inputs(3, 24, 3, torch.float32, device, seed=1)
    nat = native(skipping.composite_window, *(a[:0] for a in empty), 1e-4, "relu")
    assert [tuple(a.shape) for a in nat] == [(0, 24), (0, 4), (0,), (0,)]
    need = torch.rand(50, 9, generator=_gen(2)).to(device).t() < 0.5
    start, alive = torch.zeros(9, dtype=torch.long, device=device), torch.ones(9, dtype=torch.bool, device=device)
    assert torch.equal(native(skipping.march_window, need, start, alive, 2), _march_window(need, start, alive, 2))
    points, grid, lo, hi = grid_inputs(2, 40, 4, torch.float32, device, seed=3)
    assert_grid_matches(points.transpose(0, 1).contiguous().transpose(0, 1), grid.transpose(1, 3), lo.t().contiguous().t(), hi)


def test_outputs_do_not_require_grad():
    rs, z, occ, start, end, t0 = window_inputs(7, 8, 3, torch.float32, "cpu", seed=1)
    rs.requires_grad_(True)
    t0.requires_grad_(True)
    for out in (native(skipping.composite_window, rs, z, occ, start, end, t0, 1e-4, "relu"),
                torch.ops.pigan.composite_window(rs, z, occ, start, end, t0, 1e-4, "relu")):
        assert not any(o.requires_grad for o in out)
    points, grid, lo, hi = grid_inputs(2, 9, 3, torch.float32, "cpu", seed=1)
    points.requires_grad_(True)
    assert not native(skipping.grid_occupied, points, grid, lo, hi).requires_grad
    assert not torch.ops.pigan.grid_occupied(points, grid, lo, hi).requires_grad


def test_raw_ops_pass_opcheck():
    # Schema, fake kernels and autograd registration as torch.compile sees them.
    rs, z, occ, start, end, t0 = window_inputs(7, 8, 3, torch.float32, "cpu", seed=1)
    points, grid, lo, hi = grid_inputs(2, 9, 3, torch.float32, "cpu", seed=1)
    o = torch.ops.pigan
    for op, args in ((o.composite_window.default, (rs, z, occ, start, end, t0, 1e-4, "softplus")),
                     (o.grid_occupied.default, (points, grid, lo, hi)),
                     (o.march_window.default, (occ, start, occ[:, 0].clone(), 2))):
        torch.library.opcheck(op, args)


# ---------------------------------------------------------------- bad input

def _w(R=4, S=5, C=3, dtype=torch.float32):
    """Valid composite_window arguments (without eps and clamp_mode) to spoil one at a time."""
    return [torch.rand(R, S, C + 1, dtype=dtype), torch.rand(R, S, dtype=dtype), torch.ones(R, S, dtype=torch.bool),
            torch.zeros(R, dtype=torch.long), torch.full((R,), S), torch.ones(R, dtype=dtype)]


def _spoil(args, i, value):
    args = list(args)
    args[i] = value
    return args


def _g():
    return [torch.rand(2, 5, 3), torch.ones(2, 4, 4, 4, dtype=torch.bool), torch.zeros(2, 3), torch.ones(2, 3)]


def _m():
    return [torch.ones(4, 5, dtype=torch.bool), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool)]


GRID_BAD = [
    (0, torch.ones(2, 5, 3, dtype=torch.int32), TypeError, "points"),
    (0, torch.rand(2, 5, 2), ValueError, "points"),
    (1, torch.ones(2, 4, 4, 4), TypeError, "grid"),
    (1, torch.ones(2, 4, 4, 3, dtype=torch.bool), ValueError, "grid"),
    (1, torch.ones(3, 4, 4, 4, dtype=torch.bool), ValueError, "grid"),
    (1, torch.ones(2, 0, 0, 0, dtype=torch.bool), ValueError, "grid"),
    (2, torch.zeros(2, 2), ValueError, "lo"),
    (3, torch.ones(2, 3, dtype=torch.long), TypeError, "hi"),
]
MARCH_BAD = [
    (0, torch.ones(4, 5), TypeError, "need"),
    (1, torch.zeros(4, dtype=torch.int32), TypeError, "start"),
    (1, torch.zeros(3, dtype=torch.long), ValueError, "start"),
    (2, torch.ones(5, dtype=torch.bool), ValueError, "alive"),
    (2, torch.ones(4, dtype=torch.uint8), TypeError, "alive"),
]
WINDOW_BAD = [
    (0, torch.rand(4, 5, 1), ValueError, "rgb_sigma"),
    (0, torch.ones(4, 5, 4, dtype=torch.int32), TypeError, "rgb_sigma"),
    (1, torch.rand(4, 6), ValueError, "z_vals"),
    (2, torch.ones(4, 5), TypeError, "occupied"),
    (2, torch.ones(4, 6, dtype=torch.bool), ValueError, "occupied"),
    (3, torch.zeros(4), TypeError, "start"),
    (4, torch.full((5,), 5), ValueError, "end"),
    (5, torch.ones(5), ValueError, "transmittance"),
]


@pytest.mark.parametrize("i,value,exc,match", GRID_BAD)
@pytest.mark.parametrize("how", ["reference", "native", "raw"])
def test_grid_occupied_bad_input(i, value, exc, match, how):
    fn = torch.ops.pigan.grid_occupied if how == "raw" else skipping.grid_occupied
    with raises_on("native" if how == "raw" else how, exc, match):
        fn(*_spoil(_g(), i, value))


@pytest.mark.parametrize("i,value,exc,match", MARCH_BAD + [(3, 0, ValueError, "k"), (3, -2, ValueError, "k")])
@pytest.mark.parametrize("how", ["reference", "native", "raw"])
def test_march_window_bad_input(i, value, exc, match, how):
    fn = torch.ops.pigan.march_window if how == "raw" else skipping.march_window
    with raises_on("native" if how == "raw" else how, exc, match):
        fn(*_spoil(_m() + [2], i, value))


@pytest.mark.parametrize("i,value,exc,match", WINDOW_BAD + [
    (6, 1.0, ValueError, "eps"), (6, -0.1, ValueError, "eps"), (7, "tanh", ValueError, "clamp_mode")])
@pytest.mark.parametrize("how", ["reference", "native", "raw"])
def test_composite_window_bad_input(i, value, exc, match, how):
    fn = torch.ops.pigan.composite_window if how == "raw" else skipping.composite_window
    with raises_on("native" if how == "raw" else how, exc, match):
        fn(*_spoil(_w() + [1e-4, "relu"], i, value))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: skipping.grid_occupied(*_spoil(_g(), 2, torch.zeros(2, 3, device="meta"))), ValueError, "device"),
    (lambda: skipping.march_window(*_m(), 2.0), ValueError, "k"),
    (lambda: skipping.march_window(*_m(), True), ValueError, "k"),
    (lambda: skipping.march_window(*_spoil(_m(), 2, torch.ones(4, dtype=torch.bool, device="meta")), 1),
     ValueError, "device"),
    (lambda: skipping.composite_window(*_spoil(_w(), 4, torch.full((4,), 5, device="meta"))), ValueError, "device"),
    (lambda: skipping.composite_window(*_w(), clamp_mode=None), ValueError, "clamp_mode"),
])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_public_ops_bad_arguments(call, exc, match, backend):
    with raises_on(backend, exc, match):
        call()


@pytest.mark.parametrize("call,exc,match", [
    # Direct calls skip the Python promotion: the C++ wants one floating dtype.
    (lambda o: o.composite_window(*_spoil(_w(), 1, torch.rand(4, 5, dtype=F64)), 1e-4, "relu"), TypeError, "z_vals"),
    (lambda o: o.composite_window(*_spoil(_w(), 5, torch.ones(4, dtype=F64)), 1e-4, "relu"), TypeError,
     "transmittance"),
    (lambda o: o.composite_window(*_w(), 1e-4, "Relu"), ValueError, "clamp_mode"),
    (lambda o: o.grid_occupied(torch.rand(2, 5, 3), torch.ones(2, 4, 4, 4, dtype=torch.bool), torch.zeros(2, 3, 1),
                               torch.ones(2, 3)), ValueError, "lo"),
])
def test_raw_ops_reject_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call(torch.ops.pigan)


@pytest.mark.gpu
def test_raw_ops_reject_mixed_devices():
    o = torch.ops.pigan
    with pytest.raises(ValueError, match="lo must be on cuda"):
        o.grid_occupied(*[t.cuda() if i != 2 else t for i, t in enumerate(_g())])
    with pytest.raises(ValueError, match="alive must be on cuda"):
        o.march_window(*[t.cuda() if i != 2 else t for i, t in enumerate(_m())], 2)
    with pytest.raises(ValueError, match="transmittance must be on cuda"):
        o.composite_window(*[t.cuda() if i != 5 else t for i, t in enumerate(_w())], 1e-4, "relu")
