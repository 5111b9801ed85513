// CUDA entry points of the rendering ops: check, allocate outputs and scratch, launch (render_cuda.h).
// Compiled only when setup.py builds the CUDA sources (PIGAN_WITH_CUDA).
#ifdef PIGAN_WITH_CUDA

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "render_checks.h"
#include "render_cuda.h"

namespace pigan {
namespace {

at::ScalarType acc_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_fwd_gpu(
    const at::Tensor& rs_in, const at::Tensor& z_in, const c10::optional<at::Tensor>& noise_in,
    int64_t clamp, bool last_back, bool white_back, int64_t fill) {
  check_composite(rs_in, z_in, noise_in, clamp, fill, false);
  const c10::cuda::CUDAGuard guard(rs_in.device());
  const at::Tensor rs = rs_in.contiguous(), z = z_in.contiguous();
  const at::Tensor noise = noise_in.has_value() ? noise_in->contiguous() : at::Tensor();
  at::Tensor rgb, depth, weights;
  std::tie(rgb, depth, weights) = new_fwd_outputs(rs, rs.size(2));
  cuda::composite_fwd(rs, z, noise, int(clamp), last_back, white_back, int(fill), rgb, depth, weights);
  return {rgb, depth, weights};
}

at::Tensor composite_bwd_gpu(const at::Tensor& g_rgb, const at::Tensor& g_depth,
                             const at::Tensor& g_w, const at::Tensor& rs_in, const at::Tensor& z_in,
                             const c10::optional<at::Tensor>& noise_in, int64_t clamp,
                             bool last_back, bool white_back, int64_t fill) {
  check_composite(rs_in, z_in, noise_in, clamp, fill, false);
  check_cotangents(g_rgb, g_depth, g_w, rs_in, rs_in.size(2));
  const c10::cuda::CUDAGuard guard(rs_in.device());
  const at::Tensor rs = rs_in.contiguous(), z = z_in.contiguous();
  const at::Tensor noise = noise_in.has_value() ? noise_in->contiguous() : at::Tensor();
  const int64_t B = rs.size(0), R = rs.size(1), S = rs.size(2);
  at::Tensor grad = new_output(rs.sizes(), rs.options());
  at::Tensor tbuf = at::empty({std::max<int64_t>(S, 1), B * R}, rs.options().dtype(acc_dtype(rs)));
  cuda::composite_bwd(g_rgb.contiguous(), g_depth.contiguous(), g_w.contiguous(), rs, z, noise,
                      int(clamp), last_back, white_back, int(fill), tbuf, grad);
  return grad;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> midpoint_fwd_gpu(const at::Tensor& rs_in,
                                                                const at::Tensor& z_in,
                                                                int64_t clamp, bool white_back) {
  check_composite(rs_in, z_in, c10::nullopt, clamp, 0, true);
  const c10::cuda::CUDAGuard guard(rs_in.device());
  const at::Tensor rs = rs_in.contiguous(), z = z_in.contiguous();
  at::Tensor rgb, depth, weights;
  std::tie(rgb, depth, weights) = new_fwd_outputs(rs, std::max<int64_t>(rs.size(2) - 1, 0));
  cuda::midpoint_fwd(rs, z, int(clamp), white_back, rgb, depth, weights);
  return {rgb, depth, weights};
}

at::Tensor midpoint_bwd_gpu(const at::Tensor& g_rgb, const at::Tensor& g_depth,
                            const at::Tensor& g_w, const at::Tensor& rs_in, const at::Tensor& z_in,
                            int64_t clamp, bool white_back) {
  check_composite(rs_in, z_in, c10::nullopt, clamp, 0, true);
  const int64_t n = std::max<int64_t>(rs_in.size(2) - 1, 0);
  check_cotangents(g_rgb, g_depth, g_w, rs_in, n);
  const c10::cuda::CUDAGuard guard(rs_in.device());
  const at::Tensor rs = rs_in.contiguous(), z = z_in.contiguous();
  const int64_t B = rs.size(0), R = rs.size(1);
  at::Tensor grad = new_output(rs.sizes(), rs.options());
  at::Tensor tbuf = at::empty({std::max<int64_t>(n, 1), B * R}, rs.options().dtype(acc_dtype(rs)));
  cuda::midpoint_bwd(g_rgb.contiguous(), g_depth.contiguous(), g_w.contiguous(), rs, z, int(clamp),
                     white_back, tbuf, grad);
  return grad;
}

// total is validated as on the CPU; the CUDA kernel sums each row itself (torch's CUDA reduction
// order is not reproducible per thread anyway).
at::Tensor sample_pdf_gpu(const at::Tensor& bins, const at::Tensor& w, const at::Tensor& u,
                          double eps, const c10::optional<at::Tensor>& total) {
  check_sample_pdf(bins, w, u, total);
  const c10::cuda::CUDAGuard guard(bins.device());
  at::Tensor out = new_output({w.size(0), u.size(1)}, bins.options());
  cuda::sample_pdf(bins.contiguous(), w.contiguous(), u.contiguous(), eps, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> merge_samples_gpu(const at::Tensor& zc, const at::Tensor& zf) {
  check_merge(zc, zf);
  const c10::cuda::CUDAGuard guard(zf.device());
  const int64_t B = zf.size(0), R = zf.size(1), S = zc.size(2) + zf.size(2);
  at::Tensor z_all = new_output({B, R, S, 1}, zf.options());
  at::Tensor idx = new_output({B, R, S}, zf.options().dtype(at::kLong));
  cuda::merge_samples(zc.contiguous(), zf.contiguous(), z_all, idx);
  return {z_all, idx};
}

at::Tensor grid_occupied_gpu(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                             const at::Tensor& hi) {
  check_grid_occupied(points, grid, lo, hi);
  const c10::cuda::CUDAGuard guard(points.device());
  return run_grid_occupied(points, grid, lo, hi, cuda::grid_occupied);
}

at::Tensor march_window_gpu(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive,
                            int64_t k) {
  check_march_window(need, start, alive, k);
  const c10::cuda::CUDAGuard guard(need.device());
  return run_march_window(need, start, alive, k, cuda::march_window);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_window_gpu(
    const at::Tensor& rs, const at::Tensor& z, const at::Tensor& occ, const at::Tensor& start,
    const at::Tensor& end, const at::Tensor& trans, double eps, c10::string_view clamp_mode) {
  const int clamp = check_composite_window(rs, z, occ, start, end, trans, eps, clamp_mode);
  const c10::cuda::CUDAGuard guard(rs.device());
  return run_composite_window(rs, z, occ, start, end, trans, eps, clamp, cuda::composite_window);
}

}  // namespace
}  // namespace pigan

TORCH_LIBRARY_IMPL(pigan, CUDA, m) {
  PIGAN_IMPL_RENDER_OPS(m, gpu);
  PIGAN_IMPL_SKIPPING_OPS(m, gpu);
}

#endif  // PIGAN_WITH_CUDA
