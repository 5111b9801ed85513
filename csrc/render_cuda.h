// Launchers of the CUDA rendering kernels (defined in composite.cu, sampling.cu and skipping.cu).
// Inputs are contiguous tensors on one CUDA device, already checked; outputs and scratch are
// allocated by the caller (render_cuda.cpp). An undefined `noise` tensor means no noise.
#pragma once

#include <ATen/core/Tensor.h>

namespace pigan::cuda {

void composite_fwd(const at::Tensor& rs, const at::Tensor& z, const at::Tensor& noise, int clamp,
                   bool last_back, bool white_back, int fill, const at::Tensor& rgb,
                   const at::Tensor& depth, const at::Tensor& weights);
// tbuf: scratch [S, B*R] in the accumulation dtype (float, or double for double inputs).
void composite_bwd(const at::Tensor& g_rgb, const at::Tensor& g_depth, const at::Tensor& g_w,
                   const at::Tensor& rs, const at::Tensor& z, const at::Tensor& noise, int clamp,
                   bool last_back, bool white_back, int fill, const at::Tensor& tbuf,
                   const at::Tensor& grad);
void midpoint_fwd(const at::Tensor& rs, const at::Tensor& z, int clamp, bool white_back,
                  const at::Tensor& rgb, const at::Tensor& depth, const at::Tensor& weights);
void midpoint_bwd(const at::Tensor& g_rgb, const at::Tensor& g_depth, const at::Tensor& g_w,
                  const at::Tensor& rs, const at::Tensor& z, int clamp, bool white_back,
                  const at::Tensor& tbuf, const at::Tensor& grad);
void sample_pdf(const at::Tensor& bins, const at::Tensor& w, const at::Tensor& u, double eps,
                const at::Tensor& out);
void merge_samples(const at::Tensor& zc, const at::Tensor& zf, const at::Tensor& z_all,
                   const at::Tensor& idx);
// The skipping ops (skipping.cu). span: hi - lo in the points' dtype; acc and t_out are in the
// accumulation dtype (float, or double for double inputs).
void grid_occupied(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                   const at::Tensor& span, const at::Tensor& out);
void march_window(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive, int64_t k,
                  const at::Tensor& end);
void composite_window(const at::Tensor& rs, const at::Tensor& z, const at::Tensor& occ,
                      const at::Tensor& start, const at::Tensor& end, const at::Tensor& t_in,
                      double eps, int clamp, const at::Tensor& weights, const at::Tensor& acc,
                      const at::Tensor& t_out, const at::Tensor& stop);
int runtime_version();

}  // namespace pigan::cuda
