// CUDA importance sampling (one thread per ray and sample) and fine/coarse merge (one thread per ray),
// running the per-ray code of sample_pdf.h and merge.h. The uniforms come from torch's CUDA
// generator (Philox) on the Python side, so torch.manual_seed reproduces a run.
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "dispatch.h"
#include "merge.h"
#include "render_cuda.h"
#include "sample_pdf.h"

namespace pigan::cuda {
namespace {

constexpr int kThreads = 128;

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
sample_pdf_kernel(const T* __restrict__ bins, const T* __restrict__ w, const T* __restrict__ u,
                  int64_t N, int M, int K, at::opmath_type<T> eps, T* __restrict__ out) {
  using A = at::opmath_type<T>;
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (t >= N * K) return;
  const int64_t r = t / K;
  const T* wr = w + r * M;
  const A total = seq_row_sum<T, A, A>(wr, M, eps);
  const bool monotone = pdf_non_negative(wr, M, total, eps);
  out[t] = T(sample_pdf_one<T, A, A>(bins + r * (M + 1), wr, M, total, eps, A(u[t]), monotone));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
merge_kernel(const T* __restrict__ zc, const T* __restrict__ zf, int64_t N, int S1, int S2,
             T* __restrict__ z_all, int64_t* __restrict__ idx) {
  using A = at::opmath_type<T>;
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= N) return;
  const int64_t S = S1 + S2;
  merge_ray<T, A>(zc + r * S1, S1, zf + r * S2, S2, z_all + r * S, idx + r * S);
}

}  // namespace

void sample_pdf(const at::Tensor& bins, const at::Tensor& w, const at::Tensor& u, double eps,
                const at::Tensor& out) {
  const int64_t N = w.size(0);
  const int M = int(w.size(1)), K = int(u.size(1));
  if (N * K == 0) return;
  auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_float<true>(bins.scalar_type(), "sample_pdf", [&](auto t) {
    using T = typename decltype(t)::type;
    using A = at::opmath_type<T>;
    sample_pdf_kernel<T><<<blocks_for(N * K), kThreads, 0, stream>>>(
        bins.const_data_ptr<T>(), w.const_data_ptr<T>(), u.const_data_ptr<T>(), N, M, K, A(eps),
        out.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void merge_samples(const at::Tensor& zc, const at::Tensor& zf, const at::Tensor& z_all,
                   const at::Tensor& idx) {
  const int64_t N = zf.size(0) * zf.size(1);
  const int S1 = int(zc.size(2)), S2 = int(zf.size(2));
  if (N == 0) return;
  auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_float<true>(zf.scalar_type(), "merge_samples", [&](auto t) {
    using T = typename decltype(t)::type;
    merge_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(
        zc.const_data_ptr<T>(), zf.const_data_ptr<T>(), N, S1, S2, z_all.mutable_data_ptr<T>(),
        idx.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace pigan::cuda
