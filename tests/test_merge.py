"""merge_samples: native merge vs the reference (cat + stable sort), identical values and indices."""
import pytest
import torch

from inputs import coarse_and_fine, raises_on
from pigan import ops
from pigan.ops.sampling import _merge_samples

pytestmark = pytest.mark.usefixtures("poison_outputs")


def native_merge(zc, zf):
    with ops.use_backend("native"):
        return ops.merge_samples(zc, zf)


def check_equal(zc, zf):
    z_ref, i_ref = _merge_samples(zc, zf)
    z_nat, i_nat = native_merge(zc, zf)
    assert z_nat.shape == z_ref.shape and i_nat.shape == i_ref.shape
    assert z_nat.dtype == z_ref.dtype and i_nat.dtype == torch.int64
    assert torch.equal(i_nat, i_ref)
    torch.testing.assert_close(z_nat, z_ref, rtol=0, atol=0, equal_nan=True)
    cat = torch.cat([zf, zc.to(zf.dtype)], -2)
    torch.testing.assert_close(cat.gather(-2, i_nat[..., None]), z_nat, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B,R,S1,S2", [(1, 1, 1, 1), (2, 3, 12, 12), (3, 2, 24, 24), (1, 97, 3, 2),
                                       (2, 2, 97, 24), (97, 1, 24, 97), (2, 24, 2, 3), (2, 300, 48, 48)])
def test_merge_matches_reference(B, R, S1, S2, dtype, device):
    # half depths tie often: the ties must keep fine first, as the stable sort does
    check_equal(*coarse_and_fine(B, R, S1, S2, dtype, device, seed=S1 * 100 + S2))


def test_merge_ties_keep_fine_first():
    zc = torch.tensor([0.1, 0.2, 0.2, 0.3, 0.5]).expand(3, 2, 5)[..., None].contiguous()
    zf = torch.tensor([0.2, 0.5, 0.1, 0.2, 0.0, 0.6]).expand(3, 2, 6)[..., None].contiguous()
    check_equal(zc, zf)


def test_merge_unsorted_coarse_and_nan(device):
    g = torch.Generator().manual_seed(3)
    zc = torch.rand(2, 5, 9, 1, generator=g).to(device)
    zf = torch.rand(2, 5, 7, 1, generator=g).to(device)
    check_equal(zc, zf)
    zf[0, 1, 3] = float("nan")
    zc[1, 2, 4] = float("nan")
    check_equal(zc, zf)
    zc_sorted = torch.sort(zc, -2).values  # NaN last, still "sorted"
    check_equal(zc_sorted, zf)


def test_merge_zero_size_non_contiguous_and_mixed_dtype(device):
    zc, zf = coarse_and_fine(2, 4, 12, 12, torch.float32, device, seed=5)
    check_equal(zc[:0], zf[:0])
    check_equal(zc[:, :, :0], zf)
    check_equal(zc, zf[:, :, :0])
    check_equal(zc.transpose(0, 1).contiguous().transpose(0, 1), zf.transpose(0, 1).contiguous().transpose(0, 1))
    check_equal(zc[:, ::2], zf[:, ::2])
    check_equal(zc.double(), zf)


def test_merge_samples_values_gathers_like_the_twin(device):
    zc, zf = coarse_and_fine(2, 6, 12, 12, torch.float32, device, seed=7)
    coarse = torch.rand(2, 6, 12, 4, device=device)
    fine = torch.rand(2, 6, 12, 4, device=device)
    res = {}
    for backend in ("reference", "native"):
        c, f = coarse.clone().requires_grad_(True), fine.clone().requires_grad_(True)
        with ops.use_backend(backend):
            z_all, values = ops.merge_samples_values(zc, zf, c, f)
        (values * torch.arange(4.0, device=device)).sum().backward()
        res[backend] = (z_all, values.detach(), c.grad, f.grad)
    for a, b in zip(res["native"], res["reference"]):
        assert torch.equal(a, b)
    z_all, idx = ops.merge_samples(zc, zf)  # the values follow the depths' order
    assert torch.equal(res["native"][1], torch.cat([fine, coarse], -2).gather(-2, idx[..., None].expand(-1, -1, -1, 4)))


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_merge_gradients_and_double_backward(backend):
    zc, zf = coarse_and_fine(1, 3, 5, 4, torch.float64, seed=11)
    zc, zf = zc.requires_grad_(True), zf.requires_grad_(True)
    vc = torch.rand(1, 3, 5, 2, dtype=torch.float64, requires_grad=True)
    vf = torch.rand(1, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    with ops.use_backend(backend):
        assert torch.autograd.gradcheck(lambda a, b: ops.merge_samples(a, b)[0], (zc, zf))
        assert torch.autograd.gradgradcheck(lambda a, b: ops.merge_samples(a, b)[0], (zc, zf))
        assert torch.autograd.gradgradcheck(lambda a, b: ops.merge_samples_values(zc, zf, a, b)[1] ** 2, (vc, vf))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.merge_samples_values(torch.rand(2, 3, 4, 1), torch.rand(2, 3, 5, 1), torch.rand(2, 3, 5, 4),
                                      torch.rand(2, 3, 5, 4)), ValueError, "coarse"),
    (lambda: ops.merge_samples_values(torch.rand(2, 3, 4, 1), torch.rand(2, 3, 5, 1), torch.rand(2, 3, 4, 4),
                                      torch.rand(2, 3, 5, 3)), ValueError, "fine"),
    (lambda: ops.merge_samples_values(torch.rand(2, 3, 4, 1), torch.rand(2, 3, 5, 1), torch.rand(2, 3, 4, 4),
                                      torch.ones(2, 3, 5, 4, dtype=torch.int64)), TypeError, "fine"),
])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_merge_values_bad_input(call, exc, match, backend):
    with raises_on(backend, exc, match):
        call()


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
    with raises_on(backend, exc, match):
        call()
