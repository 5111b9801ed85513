"""Backend selection: use_backend, $PIGAN_BACKEND, available_backends, errors and the fallback warning."""
import importlib
import threading
import time
import warnings

import pytest
import torch

from pigan import ops
from pigan.ops import _autograd, _backend, compositing, sampling


def chosen(op_table, device="cpu"):
    return _backend.select("op", torch.device(device), op_table)[0]


def test_auto_picks_native_on_cpu(monkeypatch):
    monkeypatch.delenv("PIGAN_BACKEND", raising=False)
    assert chosen(compositing.COMPOSITE.impls) == "native"
    assert chosen(sampling.SAMPLE_PDF.impls) == "native"
    assert chosen(sampling.MERGE.impls) == "native"
    assert chosen(compositing.MIDPOINT.impls) == "native"


def test_use_backend_nests_and_restores():
    assert ops.current_backend() in _backend.BACKENDS
    outer = ops.current_backend()
    with ops.use_backend("reference"):
        assert chosen(compositing.COMPOSITE.impls) == "reference"
        with ops.use_backend("native"):
            assert chosen(compositing.COMPOSITE.impls) == "native"
        assert ops.current_backend() == "reference"
    assert ops.current_backend() == outer


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("PIGAN_BACKEND", "reference")
    assert ops.current_backend() == "reference"
    assert chosen(compositing.COMPOSITE.impls) == "reference"
    with ops.use_backend("native"):  # the context manager wins over the environment
        assert chosen(compositing.COMPOSITE.impls) == "native"
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
    assert chosen(compositing.COMPOSITE.impls, "meta") == "reference"
    with ops.use_backend("native"):
        with pytest.raises(RuntimeError, match="cannot run meta tensors"):
            chosen(compositing.COMPOSITE.impls, "meta")


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
        assert chosen(compositing.COMPOSITE.impls) == "reference"
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


