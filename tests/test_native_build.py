"""pigan._C is built, registers its ops, and carries the CUDA kernels whenever it could."""
import os
import runpy
from pathlib import Path

import torch

import pigan._C as _C
from pigan import ops

OPS = ("composite_fwd", "composite_bwd", "midpoint_fwd", "midpoint_bwd", "sample_pdf", "merge_samples")


def _cuda_toolkit():
    """The toolkit setup.py finds: its own search, loaded without running the build."""
    setup_py = Path(__file__).resolve().parents[1] / "setup.py"
    return runpy.run_path(str(setup_py), run_name="pigan_setup_probe")["_find_cuda_home"]()


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
    want_cuda = (os.environ.get("PIGAN_NO_CUDA", "0") != "1" and torch.version.cuda is not None
                 and _cuda_toolkit() is not None)
    if want_cuda:
        # A CUDA compile break must fail here, not silently give a CPU-only build.
        assert _C.has_cuda(), ("a CUDA toolkit and a CUDA build of torch are present, but pigan._C was "
                               "built without its CUDA kernels")
    if _C.has_cuda():
        assert info["cuda_runtime_version"] > 0
        for name in OPS:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pigan::{name}", "CUDA"), name
        assert ops.available_backends()["native"]["cuda_compiled"]
