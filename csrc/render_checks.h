// Argument checks and output allocation shared by the CPU and CUDA op entry points (host only).
// The Python wrappers check first with the same wording; these keep direct torch.ops calls safe.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace pigan {

// When set (tests), outputs are filled with NaN / -1 before the kernels write them.
bool& poison_outputs();
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& opts);
// The forward outputs of the compositing ops for rs [B, R, S, C+1]: rgb [B, R, C], depth [B, R, 1],
// weights [B, R, n, 1] (n = S, or S - 1 for the midpoint quadrature).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> new_fwd_outputs(const at::Tensor& rs, int64_t n) {
  const int64_t B = rs.size(0), R = rs.size(1), C = rs.size(3) - 1;
  return {new_output({B, R, C}, rs.options()), new_output({B, R, 1}, rs.options()),
          new_output({B, R, n, 1}, rs.options())};
}
// When set (tests), the CPU sample_pdf runs the CUDA kernel's per-sample code instead of its cdf table.
bool& sample_pdf_scan_mode();
// When set (tests), the CPU compositing backward recomputes exponentials as the CUDA kernel does.
bool& composite_recompute_mode();

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                   " must have a floating dtype, got ", t.scalar_type());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ", t.sizes());
}

inline void check_device(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on ", ref.device(), ", got ",
                    t.device());
}

inline void check_dtype(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, " must have dtype ",
                   ref.scalar_type(), ", got ", t.scalar_type());
}

// rgb_sigma [B, R, S, C+1], z_vals [B, R, S, 1], optional noise [B, R, S, 1].
inline void check_composite(const at::Tensor& rs, const at::Tensor& z,
                            const c10::optional<at::Tensor>& noise, int64_t clamp, int64_t fill,
                            bool midpoint) {
  check_float(rs, "rgb_sigma");
  check_dim(rs, 4, "rgb_sigma");
  TORCH_CHECK_VALUE(rs.size(3) >= 2, "rgb_sigma must have C+1 >= 2 channels, got shape ", rs.sizes());
  check_float(z, "z_vals");
  check_dim(z, 4, "z_vals");
  check_dtype(z, rs, "z_vals");
  check_device(z, rs, "z_vals");
  TORCH_CHECK_VALUE(z.size(0) == rs.size(0) && z.size(1) == rs.size(1) && z.size(2) == rs.size(2) &&
                        z.size(3) == 1,
                    "z_vals must have shape [B, R, S, 1] matching rgb_sigma ", rs.sizes(), ", got ",
                    z.sizes());
  if (noise.has_value()) {
    check_float(*noise, "noise");
    check_dtype(*noise, rs, "noise");
    check_device(*noise, rs, "noise");
    TORCH_CHECK_VALUE(noise->sizes() == z.sizes(), "noise must have shape ", z.sizes(), ", got ",
                      noise->sizes());
  }
  if (midpoint) {
    TORCH_CHECK_VALUE(clamp == 1 || clamp == 2, "clamp_mode must be 1 (softplus) or 2 (none), got ",
                      clamp);
    TORCH_CHECK_VALUE(rs.size(2) >= 1 || rs.size(0) * rs.size(1) == 0,
                      "the midpoint quadrature needs S >= 1 samples, got shape ", rs.sizes());
  } else {
    TORCH_CHECK_VALUE(clamp == 0 || clamp == 1, "clamp_mode must be 0 (relu) or 1 (softplus), got ",
                      clamp);
  }
  TORCH_CHECK_VALUE(fill >= 0 && fill <= 2, "fill_mode must be 0, 1 or 2, got ", fill);
}

inline void check_cotangents(const at::Tensor& g_rgb, const at::Tensor& g_depth,
                             const at::Tensor& g_w, const at::Tensor& rs, int64_t n_weights) {
  const int64_t B = rs.size(0), R = rs.size(1), C = rs.size(3) - 1;
  TORCH_CHECK_VALUE(g_rgb.dim() == 3 && g_rgb.size(0) == B && g_rgb.size(1) == R && g_rgb.size(2) == C,
                    "grad_rgb must have shape [", B, ", ", R, ", ", C, "], got ", g_rgb.sizes());
  TORCH_CHECK_VALUE(g_depth.dim() == 3 && g_depth.size(0) == B && g_depth.size(1) == R &&
                        g_depth.size(2) == 1,
                    "grad_depth must have shape [", B, ", ", R, ", 1], got ", g_depth.sizes());
  TORCH_CHECK_VALUE(g_w.dim() == 4 && g_w.size(0) == B && g_w.size(1) == R &&
                        g_w.size(2) == n_weights && g_w.size(3) == 1,
                    "grad_weights must have shape [", B, ", ", R, ", ", n_weights, ", 1], got ",
                    g_w.sizes());
  for (const at::Tensor* t : {&g_rgb, &g_depth, &g_w}) {
    check_dtype(*t, rs, "grad");
    check_device(*t, rs, "grad");
  }
}

inline void check_sample_pdf(const at::Tensor& bins, const at::Tensor& w, const at::Tensor& u,
                             const c10::optional<at::Tensor>& total) {
  check_float(bins, "bins");
  check_float(w, "weights");
  check_float(u, "u");
  check_dim(bins, 2, "bins");
  check_dim(w, 2, "weights");
  check_dim(u, 2, "u");
  check_dtype(w, bins, "weights");
  check_dtype(u, bins, "u");
  check_device(w, bins, "weights");
  check_device(u, bins, "u");
  TORCH_CHECK_VALUE(w.size(1) >= 1, "weights must have at least one bin, got shape ", w.sizes());
  TORCH_CHECK_VALUE(bins.size(0) == w.size(0) && bins.size(1) == w.size(1) + 1,
                    "bins must have shape [N, M+1] for weights ", w.sizes(), ", got ", bins.sizes());
  TORCH_CHECK_VALUE(u.size(0) == w.size(0), "u must have shape [N, K] with N = ", w.size(0),
                    ", got ", u.sizes());
  if (total.has_value()) {
    check_float(*total, "total");
    check_dtype(*total, bins, "total");
    check_device(*total, bins, "total");
    TORCH_CHECK_VALUE(total->numel() == w.size(0), "total must have one value per ray (", w.size(0),
                      "), got shape ", total->sizes());
  }
}

inline void check_merge(const at::Tensor& zc, const at::Tensor& zf) {
  check_float(zc, "z_coarse");
  check_float(zf, "z_fine");
  check_dim(zc, 4, "z_coarse");
  check_dim(zf, 4, "z_fine");
  check_dtype(zc, zf, "z_coarse");
  check_device(zc, zf, "z_coarse");
  TORCH_CHECK_VALUE(zc.size(0) == zf.size(0) && zc.size(1) == zf.size(1) && zc.size(3) == 1 &&
                        zf.size(3) == 1,
                    "z_coarse [B, R, S1, 1] and z_fine [B, R, S2, 1] must share B and R, got ",
                    zc.sizes(), " and ", zf.sizes());
}

}  // namespace pigan

// Registers every rendering op for one backend: the entry points are named <op>_<suffix>.
#define PIGAN_IMPL_RENDER_OPS(m, suffix)                     \
  m.impl("composite_fwd", &pigan::composite_fwd_##suffix);  \
  m.impl("composite_bwd", &pigan::composite_bwd_##suffix);  \
  m.impl("midpoint_fwd", &pigan::midpoint_fwd_##suffix);    \
  m.impl("midpoint_bwd", &pigan::midpoint_bwd_##suffix);    \
  m.impl("sample_pdf", &pigan::sample_pdf_##suffix);        \
  m.impl("merge_samples", &pigan::merge_samples_##suffix)