def test_set_default_backend_is_process_wide_and_use_backend_thread_local(monkeypatch):
    monkeypatch.delenv("PIGAN_BACKEND", raising=False)
    seen = {}
    barrier = threading.Barrier(2)

    def worker(name, inner):
        def run():
            if inner is None:
                barrier.wait()
                seen[name] = ops.current_backend()
                barrier.wait()
            else:
                with ops.use_backend(inner):
                    barrier.wait()  # both threads inside their blocks at once
                    seen[name] = ops.current_backend()
                    barrier.wait()
        return threading.Thread(target=run)

    try:
        ops.set_default_backend("reference")
        assert ops.current_backend() == "reference"
        threads = [worker("plain", None), worker("scoped", "native")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # the other thread's use_backend did not leak; the process-wide default reached both
        assert seen == {"plain": "reference", "scoped": "native"}
        with pytest.raises(ValueError, match="backend must be one of"):
            ops.set_default_backend("fastest")
    finally:
        ops.set_default_backend(None)
    assert ops.current_backend() == "auto"


def test_native_module_loads_once_under_concurrent_first_use(monkeypatch):
    """Threads that ask for pigan._C while another thread is importing it wait for the import:
    none sees it missing, and the import and its registration hooks run once."""
    real_import = importlib.import_module
    calls = []

    def slow_import(name, *args, **kwargs):
        if name == "pigan._C":
            calls.append(name)
            time.sleep(0.2)  # a slow first import: the other threads arrive meanwhile
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(_backend.importlib, "import_module", slow_import)
    monkeypatch.setattr(_backend, "_native", None)
    monkeypatch.setattr(_backend, "_native_error", None)
    monkeypatch.setattr(_backend, "_native_loaded", False)
    hook_runs = []
    monkeypatch.setattr(_backend, "_native_hooks", [lambda: hook_runs.append(1)])
    results, errors = [], []

    def use():
        try:
            with ops.use_backend("native"):
                rgb, _, _ = ops.composite(torch.rand(1, 2, 4, 4), torch.sort(torch.rand(1, 2, 4, 1), 2).values)
            results.append(_backend.select("op", torch.device("cpu"), compositing.COMPOSITE.impls)[0])
        except Exception as exc:  # noqa: BLE001 -- collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == ["native"] * 6
    assert calls == ["pigan._C"] and hook_runs == [1]


def test_auto_under_concurrent_first_use_never_falls_back(monkeypatch):
    monkeypatch.delenv("PIGAN_BACKEND", raising=False)
    real_import = importlib.import_module

    def slow_import(name, *args, **kwargs):
        if name == "pigan._C":
            time.sleep(0.2)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(_backend.importlib, "import_module", slow_import)
    monkeypatch.setattr(_backend, "_native", None)
    monkeypatch.setattr(_backend, "_native_loaded", False)
    monkeypatch.setattr(_backend, "_native_hooks", [])
    chosen_names = []
    threads = [threading.Thread(target=lambda: chosen_names.append(chosen(compositing.COMPOSITE.impls)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert chosen_names == ["native"] * 4


def test_op_tables_belong_to_their_modules():
    # Each op module owns its table; importing pigan.ops registers fakes and autograd of the raw ops.
    from pigan.ops import sampling as smp
    assert compositing.COMPOSITE.impls["native"] is compositing._composite_native
    assert smp.MERGE.impls["native"] is smp._merge_native
    assert set(smp.SAMPLE_PDF.impls) == {"reference", "native"}
    with pytest.raises(ValueError, match="unknown backends"):
        _backend.Op("x", reference=lambda: None, cuda=lambda: None)


def _double_backward_cases():
    """(op, args, leaves) per op whose native backward recomputes the twin under create_graph=True."""
    from inputs import composite_inputs
    g = torch.Generator().manual_seed(11)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()

    rs, z = composite_inputs(2, 3, 6, 3, torch.float64, seed=5)
    rs.requires_grad_()
    noise = rand(2, 3, 6, 1, scale=0.5)
    x, w, b, f, p = rand(2, 5, 3), rand(4, 3), rand(4), rand(2, 4, scale=2), rand(2, 4)
    ws, fs, ps = [rand(4, 3), rand(5, 4)], [rand(2, 4, scale=2), rand(2, 5)], [rand(2, 4), rand(2, 5)]
    return {
        "composite": (ops.composite, (rs, z, noise, "softplus", True, True), [rs, noise]),
        "composite_midpoint": (ops.composite_midpoint, (rs, z, "softplus", True), [rs]),
        "film_siren": (ops.film_siren, ((x[..., :1], x[..., 1:]), w, b, f, p), [x, w, b, f, p]),
        "film_siren_stack": (ops.film_siren_stack, (x, ws, [b, None], fs, ps), [x, *ws, b, *fs, *ps]),
    }


@pytest.mark.parametrize("name", ["composite", "composite_midpoint", "film_siren", "film_siren_stack"])
def test_create_graph_backward_is_the_twins(name, monkeypatch):
    """Every native backward follows the one rule of _autograd.twin_grads: under create_graph=True its
    gradients, and their derivatives, are exactly the reference twin's."""
    if not _backend.backend_status("native", "cpu")[0]:
        pytest.skip("the native backend is unavailable")
    op, args, leaves = _double_backward_cases()[name]
    calls = []
    twin_grads = _autograd.twin_grads
    monkeypatch.setattr(_autograd, "twin_grads", lambda *a: calls.append(1) or twin_grads(*a))
    results = {}
    for backend in ("native", "reference"):
        with ops.use_backend(backend):
            outs = op(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        cots = [torch.ones_like(o) for o in outs]
        grads = torch.autograd.grad(outs, leaves, cots, create_graph=True)
        penalty = sum((gr ** 2).sum() for gr in grads)
        results[backend] = (grads, torch.autograd.grad(penalty, leaves))
    assert calls, f"{name}'s native backward did not go through _autograd.twin_grads"
    for got, want in zip(results["native"], results["reference"]):
        for a, r in zip(got, want):
            assert torch.equal(a, r)
