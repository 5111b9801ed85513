// The Python module pigan._C: importing it registers the torch.library ops (torch.ops.pigan.*);
// these bindings only report how it was built and toggle test instrumentation.
#include <string>

#include <ATen/Version.h>
#include <pybind11/pybind11.h>
#if __has_include(<torch/headeronly/version.h>)
#include <torch/headeronly/version.h>
#else
#include <torch/version.h>
#endif

#include "cpu_isa.h"
#ifdef PIGAN_WITH_CUDA
#include "render_cuda.h"
#endif

namespace pigan {
bool& poison_outputs();
bool& sample_pdf_scan_mode();
bool& composite_recompute_mode();
}

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pigan-kernels native ops (C++ CPU kernels; CUDA kernels when built with a toolkit)";
  // A bad PIGAN_CPU_ISA fails the import (pybind11 turns the exception into an ImportError with its
  // message) rather than the first op call in some later thread.
  pigan::cpu_isa();
  m.def("has_cuda", [] {
#ifdef PIGAN_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled into this build.");
  m.def("build_info", [] {
    py::dict d;
#ifdef PIGAN_WITH_CUDA
    d["cuda"] = true;
    d["cuda_runtime_version"] = pigan::cuda::runtime_version();
#else
    d["cuda"] = false;
    d["cuda_runtime_version"] = py::none();
#endif
    d["torch_version"] = std::string(TORCH_VERSION);
    d["cpu_capability"] = at::get_cpu_capability();
    d["cpu_isa"] = pigan::cpu_isa_name(pigan::cpu_isa());
    d["cpu_isa_supported"] = pigan::cpu_isa_supported();
    return d;
  }, "How pigan._C was built: CUDA kernels present, CUDA runtime version, torch version, the ISA level "
     "of pigan's own vectorised CPU loops (cpu_isa) and the levels this CPU supports.");
  m.def("cpu_isa", [] { return std::string(pigan::cpu_isa_name(pigan::cpu_isa())); },
        "The ISA level of pigan's vectorised CPU loops: 'avx512', 'avx2' (AVX2 + FMA) or 'baseline'; the "
        "best the CPU supports unless $PIGAN_CPU_ISA (read once, at import) forces one.");
  m.def("_set_poison_outputs", [](bool on) { pigan::poison_outputs() = on; },
        "Tests: fill every output with NaN (-1 for indices) before the kernels write it.");
  m.def("_poison_outputs", [] { return pigan::poison_outputs(); });
  m.def("_set_composite_recompute", [](bool on) { pigan::composite_recompute_mode() = on; },
        "Tests: run the CUDA kernel's recomputing compositing backward on the CPU.");
  m.def("_set_sample_pdf_scan", [](bool on) { pigan::sample_pdf_scan_mode() = on; },
        "Tests: run the CUDA kernel's per-sample sample_pdf code on the CPU instead of the cdf table.");
}
