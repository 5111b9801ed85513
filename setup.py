"""Build of pigan-kernels: the pure-Python packages plus one extension, ``pigan._C``.

C++ CPU sources (csrc/*.cpp) are always compiled. CUDA sources (csrc/*.cu) are compiled whenever a
CUDA toolkit is found, torch is a CUDA build and the toolkit's major version (``nvcc --version``)
matches torch's (``torch.version.cuda``), with or without a GPU present; on a major mismatch the CPU
extension is built with one warning. ``PIGAN_NO_CUDA=1`` skips the CUDA sources. Build with
``pip install --no-build-isolation -e .`` so the extension is compiled against the torch it will run
with.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_namespace_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home():
    for cand in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if cand and os.path.exists(os.path.join(cand, "bin", "nvcc")):
            return cand
    nvcc = shutil.which("nvcc")
    if nvcc:
        # /usr/local/bin/nvcc is often a wrapper; prefer the toolkit that has lib64/libcudart.
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if glob.glob(os.path.join(home, "lib*", "libcudart*")) or glob.glob(
                os.path.join(home, "targets", "*", "lib", "libcudart*")):
            return home
    return None


def _nvcc_version(cuda_home):
    """The toolkit's "MAJOR.MINOR" from ``nvcc --version``, or None when nvcc does not answer."""
    try:
        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def cuda_build_decision(torch_cuda, cuda_home, nvcc_version, no_cuda_env, has_cu_sources):
    """(build the CUDA sources?, warning or None).

    torch_cuda: ``torch.version.cuda`` ("13.0", None for a CPU build of torch); cuda_home: the toolkit
    found (or None); nvcc_version: its ``nvcc --version`` release ("13.0", None if nvcc failed);
    no_cuda_env: ``PIGAN_NO_CUDA``'s value. Only a toolkit that is present but unusable warns: a CUDA
    build against a different major version than torch's fails to link or to load, so the CPU
    extension is built instead.
    """
    if no_cuda_env == "1" or torch_cuda is None or cuda_home is None or not has_cu_sources:
        return False, None
    if nvcc_version is None:
        return False, (f"pigan-kernels: nvcc in {cuda_home} did not report its version; building the "
                       f"CPU extension only (no CUDA kernels)")
    if nvcc_version.split(".")[0] != str(torch_cuda).split(".")[0]:
        return False, (f"pigan-kernels: torch was built with CUDA {torch_cuda} but the toolkit in "
                       f"{cuda_home} is CUDA {nvcc_version}; building the CPU extension only (no CUDA "
                       f"kernels). Point CUDA_HOME at a CUDA {str(torch_cuda).split('.')[0]}.x toolkit "
                       f"to build them.")
    return True, None


def _packages():
    """pigan and every folder below it, plus the Triton kernels' folder ``kernels/`` and its subfolders
    installed under ``pigan.kernels`` (never as a top-level ``kernels``). Found rather than listed so
    that a subpackage added later ships in wheels too; namespace discovery so that one lacking an
    ``__init__.py``, which the editable install would still import, ships as well."""
    def below(folder, prefix):
        found = find_namespace_packages(os.path.join(ROOT, folder), exclude=["__pycache__", "*.__pycache__"])
        return [prefix] + [f"{prefix}.{name}" for name in found]
    return below("pigan", "pigan") + below("kernels", "pigan.kernels")


def _extensions():
    import torch
    from torch.utils import cpp_extension

    cpp_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cu_sources = sorted(glob.glob(os.path.join("csrc", "*.cu")))
    cuda_home = _find_cuda_home()
    no_cuda = os.environ.get("PIGAN_NO_CUDA", "0")
    probe = cuda_home and no_cuda != "1" and torch.version.cuda is not None
    want_cuda, warning = cuda_build_decision(
        torch.version.cuda, cuda_home, _nvcc_version(cuda_home) if probe else None, no_cuda,
        bool(cu_sources))
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp"] if os.name != "nt" else ["/O2", "/std:c++20"]
    define_macros = [("PIGAN_BUILD_EXTENSION", None)]
    if want_cuda:
        # torch reads CUDA_HOME at import of cpp_extension; make sure it sees the real toolkit.
        os.environ["CUDA_HOME"] = cuda_home
        cpp_extension.CUDA_HOME = cuda_home
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;8.6;8.9;9.0+PTX"
        define_macros.append(("PIGAN_WITH_CUDA", None))
        ext = cpp_extension.CUDAExtension(
            name="pigan._C",
            sources=cpp_sources + cu_sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "--use_fast_math"
                         if os.environ.get("PIGAN_FAST_MATH") == "1" else "-lineinfo"],
            },
            extra_link_args=["-fopenmp"] if os.name != "nt" else [],
        )
    else:
        ext = cpp_extension.CppExtension(
            name="pigan._C",
            sources=cpp_sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"] if os.name != "nt" else [],
        )
    return [ext], cpp_extension.BuildExtension.with_options(use_ninja=True)


if __name__ == "__main__":  # pip (setuptools' build backend) runs this file as __main__; tests import it
    ext_modules, build_ext = _extensions()
    setup(
        packages=_packages(),
        package_dir={"pigan": "pigan", "pigan.kernels": "kernels"},
        ext_modules=ext_modules,
        cmdclass={"build_ext": build_ext},
    )
