"""pigan._C is built, registers its ops, and carries the CUDA kernels whenever it could."""
import glob
import os
import shutil

import torch

import pigan._C as _C
from pigan import ops

OPS = ("composite_fwd", "composite_bwd", "midpoint_fwd", "midpoint_bwd", "sample_pdf", "merge_samples")


def _cuda_toolkit():
    """The toolkit setup.py would find (same search: CUDA_HOME, CUDA_PATH, /usr/local/cuda, nvcc)."""
    for cand in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if cand and os.path.exists(os.path.join(cand, "bin", "nvcc")):
            return cand
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if glob.glob(os.path.join(home, "lib*", "libcudart*")) or glob.glob(
                os.path.join(home, "targets", "*", "lib", "libcudart*")):
            return home
    return None


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
