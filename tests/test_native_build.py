"""pigan._C is built, registers its ops, and carries the CUDA kernels whenever it could."""
import os
import runpy
from pathlib import Path

import pytest
import torch

import pigan._C as _C
from pigan import ops

OPS = ("composite_fwd", "composite_bwd", "midpoint_fwd", "midpoint_bwd", "sample_pdf", "merge_samples")


SETUP = runpy.run_path(str(Path(__file__).resolve().parents[1] / "setup.py"), run_name="pigan_setup_probe")


def _cuda_wanted():
    """setup.py's own decision for this environment (its toolkit search and version check)."""
    home = SETUP["_find_cuda_home"]()
    no_cuda = os.environ.get("PIGAN_NO_CUDA", "0")
    nvcc = SETUP["_nvcc_version"](home) if home and no_cuda != "1" and torch.version.cuda else None
    return SETUP["cuda_build_decision"](torch.version.cuda, home, nvcc, no_cuda, True)[0]


@pytest.mark.parametrize("torch_cuda,nvcc,want", [
    ("13.0", "13.0", True), ("13.0", "13.2", True), ("12.8", "12.4", True),
    ("12.8", "13.0", False), ("13.0", "12.9", False), ("13.0", None, False)])
def test_cuda_build_needs_matching_toolkit_major(torch_cuda, nvcc, want):
    build, warning = SETUP["cuda_build_decision"](torch_cuda, "/opt/cuda", nvcc, "0", True)
    assert build is want
    if want:
        assert warning is None
    else:
        # One line that says what was found and what is built instead.
        assert "\n" not in warning and "CPU extension only" in warning and "/opt/cuda" in warning
        if nvcc:
            assert f"CUDA {torch_cuda}" in warning and f"CUDA {nvcc}" in warning


@pytest.mark.parametrize("torch_cuda,home,no_cuda,sources", [
    (None, "/opt/cuda", "0", True), ("13.0", None, "0", True), ("13.0", "/opt/cuda", "1", True),
    ("13.0", "/opt/cuda", "0", False)])
def test_cuda_build_skipped_quietly_when_not_asked_for(torch_cuda, home, no_cuda, sources):
    assert SETUP["cuda_build_decision"](torch_cuda, home, "13.0", no_cuda, sources) == (False, None)


def test_nvcc_version_parsed(tmp_path):
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    "echo 'Cuda compilation tools, release 12.8, V12.8.93'\n")
    nvcc.chmod(0o755)
    assert SETUP["_nvcc_version"](str(tmp_path)) == "12.8"
    assert SETUP["_nvcc_version"](str(tmp_path / "missing")) is None


def test_native_backend_available():
    info = ops.available_backends()["native"]
    assert info["available"], info["reason"]
    assert info["cpu"]


def test_ops_registered_with_cpu_kernels():
    for name in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pigan::{name}", "CPU"), name


def test_cuda_kernels_built_whenever_a_toolkit_exists():
    info = _C.build_info()
    assert info["cuda"] == _C.has_cuda()
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    if _cuda_wanted():
        # A CUDA compile break must fail here, not silently give a CPU-only build.
        assert _C.has_cuda(), ("a CUDA toolkit and a CUDA build of torch are present, but pigan._C was "
                               "built without its CUDA kernels")
    if _C.has_cuda():
        assert info["cuda_runtime_version"] > 0
        for name in OPS:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pigan::{name}", "CUDA"), name
        assert ops.available_backends()["native"]["cuda_compiled"]
