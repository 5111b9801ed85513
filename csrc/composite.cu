// CUDA compositing kernels: one thread per ray running the per-ray code of composite.h, templated on
// the channel count (3, 21, 32, generic), float32 accumulation for float16 / bfloat16 / float32.
// Lean includes only (no torch/extension.h): this file compiles in seconds.
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "composite.h"
#include "dispatch.h"
#include "render_cuda.h"

namespace pigan::cuda {
namespace {

constexpr int kThreads = 128;

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename T, int NC>
__global__ void __launch_bounds__(kThreads)
composite_fwd_kernel(const T* __restrict__ rs, const T* __restrict__ z, const T* __restrict__ noise,
                     int64_t N, int S, int C, int clamp, bool last_back, bool white_back, int fill,
                     T* __restrict__ rgb, T* __restrict__ depth, T* __restrict__ weights) {
  using A = at::opmath_type<T>;
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= N) return;
  composite_fwd_ray<T, A, NC>(rs + r * S * (C + 1), z + r * S, noise ? noise + r * S : nullptr, S, C,
                              clamp, last_back, white_back, fill, rgb + r * C, depth + r,
                              weights + r * S);
}

template <typename T, int NC>
__global__ void __launch_bounds__(kThreads)
composite_bwd_kernel(const T* __restrict__ g_rgb, const T* __restrict__ g_depth,
                     const T* __restrict__ g_w, const T* __restrict__ rs, const T* __restrict__ z,
                     const T* __restrict__ noise, int64_t N, int S, int C, int clamp,
                     bool last_back, bool white_back, int fill, at::opmath_type<T>* tbuf,
                     T* __restrict__ grad) {
  using A = at::opmath_type<T>;
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= N) return;
  // tbuf is [S, N]: neighbouring threads touch neighbouring words.
  composite_bwd_ray<T, A, NC>(rs + r * S * (C + 1), z + r * S, noise ? noise + r * S : nullptr,
                              g_rgb + r * C, g_depth + r, g_w + r * S, S, C, clamp, last_back,
                              white_back, fill, tbuf + r, N, grad + r * S * (C + 1));
}

template <typename T, int NC>
__global__ void __launch_bounds__(kThreads)
midpoint_fwd_kernel(const T* __restrict__ rs, const T* __restrict__ z, int64_t N, int S, int C,
                    int clamp, bool white_back, T* __restrict__ rgb, T* __restrict__ depth,
                    T* __restrict__ weights) {
  using A = at::opmath_type<T>;
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= N) return;
  const int n = S > 0 ? S - 1 : 0;
  midpoint_fwd_ray<T, A, NC>(rs + r * S * (C + 1), z + r * S, S, C, clamp, white_back, rgb + r * C,
                             depth + r, weights + r * n);
}

template <typename T, int NC>
__global__ void __launch_bounds__(kThreads)
midpoint_bwd_kernel(const T* __restrict__ g_rgb, const T* __restrict__ g_depth,
                    const T* __restrict__ g_w, const T* __restrict__ rs, const T* __restrict__ z,
                    int64_t N, int S, int C, int clamp, bool white_back, at::opmath_type<T>* tbuf,
                    T* __restrict__ grad) {
  using A = at::opmath_type<T>;
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= N) return;
  const int n = S > 0 ? S - 1 : 0;
  midpoint_bwd_ray<T, A, NC>(rs + r * S * (C + 1), z + r * S, g_rgb + r * C, g_depth + r,
                             g_w + r * n, S, C, clamp, white_back, tbuf + r, N,
                             grad + r * S * (C + 1));
}

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

// Rays N = B*R, samples S and channels C of rs [B, R, S, C+1], as the kernels take them.
struct RayShape {
  int64_t N;
  int S, C;
};

