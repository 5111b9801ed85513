// CUDA kernels of the empty-space skipping ops: one thread per point (grid_occupied) or per ray
// (march_window, composite_window) running the code of skipping.h. float16 / bfloat16 are read as
// stored; composite_window accumulates in float32 for them. Lean includes only (no torch/extension.h).
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "dispatch.h"
#include "render_cuda.h"
#include "skipping.h"

namespace pigan::cuda {
namespace {

constexpr int kThreads = 128;

// kernel<<<...>>>(args...) with one thread per item for n items, on the current stream.
template <typename... Params, typename... Args>
void launch_per_item(void (*kernel)(Params...), int64_t n, Args... args) {
  if (n == 0) return;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
grid_occupied_kernel(const T* __restrict__ points, const bool* __restrict__ grid,
                     const T* __restrict__ lo, const T* __restrict__ span, int64_t total, int64_t N,
                     int64_t G, bool* __restrict__ out) {
  using A = at::opmath_type<T>;
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= total) return;
  const int64_t b = i / N;
  out[i] = point_occupied<T, A>(points + 3 * i, lo + 3 * b, span + 3 * b, grid + b * G * G * G, G);
}

__global__ void __launch_bounds__(kThreads)
march_window_kernel(const bool* __restrict__ need, const int64_t* __restrict__ start,
                    const bool* __restrict__ alive, int64_t R, int64_t S, int64_t k,
                    int64_t* __restrict__ end) {
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= R) return;
  end[r] = window_end(need + r * S, S, start[r], alive[r], k);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
composite_window_kernel(const T* __restrict__ rs, const T* __restrict__ z,
                        const bool* __restrict__ occ, const int64_t* __restrict__ start,
                        const int64_t* __restrict__ end, const T* __restrict__ t_in, int64_t R,
                        int64_t S, int64_t C, at::opmath_type<T> eps, int clamp,
                        T* __restrict__ weights, at::opmath_type<T>* __restrict__ acc,
                        at::opmath_type<T>* __restrict__ t_out, int64_t* __restrict__ stop) {
  using A = at::opmath_type<T>;
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= R) return;
  A t = A(t_in[r]);
  stop[r] = composite_window_ray<T, A>(rs + r * S * (C + 1), z + r * S, occ + r * S, S, C, start[r],
                                       end[r], eps, clamp, t, weights + r * S, acc + r * (C + 1));
  t_out[r] = t;
}

}  // namespace

void grid_occupied(const at::Tensor& points, const at::Tensor& grid, const at::Tensor& lo,
                   const at::Tensor& span, const at::Tensor& out) {
  dispatch_float<true>(points.scalar_type(), "grid_occupied", [&](auto t) {
    using T = typename decltype(t)::type;
    launch_per_item(grid_occupied_kernel<T>, points.size(0) * points.size(1), points.const_data_ptr<T>(),
                    grid.const_data_ptr<bool>(), lo.const_data_ptr<T>(), span.const_data_ptr<T>(),
                    points.size(0) * points.size(1), points.size(1), grid.size(1),
                    out.mutable_data_ptr<bool>());
  });
}

void march_window(const at::Tensor& need, const at::Tensor& start, const at::Tensor& alive, int64_t k,
                  const at::Tensor& end) {
  launch_per_item(march_window_kernel, need.size(0), need.const_data_ptr<bool>(),
                  start.const_data_ptr<int64_t>(), alive.const_data_ptr<bool>(), need.size(0),
                  need.size(1), k, end.mutable_data_ptr<int64_t>());
}

void composite_window(const at::Tensor& rs, const at::Tensor& z, const at::Tensor& occ,
                      const at::Tensor& start, const at::Tensor& end, const at::Tensor& t_in,
                      double eps, int clamp, const at::Tensor& weights, const at::Tensor& acc,
                      const at::Tensor& t_out, const at::Tensor& stop) {
  dispatch_float<true>(rs.scalar_type(), "composite_window", [&](auto t) {
    using T = typename decltype(t)::type;
    using A = at::opmath_type<T>;
    launch_per_item(composite_window_kernel<T>, rs.size(0), rs.const_data_ptr<T>(), z.const_data_ptr<T>(),
                    occ.const_data_ptr<bool>(), start.const_data_ptr<int64_t>(),
                    end.const_data_ptr<int64_t>(), t_in.const_data_ptr<T>(), rs.size(0), rs.size(1),
                    rs.size(2) - 1, A(eps), clamp, weights.mutable_data_ptr<T>(),
                    acc.mutable_data_ptr<A>(), t_out.mutable_data_ptr<A>(),
                    stop.mutable_data_ptr<int64_t>());
  });
}

}  // namespace pigan::cuda
