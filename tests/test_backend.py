"""Backend selection: use_backend, $PIGAN_BACKEND, available_backends, errors and the fallback warning."""
import importlib
import warnings

import pytest
import torch

from pigan import ops
from pigan.ops import _backend, compositing, sampling


def chosen(op_table, device="cpu"):
    return _backend.select("op", torch.device(device), op_table)[0]


def test_auto_picks_native_on_cpu(monkeypatch):
    monkeypatch.delenv("PIGAN_BACKEND", raising=False)
    assert chosen(compositing._COMPOSITE_IMPLS) == "native"
    assert chosen(sampling._SAMPLE_PDF_IMPLS) == "native"
    assert chosen(sampling._MERGE_IMPLS) == "native"
    assert chosen(compositing._MIDPOINT_IMPLS) == "native"


def test_use_backend_nests_and_restores():
    assert ops.current_backend() in _backend.BACKENDS
    outer = ops.current_backend()
    with ops.use_backend("reference"):
        assert chosen(compositing._COMPOSITE_IMPLS) == "reference"
        with ops.use_backend("native"):
            assert chosen(compositing._COMPOSITE_IMPLS) == "native"
        assert ops.current_backend() == "reference"
    assert ops.current_backend() == outer


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("PIGAN_BACKEND", "reference")
    assert ops.current_backend() == "reference"
    assert chosen(compositing._COMPOSITE_IMPLS) == "reference"
    with ops.use_backend("native"):  # the context manager wins over the environment
        assert chosen(compositing._COMPOSITE_IMPLS) == "native"
    monkeypatch.setenv("PIGAN_BACKEND", "fastest")
    with pytest.raises(ValueError, match="PIGAN_BACKEND"):
        ops.current_backend()


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        with ops.use_backend("cuda"):
            pass


def test_available_backends_report():
    report = ops.available_backends()
    assert set(report) == {"reference", "native", "triton"}
    for entry in report.values():
        assert set(entry) >= {"available", "reason", "cpu", "cuda"}
        assert entry["available"] or isinstance(entry["reason"], str) and entry["reason"]
    assert report["reference"]["available"] and report["native"]["available"]


def test_devices_without_native_kernels(monkeypatch):
    monkeypatch.delenv("PIGAN_BACKEND", raising=False)
    # No native kernels for the meta device: auto falls back, an explicit choice is an error saying why.
    assert chosen(compositing._COMPOSITE_IMPLS, "meta") == "reference"
    with ops.use_backend("native"):
        with pytest.raises(RuntimeError, match="cannot run meta tensors"):
            chosen(compositing._COMPOSITE_IMPLS, "meta")


@pytest.fixture
def broken_native(monkeypatch):
    """pigan._C failing to import, as after a torch upgrade without a rebuild."""
    real_import = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "pigan._C":
            raise ImportError("undefined symbol: _ZN2at6Tensor4fakeEv")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(_backend.importlib, "import_module", fake_import)
    monkeypatch.setattr(_backend, "_native", None)
    monkeypatch.setattr(_backend, "_native_error", None)
    monkeypatch.setattr(_backend, "_native_loaded", False)


def test_fallback_warns_once_and_uses_reference(broken_native, monkeypatch):
    monkeypatch.delenv("PIGAN_BACKEND", raising=False)
    rgb_sigma, z = torch.rand(1, 2, 4, 4), torch.sort(torch.rand(1, 2, 4, 1), 2).values
    with pytest.warns(RuntimeWarning, match="pigan._C failed to import.*undefined symbol"):
        out = ops.composite(rgb_sigma, z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only
        again = ops.composite(rgb_sigma, z)
        assert chosen(compositing._COMPOSITE_IMPLS) == "reference"
    ref = compositing._composite(rgb_sigma, z)
    for a, b, c in zip(out, again, ref):
        assert torch.equal(a, c) and torch.equal(b, c)
    report = ops.available_backends()["native"]
    assert not report["available"] and "undefined symbol" in report["reason"]


def test_explicit_unavailable_backend_is_an_error(broken_native):
    with pytest.warns(RuntimeWarning):
        with pytest.raises(RuntimeError, match="'native' is unavailable: pigan._C failed to import"):
            with ops.use_backend("native"):
                pass