// The launch shared by the four ops: one thread per ray, the kernel picked by element type and
// channel count, on the current stream. launch(Type<T>, integral_constant<NC>, shape, grid, stream).
template <typename F>
void launch_per_ray(const at::Tensor& rs, const char* op, F&& launch) {
  const RayShape g{rs.size(0) * rs.size(1), int(rs.size(2)), int(rs.size(3) - 1)};
  if (g.N == 0) return;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_float_channels<true>(rs.scalar_type(), g.C, op, [&](auto t, auto nc) {
    launch(t, nc, g, blocks_for(g.N), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

void composite_fwd(const at::Tensor& rs, const at::Tensor& z, const at::Tensor& noise, int clamp,
                   bool last_back, bool white_back, int fill, const at::Tensor& rgb,
                   const at::Tensor& depth, const at::Tensor& weights) {
  launch_per_ray(rs, "composite_fwd", [&](auto t, auto nc, RayShape g, unsigned grid, auto stream) {
    using T = typename decltype(t)::type;
    composite_fwd_kernel<T, decltype(nc)::value><<<grid, kThreads, 0, stream>>>(
        rs.const_data_ptr<T>(), z.const_data_ptr<T>(), opt_ptr<T>(noise), g.N, g.S, g.C, clamp,
        last_back, white_back, fill, rgb.mutable_data_ptr<T>(), depth.mutable_data_ptr<T>(),
        weights.mutable_data_ptr<T>());
  });
}

void composite_bwd(const at::Tensor& g_rgb, const at::Tensor& g_depth, const at::Tensor& g_w,
                   const at::Tensor& rs, const at::Tensor& z, const at::Tensor& noise, int clamp,
                   bool last_back, bool white_back, int fill, const at::Tensor& tbuf,
                   const at::Tensor& grad) {
  launch_per_ray(rs, "composite_bwd", [&](auto t, auto nc, RayShape g, unsigned grid, auto stream) {
    using T = typename decltype(t)::type;
    composite_bwd_kernel<T, decltype(nc)::value><<<grid, kThreads, 0, stream>>>(
        g_rgb.const_data_ptr<T>(), g_depth.const_data_ptr<T>(), g_w.const_data_ptr<T>(),
        rs.const_data_ptr<T>(), z.const_data_ptr<T>(), opt_ptr<T>(noise), g.N, g.S, g.C, clamp,
        last_back, white_back, fill, tbuf.mutable_data_ptr<at::opmath_type<T>>(),
        grad.mutable_data_ptr<T>());
  });
}

void midpoint_fwd(const at::Tensor& rs, const at::Tensor& z, int clamp, bool white_back,
                  const at::Tensor& rgb, const at::Tensor& depth, const at::Tensor& weights) {
  launch_per_ray(rs, "midpoint_fwd", [&](auto t, auto nc, RayShape g, unsigned grid, auto stream) {
    using T = typename decltype(t)::type;
    midpoint_fwd_kernel<T, decltype(nc)::value><<<grid, kThreads, 0, stream>>>(
        rs.const_data_ptr<T>(), z.const_data_ptr<T>(), g.N, g.S, g.C, clamp, white_back,
        rgb.mutable_data_ptr<T>(), depth.mutable_data_ptr<T>(), weights.mutable_data_ptr<T>());
  });
}

void midpoint_bwd(const at::Tensor& g_rgb, const at::Tensor& g_depth, const at::Tensor& g_w,
                  const at::Tensor& rs, const at::Tensor& z, int clamp, bool white_back,
                  const at::Tensor& tbuf, const at::Tensor& grad) {
  launch_per_ray(rs, "midpoint_bwd", [&](auto t, auto nc, RayShape g, unsigned grid, auto stream) {
    using T = typename decltype(t)::type;
    midpoint_bwd_kernel<T, decltype(nc)::value><<<grid, kThreads, 0, stream>>>(
        g_rgb.const_data_ptr<T>(), g_depth.const_data_ptr<T>(), g_w.const_data_ptr<T>(),
        rs.const_data_ptr<T>(), z.const_data_ptr<T>(), g.N, g.S, g.C, clamp, white_back,
        tbuf.mutable_data_ptr<at::opmath_type<T>>(), grad.mutable_data_ptr<T>());
  });
}

}  // namespace pigan::cuda
