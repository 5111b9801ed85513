"""Shared test machinery.

* ``@pytest.mark.gpu`` is the one decorator a test that needs CUDA carries: the hook below skips it
  when ``torch.cuda.is_available()`` is False, so ``pytest -m gpu`` selects every GPU test and
  nothing else has to add a ``skipif``.
* ``device``: parametrises a test over ``cpu`` and ``cuda`` (the latter marked ``gpu``).
* ``poison_outputs``: makes the native ops fill their output buffers with NaN before writing, so an
  element a kernel forgets to write shows up in the comparison with the reference twin (the op
  tests use it for every test: ``pytestmark = pytest.mark.usefixtures("poison_outputs")``).
* Input makers, tolerances and the bad-input helper live in ``tests/inputs.py`` (a plain module, so
  that the benchmarks can import them too): ``from inputs import composite_inputs, ...``.
"""
import pytest
import torch

_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def poison_outputs():
    import pigan._C as _C
    _C._set_poison_outputs(True)
    yield
    _C._set_poison_outputs(False)


# ---------------------------------------------------------------------------- fast path vs float64 oracle
def fast_cpu_backends():
    """The fast backends that run on this machine's CPU (triton only under TRITON_INTERPRET=1), as
    parameters; one skipped parameter when there is none."""
    from pigan import ops
    avail = ops.available_backends()
    names = [b for b in ("native", "triton") if avail[b]["cpu"]]
    return names or [pytest.param("native", marks=pytest.mark.skip(reason="no fast CPU backend available"))]


def scaled_error(actual, expected):
    return (actual.double() - expected.double()).abs().max().item() / (expected.abs().max().item() or 1.0)


def assert_close_scaled(actual, expected, tol, msg=""):
    """|actual - expected| <= tol * max|expected|: gradients of a SIREN pass through 8 layers that
    each multiply by freq (~30), so fp32 rounding grows with the tensor's scale, not per element."""
    scale = expected.abs().max().item() or 1.0
    err = scaled_error(actual, expected)
    assert err <= tol, f"{msg}: max error {err:.2e} of max|expected| = {scale:.3g} (allowed {tol:.0e})"


def assert_fast_as_accurate(exact, ref, fast, backend, ref_tol):
    """Dicts of outputs and grads: the fast path is as accurate as pi-GAN's fp32 computation (both
    measured against the float64 oracle ``exact``), and close to it."""
    assert set(fast) == set(exact)
    for k in exact:
        ref_err = scaled_error(ref[k], exact[k])
        assert ref_err <= ref_tol, f"reference {k}: fp32 error {ref_err:.2e}"
        assert_close_scaled(fast[k], exact[k], 2 * ref_err + 1e-5, f"{backend} {k}")
        assert_close_scaled(fast[k], ref[k], 1e-4, f"{backend} vs reference {k}")
