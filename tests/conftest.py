"""Shared test machinery.

* ``@pytest.mark.gpu`` is the one decorator a test that needs CUDA carries: the hook below skips it
  when ``torch.cuda.is_available()`` is False, so ``pytest -m gpu`` selects every GPU test and
  nothing else has to add a ``skipif``.
* ``device``: parametrises a test over ``cpu`` and ``cuda`` (the latter marked ``gpu``).
* ``poison_outputs``: makes the native ops fill their output buffers with NaN before writing, so an
  element a kernel forgets to write shows up in the comparison with the reference twin.
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
