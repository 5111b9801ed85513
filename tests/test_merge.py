"""merge_samples: native merge vs the reference (cat + stable sort), identical values and indices."""
import pytest
import torch

import pigan._C as _C
from pigan import ops
from pigan.ops.sampling import _merge_samples, _sample_pdf


@pytest.fixture(autouse=True)
def poison_outputs():
    _C._set_poison_outputs(True)
    yield
    _C._set_poison_outputs(False)


def native_merge(zc, zf):
    with ops.use_backend("native"):
        return ops.merge_samples(zc, zf)


def coarse_and_fine(B, R, S1, S2, dtype, seed=0):
    """Coarse: sorted, jittered linspace (as pi-GAN); fine: stratified sample_pdf (unsorted)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.linspace(0.88, 1.12, S1, dtype=torch.float64).expand(B, R, S1)
    if S1 > 1:
        z = z + (torch.rand(B, R, S1, generator=g, dtype=torch.float64) - 0.5) * 0.24 / (S1 - 1)
    z = z.to(dtype)
    if S1 < 3:
        fine = torch.rand(B, R, S2, generator=g, dtype=torch.float64).to(dtype) * 0.3 + 0.85
        return z[..., None], fine[..., None]
    mids = 0.5 * (z[..., 1:] + z[..., :-1]).reshape(B * R, S1 - 1)
    w = torch.rand(B * R, S1 - 2, generator=g, dtype=torch.float64).to(dtype)
    fine = _sample_pdf(mids, w, S2, u=torch.rand(B * R, S2, generator=g, dtype=torch.float64).to(dtype))
    return z[..., None], fine.reshape(B, R, S2, 1)


def check_equal(zc, zf):
    z_ref, i_ref = _merge_samples(zc, zf)
    z_nat, i_nat = native_merge(zc, zf)
    assert z_nat.shape == z_ref.shape and i_nat.shape == i_ref.shape
    assert z_nat.dtype == z_ref.dtype and i_nat.dtype == torch.int64
    assert torch.equal(i_nat, i_ref)
    torch.testing.assert_close(z_nat, z_ref, rtol=0, atol=0, equal_nan=True)
    cat = torch.cat([zf, zc.to(zf.dtype)], -2)
    torch.testing.assert_close(cat.gather(-2, i_nat[..., None]), z_nat, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,R,S1,S2", [(1, 1, 1, 1), (2, 3, 12, 12), (3, 2, 24, 24), (1, 97, 3, 2),
                                       (2, 2, 97, 24), (97, 1, 24, 97), (2, 24, 2, 3)])
def test_merge_matches_reference(B, R, S1, S2, dtype):
    check_equal(*coarse_and_fine(B, R, S1, S2, dtype, seed=S1 * 100 + S2))


def test_merge_ties_keep_fine_first():
    zc = torch.tensor([0.1, 0.2, 0.2, 0.3, 0.5]).expand(3, 2, 5)[..., None].contiguous()
    zf = torch.tensor([0.2, 0.5, 0.1, 0.2, 0.0, 0.6]).expand(3, 2, 6)[..., None].contiguous()
    check_equal(zc, zf)


def test_merge_unsorted_coarse_and_nan():
    g = torch.Generator().manual_seed(3)
    zc = torch.rand(2, 5, 9, 1, generator=g)
    zf = torch.rand(2, 5, 7, 1, generator=g)
    check_equal(zc, zf)
    zf[0, 1, 3] = float("nan")
    zc[1, 2, 4] = float("nan")
    check_equal(zc, zf)
    zc_sorted = torch.sort(zc, -2).values  # NaN last, still "sorted"
    check_equal(zc_sorted, zf)


def test_merge_zero_size_non_contiguous_and_mixed_dtype():
    zc, zf = coarse_and_fine(2, 4, 12, 12, torch.float32, seed=5)
    check_equal(zc[:0], zf[:0])
    check_equal(zc[:, :, :0], zf)
    check_equal(zc, zf[:, :, :0])
    check_equal(zc.transpose(0, 1).contiguous().transpose(0, 1), zf.transpose(0, 1).contiguous().transpose(0, 1))
    check_equal(zc[:, ::2], zf[:, ::2])
    check_equal(zc.double(), zf)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.merge_samples(torch.rand(2, 3, 4), torch.rand(2, 3, 4, 1)), ValueError, "z_coarse"),
    (lambda: ops.merge_samples(torch.rand(2, 3, 4, 1), torch.rand(2, 4, 4, 1)), ValueError, "z_coarse"),
    (lambda: ops.merge_samples(torch.rand(2, 3, 4, 2), torch.rand(2, 3, 4, 1)), ValueError, "z_coarse"),
    (lambda: ops.merge_samples(torch.ones(2, 3, 4, 1, dtype=torch.int64), torch.rand(2, 3, 4, 1)), TypeError,
     "z_coarse"),
    (lambda: ops.merge_samples(torch.rand(2, 3, 4, 1), torch.rand(2, 3, 4, 1).to("meta")), ValueError, "device"),
])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_merge_bad_input(call, exc, match, backend):
    with ops.use_backend(backend), pytest.raises(exc, match=match):
        call()
