// Argument checks and output allocation shared by the CPU and CUDA op entry points (host only).
// The Python wrappers check first with the same wording; these keep direct torch.ops calls safe.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <tuple>
#include <utility>

#include "common.h"

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

// ---------------------------------------------------------------- empty-space skipping

inline void check_bool(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kBool, name, " must be a bool tensor, got ", t.scalar_type());
}

// Per-ray indices: int64 [R].
inline void check_index(const at::Tensor& t, int64_t R, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be an int64 tensor, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == R, name, " must have shape [R] = [", R, "], got ",
                    t.sizes());
}

// points [B, N, 3], grid bool [B, G, G, G] with G >= 1, lo and hi [B, 3] of any floating dtypes.
inline void check_grid_occupied(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                                const at::Tensor& hi) {
  check_float(points, "points");
  check_dim(points, 3, "points");
  TORCH_CHECK_VALUE(points.size(2) == 3, "points must have shape [B, N, 3], got ", points.sizes());
  const int64_t B = points.size(0);
  check_bool(grid, "grid");
  check_dim(grid, 4, "grid");
  TORCH_CHECK_VALUE(grid.size(0) == B && grid.size(1) == grid.size(2) && grid.size(2) == grid.size(3) &&
                        grid.size(1) >= 1,
                    "grid must have shape [B, G, G, G] with B = ", B, " and G >= 1, got ", grid.sizes());
  check_device(grid, points, "grid");
  for (const auto& [t, name] : {std::pair{&lo, "lo"}, std::pair{&hi, "hi"}}) {
    check_float(*t, name);
    TORCH_CHECK_VALUE(t->dim() == 2 && t->size(0) == B && t->size(1) == 3, name,
                      " must have shape [B, 3] = [", B, ", 3], got ", t->sizes());
    check_device(*t, points, name);
  }
}

inline void check_march_window(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive,
                               int64_t k) {
  check_bool(need, "need");
  check_dim(need, 2, "need");
  const int64_t R = need.size(0);
  check_index(start, R, "start");
  check_bool(alive, "alive");
  TORCH_CHECK_VALUE(alive.dim() == 1 && alive.size(0) == R, "alive must have shape [R] = [", R,
                    "], got ", alive.sizes());
  TORCH_CHECK_VALUE(k >= 1, "k must be a positive int, got ", k);
  check_device(start, need, "start");
  check_device(alive, need, "alive");
}

// rgb_sigma [R, S, C+1]; z_vals [R, S] and transmittance [R] of its dtype; occupied bool [R, S];
// start and end int64 [R]. Returns the clamp mode (kRelu or kSoftplus).
inline int check_composite_window(const at::Tensor& rs, const at::Tensor& z, const at::Tensor& occ,
                                  const at::Tensor& start, const at::Tensor& end,
                                  const at::Tensor& trans, double eps, c10::string_view clamp_mode) {
  check_float(rs, "rgb_sigma");
  check_dim(rs, 3, "rgb_sigma");
  TORCH_CHECK_VALUE(rs.size(2) >= 2, "rgb_sigma must have shape [R, S, C+1] with C >= 1, got ",
                    rs.sizes());
  const int64_t R = rs.size(0), S = rs.size(1);
  check_dtype(z, rs, "z_vals");
  TORCH_CHECK_VALUE(z.dim() == 2 && z.size(0) == R && z.size(1) == S, "z_vals must have shape [R, S] = [",
                    R, ", ", S, "], got ", z.sizes());
  check_bool(occ, "occupied");
  TORCH_CHECK_VALUE(occ.sizes() == z.sizes(), "occupied must have shape [R, S] = [", R, ", ", S,
                    "], got ", occ.sizes());
  check_index(start, R, "start");
  check_index(end, R, "end");
  check_dtype(trans, rs, "transmittance");
  TORCH_CHECK_VALUE(trans.dim() == 1 && trans.size(0) == R, "transmittance must have shape [R] = [", R,
                    "], got ", trans.sizes());
  for (const auto& [t, name] : {std::pair{&z, "z_vals"}, std::pair{&occ, "occupied"},
                                std::pair{&start, "start"}, std::pair{&end, "end"},
                                std::pair{&trans, "transmittance"}}) {
    check_device(*t, rs, name);
  }
  TORCH_CHECK_VALUE(eps >= 0 && eps < 1, "eps must be in [0, 1), got ", eps);
  if (clamp_mode == c10::string_view("relu")) return kRelu;
  TORCH_CHECK_VALUE(clamp_mode == c10::string_view("softplus"),
                    "clamp_mode must be 'relu' or 'softplus', got '", clamp_mode, "'");
  return kSoftplus;
}

// The bodies of the skipping ops' entry points after the checks (and the CUDA device guard): the
// inputs made contiguous, the outputs allocated, then `kernel` (the device's loops) on them.
template <typename K>
at::Tensor run_grid_occupied(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                             const at::Tensor& hi, K&& kernel) {
  at::Tensor out = new_output({points.size(0), points.size(1)}, points.options().dtype(at::kBool));
  // The box in the points' dtype, rounded as the twin rounds it: hi - lo in the dtype of lo and hi.
  const auto dt = points.scalar_type();
  kernel(points.contiguous(), grid.contiguous(), lo.to(dt).contiguous(), hi.sub(lo).to(dt).contiguous(),
         out);
  return out;
}

template <typename K>
at::Tensor run_march_window(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive,
                            int64_t k, K&& kernel) {
  at::Tensor end = new_output({need.size(0)}, start.options());
  kernel(need.contiguous(), start.contiguous(), alive.contiguous(), k, end);
  return end;
}

// acc and the transmittance accumulate in float32 for float16 / bfloat16 and are rounded at the end.
template <typename K>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_composite_window(
    const at::Tensor& rs_in, const at::Tensor& z, const at::Tensor& occ, const at::Tensor& start,
    const at::Tensor& end, const at::Tensor& trans, double eps, int clamp, K&& kernel) {
  const at::Tensor rs = rs_in.contiguous();
  const int64_t R = rs.size(0), S = rs.size(1);
  const auto dtype = rs.scalar_type();
  const auto acc_opts = rs.options().dtype(at::toOpMathType(dtype));
  at::Tensor weights = new_output({R, S}, rs.options());
  at::Tensor acc = new_output({R, rs.size(2)}, acc_opts), t = new_output({R}, acc_opts);
  at::Tensor stop = new_output({R}, start.options());
  kernel(rs, z.contiguous(), occ.contiguous(), start.contiguous(), end.contiguous(), trans.contiguous(),
         eps, clamp, weights, acc, t, stop);
  return {weights, acc.to(dtype), t.to(dtype), stop};
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

// Registers the skipping ops for one backend, as PIGAN_IMPL_RENDER_OPS.
#define PIGAN_IMPL_SKIPPING_OPS(m, suffix)                  \
  m.impl("grid_occupied", &pigan::grid_occupied_##suffix); \
  m.impl("march_window", &pigan::march_window_##suffix);   \
  m.impl("composite_window", &pigan::composite_window_##suffix)
