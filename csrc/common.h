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
template <typename A>
PIGAN_HD bool p_isinf(A x) { return x == x && (x - x) != (x - x); }
// The largest finite value (torch.nan_to_num's replacement of +inf).
PIGAN_HD float p_max_finite(float) { return 3.40282347e+38f; }
PIGAN_HD double p_max_finite(double) { return 1.7976931348623157e+308; }

#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
// exp(x) for float on the host, branch-free so that GCC vectorises loops of it (glibc's expf is a
// call per element): exp_poly(exp_clamp(x)). Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and
// Cephes' degree-7 polynomial: within 1 ulp of exp over all floats; exp(0) == 1 exactly, NaN -> NaN,
// x < -104 -> 0, x > 89 -> inf, gradual underflow below -87.3 (2^n applied as 2^(n/2) 2^(n - n/2),
// both factors normal). Loops apply the two parts in separate passes: fused, GCC threads the
// clamped constants through the polynomial and then refuses to if-convert (-ftrapping-math).
inline float exp_clamp(float x) {
  x = x < -104.0f ? -104.0f : x;  // comparisons keep NaN
  return x > 89.0f ? 89.0f : x;
}
inline float exp_poly(float x) {  // x in [-104, 89] or NaN
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 = 0.693359375 - 2.12e-4
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = (p * (r * r) + r) + 1.0f;
  // n as an integer from t's mantissa bits (NaN gives arbitrary bits, and p is NaN anyway).
  const uint32_t ni = __builtin_bit_cast(uint32_t, t) - __builtin_bit_cast(uint32_t, magic);
  const uint32_t n1 = uint32_t(int32_t(ni) >> 1);
  const uint32_t n2 = ni - n1;
  const float s1 = __builtin_bit_cast(float, (n1 + 127u) << 23);
  const float s2 = __builtin_bit_cast(float, (n2 + 127u) << 23);
  return (p * s1) * s2;
}
#endif

// exp of the compositing terms exp(-delta sigma): the device's expf, exp_poly on the host. Every
// host path uses the same one, so cached and recomputed terms agree bit for bit.
PIGAN_HD float ray_exp(float x) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return p_exp(x);
#else
  return exp_poly(exp_clamp(x));
#endif
}
PIGAN_HD double ray_exp(double x) { return p_exp(x); }

// ray_exp in two passes over an array (host): the argument clamp, then the exponential.
template <typename A>
PIGAN_HD A ray_exp_pre(A x) { return x; }
template <typename A>
PIGAN_HD A ray_exp_post(A x) { return ray_exp(x); }
#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
template <>
inline float ray_exp_pre(float x) { return exp_clamp(x); }
template <>
inline float ray_exp_post(float x) { return exp_poly(x); }
#endif

// relu written so that NaN propagates (torch.relu(nan) == nan).
template <typename A>
PIGAN_HD A relu(A x) { return x < A(0) ? A(0) : x; }
// torch's relu backward passes the gradient where the output is not <= 0 (NaN passes).
template <typename A>
PIGAN_HD A relu_grad(A x) { return x <= A(0) ? A(0) : A(1); }

// Chain rule through the density activation, g * act'(x), with torch's NaN behaviour. relu's backward
// selects (an upstream NaN becomes 0 where the input is <= 0); softplus's multiplies (NaN * 0 stays
// NaN where its derivative underflows to 0). Only a NaN product needs the select: a branch that is
// (almost) never taken costs nothing, where a select on ds (random relu signs) cost a mispredicted
// branch per sample.
template <typename A>
PIGAN_HD A act_chain(A g, A ds, bool relu) {
  A v = g * ds;
  if (relu && v != v && ds == A(0)) v = A(0);
  return v;
}

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
