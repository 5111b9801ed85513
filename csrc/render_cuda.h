// Launchers of the CUDA rendering kernels (defined in composite.cu and sampling.cu). Inputs are
// contiguous tensors on one CUDA device, already checked; outputs and scratch are allocated by the
// caller (render_cuda.cpp). An undefined `noise` tensor means no noise.
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
int runtime_version();

}  // namespace pigan::cuda
