"""Build of pigan-kernels: the pure-Python packages plus one extension, ``pigan._C``.

C++ CPU sources (csrc/*.cpp) are always compiled. CUDA sources (csrc/*.cu) are compiled whenever a
CUDA toolkit is found and torch is a CUDA build, with or without a GPU present; ``PIGAN_NO_CUDA=1``
skips them. Build with ``pip install --no-build-isolation -e .`` so the extension is compiled against
the torch it will run with.
"""
import glob
import os
import shutil

from setuptools import setup

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


def _extensions():
    import torch
    from torch.utils import cpp_extension

    cpp_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cu_sources = sorted(glob.glob(os.path.join("csrc", "*.cu")))
    cuda_home = _find_cuda_home()
    want_cuda = (
        os.environ.get("PIGAN_NO_CUDA", "0") != "1"
        and torch.version.cuda is not None
        and cuda_home is not None
        and bool(cu_sources)
    )
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
        packages=["pigan", "pigan.ops", "pigan.kernels"],
        package_dir={"pigan": "pigan", "pigan.kernels": "kernels"},
        ext_modules=ext_modules,
        cmdclass={"build_ext": build_ext},
    )
