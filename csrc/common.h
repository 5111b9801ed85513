// Shared definitions for the per-ray kernels of pigan._C. Everything here compiles both as host C++
// (CPU ops, parallel over rays) and as CUDA device code: keep it free of ATen/torch includes.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PIGAN_HD __host__ __device__ __forceinline__
#else
#define PIGAN_HD inline
#endif

namespace pigan {

enum ClampMode : int { kRelu = 0, kSoftplus = 1, kNoActivation = 2 };
enum FillMode : int { kFillNone = 0, kFillDebug = 1, kFillWeight = 2 };

// Overloads instead of std:: calls so the same source picks expf/exp on the device.
PIGAN_HD float p_exp(float x) { return ::expf(x); }
PIGAN_HD double p_exp(double x) { return ::exp(x); }
PIGAN_HD float p_log1p(float x) { return ::log1pf(x); }
PIGAN_HD double p_log1p(double x) { return ::log1p(x); }
template <typename A>
PIGAN_HD bool p_isnan(A x) { return x != x; }

// relu written so that NaN propagates (torch.relu(nan) == nan).
template <typename A>
PIGAN_HD A relu(A x) { return x < A(0) ? A(0) : x; }
// torch's relu backward passes the gradient where the output is not <= 0 (NaN passes).
template <typename A>
PIGAN_HD A relu_grad(A x) { return x <= A(0) ? A(0) : A(1); }

// torch.nn.functional.softplus with beta=1, threshold=20 (same branches as torch's kernel).
template <typename A>
PIGAN_HD A softplus(A x) { return x > A(20) ? x : p_log1p(p_exp(x)); }
template <typename A>
PIGAN_HD A softplus_grad(A x) {
  if (x > A(20)) return A(1);
  const A z = p_exp(x);
  return z / (z + A(1));
}

template <typename A>
PIGAN_HD A activate(A x, int mode) {
  return mode == kRelu ? relu(x) : (mode == kSoftplus ? softplus(x) : x);
}
template <typename A>
PIGAN_HD A activate_grad(A x, int mode) {
  return mode == kRelu ? relu_grad(x) : (mode == kSoftplus ? softplus_grad(x) : A(1));
}

// Activation and its derivative together: softplus shares one exponential between them.
template <typename A>
PIGAN_HD void activate_and_grad(A x, int mode, A& s, A& ds) {
  if (mode == kRelu) {
    s = relu(x);
    ds = relu_grad(x);
  } else if (mode == kSoftplus) {
    if (x > A(20)) {
      s = x;
      ds = A(1);
    } else {
      const A z = p_exp(x);
      s = p_log1p(z);
      ds = z / (z + A(1));
    }
  } else {
    s = x;
    ds = A(1);
  }
}

}  // namespace pigan
