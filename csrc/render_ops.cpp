// Schemas of the rendering ops of pigan._C (torch.library, namespace "pigan"). Other files add
// their own ops to the same namespace with TORCH_LIBRARY_FRAGMENT, so no file may use
// TORCH_LIBRARY(pigan, ...). Device kernels are registered in render_cpu.cpp / skipping_cpu.cpp /
// render_cuda.cpp.
#include <limits>

#include <ATen/ATen.h>
#include <torch/library.h>

#include "render_checks.h"

namespace pigan {

bool& poison_outputs() {
  static bool flag = false;
  return flag;
}

bool& composite_recompute_mode() {
  static bool flag = false;
  return flag;
}

bool& sample_pdf_scan_mode() {
  static bool flag = false;
  return flag;
}

at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  at::Tensor t = at::empty(sizes, opts);
  if (poison_outputs()) {
    if (at::isFloatingType(t.scalar_type())) {
      t.fill_(std::numeric_limits<double>::quiet_NaN());
    } else {
      t.fill_(-1);
    }
  }
  return t;
}

}  // namespace pigan

TORCH_LIBRARY_FRAGMENT(pigan, m) {
  // clamp_mode: 0 relu, 1 softplus (midpoint: 1 softplus(sigma - 1), 2 none);
  // fill_mode: 0 none, 1 debug, 2 weight.
  m.def("composite_fwd(Tensor rgb_sigma, Tensor z_vals, Tensor? noise, int clamp_mode, "
        "bool last_back, bool white_back, int fill_mode) -> (Tensor, Tensor, Tensor)");
  m.def("composite_bwd(Tensor grad_rgb, Tensor grad_depth, Tensor grad_weights, Tensor rgb_sigma, "
        "Tensor z_vals, Tensor? noise, int clamp_mode, bool last_back, bool white_back, "
        "int fill_mode) -> Tensor");
  m.def("midpoint_fwd(Tensor rgb_sigma, Tensor z_vals, int clamp_mode, bool white_back) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("midpoint_bwd(Tensor grad_rgb, Tensor grad_depth, Tensor grad_weights, Tensor rgb_sigma, "
        "Tensor z_vals, int clamp_mode, bool white_back) -> Tensor");
  // total: optional per-ray sum of (weights + eps) computed by torch. The CPU kernel reproduces the
  // summation order of torch's CPU sum for row-major weights itself; for other layouts torch sums in
  // another order, and passing torch's total keeps the samples bit-identical. CUDA checks it like
  // the CPU does but sums each row itself.
  m.def("sample_pdf(Tensor bins, Tensor weights, Tensor u, float eps, Tensor? total=None) -> Tensor");
  m.def("merge_samples(Tensor z_coarse, Tensor z_fine) -> (Tensor, Tensor)");
  // Empty-space skipping (pigan/ops/skipping.py). No gradients: the Python module registers autograd
  // that marks every output non-differentiable.
  m.def("grid_occupied(Tensor points, Tensor grid, Tensor lo, Tensor hi) -> Tensor");
  m.def("march_window(Tensor need, Tensor start, Tensor alive, int k) -> Tensor");
  m.def("composite_window(Tensor rgb_sigma, Tensor z_vals, Tensor occupied, Tensor start, Tensor end, "
        "Tensor transmittance, float eps, str clamp_mode) -> (Tensor, Tensor, Tensor, Tensor)");
}
