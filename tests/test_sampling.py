"""Importance sampling (sample_pdf): native vs reference, bit-exact on CPU for the same uniforms."""
import pytest
import torch

import pigan._C as _C
from pigan import ops
from pigan.ops.sampling import _sample_pdf


@pytest.fixture(autouse=True, params=["cdf-table", "per-sample-scan"])
def poison_outputs(request):
    # "per-sample-scan" runs, on the CPU, the per-sample code path of the CUDA kernel.
    _C._set_poison_outputs(True)
    _C._set_sample_pdf_scan(request.param == "per-sample-scan")
    yield
    _C._set_poison_outputs(False)
    _C._set_sample_pdf_scan(False)


def make_bins_weights(N, M, dtype, seed=0, zero_rows=()):
    g = torch.Generator().manual_seed(seed)
    bins = torch.sort(torch.rand(N, M + 1, generator=g, dtype=torch.float64), -1).values * 0.24 + 0.88
    weights = torch.rand(N, M, generator=g, dtype=torch.float64) ** 3
    weights[list(zero_rows)] = 0
    return bins.to(dtype), weights.to(dtype)


def native_sample_pdf(*args, **kwargs):
    with ops.use_backend("native"):
        return ops.sample_pdf(*args, **kwargs)


# M covers the scalar and the vectorised branches of torch's CPU sum (vectors of 8 / 16 lanes).
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("N,M,K", [(1, 1, 1), (2, 3, 12), (97, 10, 12), (24, 22, 24), (3, 16, 5), (5, 33, 97),
                                   (7, 97, 24), (2, 130, 3), (4, 1100, 7)])
def test_sample_pdf_det_exact(N, M, K, dtype):
    bins, weights = make_bins_weights(N, M, dtype, seed=N + M, zero_rows=[0])
    ref = _sample_pdf(bins, weights, K, det=True)
    nat = native_sample_pdf(bins, weights, K, det=True)
    assert nat.dtype == ref.dtype and nat.shape == (N, K)
    assert torch.equal(nat, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("N,M,K", [(97, 10, 12), (24, 22, 24), (2, 1, 5), (3, 24, 97)])
def test_sample_pdf_stratified_same_uniforms_exact(N, M, K, dtype):
    bins, weights = make_bins_weights(N, M, dtype, seed=K)
    u = torch.rand(N, K, dtype=dtype)
    u[0, 0], u[-1, -1] = 0.0, 1.0  # the edges of the cdf
    ref = _sample_pdf(bins, weights, K, u=u)
    nat = native_sample_pdf(bins, weights, K, u=u)
    assert torch.equal(nat, ref)


def test_sample_pdf_reproducible_under_seed():
    bins, weights = make_bins_weights(64, 10, torch.float32, seed=1)
    torch.manual_seed(42)
    ref = _sample_pdf(bins, weights, 12)
    torch.manual_seed(42)
    nat = native_sample_pdf(bins, weights, 12)
    torch.manual_seed(42)
    again = native_sample_pdf(bins, weights, 12)
    assert torch.equal(nat, ref) and torch.equal(nat, again)
    assert not torch.equal(nat, native_sample_pdf(bins, weights, 12))  # a fresh draw differs


@pytest.mark.parametrize("det", [True, False])
def test_sample_pdf_all_zero_weights_and_single_bin(det):
    bins, weights = make_bins_weights(6, 10, torch.float32, seed=2, zero_rows=range(6))
    torch.manual_seed(0)
    ref = _sample_pdf(bins, weights, 9, det=det)
    torch.manual_seed(0)
    nat = native_sample_pdf(bins, weights, 9, det=det)
    assert torch.equal(nat, ref)
    # all-zero weights: the pdf is uniform in the bin index
    bins1, weights1 = make_bins_weights(6, 1, torch.float64, seed=3)
    torch.manual_seed(1)
    ref1 = _sample_pdf(bins1, weights1, 5, det=det)
    torch.manual_seed(1)
    nat1 = native_sample_pdf(bins1, weights1, 5, det=det)
    assert torch.equal(nat1, ref1)
    assert ((nat1 >= bins1[:, :1]) & (nat1 <= bins1[:, 1:])).all()


def test_sample_pdf_non_contiguous_and_zero_size():
    bins, weights = make_bins_weights(40, 21, torch.float32, seed=4)
    b, w = bins.t().contiguous().t()[::2], weights.t().contiguous().t()[::2, 1:-1]
    b = b[:, 1:-1]
    assert not b.is_contiguous() and not w.is_contiguous()
    assert torch.equal(native_sample_pdf(b, w, 12, det=True), _sample_pdf(b, w, 12, det=True))
    assert native_sample_pdf(bins[:0], weights[:0], 12, det=True).shape == (0, 12)
    assert native_sample_pdf(bins, weights, 0, det=True).shape == (40, 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sample_pdf_half_dtypes_on_cpu(dtype):
    bins, weights = make_bins_weights(16, 10, dtype, seed=5)
    ref = _sample_pdf(bins.float(), weights.float(), 12, det=True)
    nat = native_sample_pdf(bins, weights, 12, det=True)
    assert nat.dtype == dtype
    torch.testing.assert_close(nat.float(), ref, rtol=1e-2, atol=1e-2)


def test_sample_pdf_not_differentiable_inputs_are_detached():
    bins, weights = make_bins_weights(4, 10, torch.float32, seed=6)
    weights.requires_grad_(True)
    out = native_sample_pdf(bins, weights, 12, det=True)
    assert not out.requires_grad


def _bw(n=4, m=10, dtype=torch.float32):
    return make_bins_weights(n, m, dtype)


@pytest.mark.parametrize("call,exc,match", [
    (lambda s: s(_bw()[0][0], _bw()[1], 12), ValueError, "bins"),
    (lambda s: s(_bw()[0], _bw()[1][None], 12), ValueError, "weights"),
    (lambda s: s(_bw()[0], _bw(4, 9)[1], 12), ValueError, "bins"),
    (lambda s: s(_bw()[0], _bw(5, 10)[1], 12), ValueError, "bins"),
    (lambda s: s(_bw()[0].long(), _bw()[1], 12), TypeError, "bins"),
    (lambda s: s(_bw()[0], _bw()[1].int(), 12), TypeError, "weights"),
    (lambda s: s(_bw()[0], _bw()[1].to("meta"), 12), ValueError, "device"),
    (lambda s: s(_bw()[0], _bw()[1], -1), ValueError, "N_importance"),
    (lambda s: s(_bw()[0], _bw()[1], 2.5), ValueError, "N_importance"),
    (lambda s: s(_bw()[0], _bw()[1], 12, u=torch.rand(4, 11)), ValueError, "u"),
    (lambda s: s(_bw()[0], _bw()[1], 12, u=torch.ones(4, 12, dtype=torch.int64)), TypeError, "u"),
    (lambda s: s(torch.rand(4, 1), torch.rand(4, 0), 12), ValueError, "weights"),
])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_sample_pdf_bad_input(call, exc, match, backend):
    with ops.use_backend(backend), pytest.raises(exc, match=match):
        call(ops.sample_pdf)


def test_raw_native_sample_pdf_rejects_bad_input():
    o = torch.ops.pigan
    with pytest.raises(ValueError, match="bins"):
        o.sample_pdf(torch.rand(4, 10), torch.rand(4, 10), torch.rand(4, 3), 1e-5)
    with pytest.raises(TypeError, match="u"):
        o.sample_pdf(torch.rand(4, 11), torch.rand(4, 10), torch.rand(4, 3, dtype=torch.float64), 1e-5)
