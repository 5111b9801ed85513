// Host-side dispatch of the rendering kernels, shared by the CPU ops (render_cpu.cpp) and the CUDA
// launchers (composite.cu, sampling.cu): the element type and the compile-time channel count.
#pragma once

#include <cstdint>
#include <type_traits>

#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

namespace pigan {

template <typename T>
struct Type {
  using type = T;
};

// f(Type<T>{}) for T = float or double, and c10::Half / c10::BFloat16 when kHalves (the CUDA kernels
// read half inputs directly; the CPU ops widen them to float first).
template <bool kHalves, typename F>
void dispatch_float(c10::ScalarType dtype, const char* op, F&& f) {
  switch (dtype) {
    case c10::ScalarType::Float:
      f(Type<float>{});
      return;
    case c10::ScalarType::Double:
      f(Type<double>{});
      return;
    case c10::ScalarType::Half:
      if constexpr (kHalves) {
        f(Type<c10::Half>{});
        return;
      }
      break;
    case c10::ScalarType::BFloat16:
      if constexpr (kHalves) {
        f(Type<c10::BFloat16>{});
        return;
      }
      break;
    default:
      break;
  }
  TORCH_CHECK_TYPE(false, op, ": no kernel for dtype ", dtype);
}

// pi-GAN composites 3 channels, FENeRF 21, EG3D 32; anything else uses the generic kernel (NC = 0).
template <typename F>
void dispatch_channels(int64_t C, F&& f) {
  switch (C) {
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 21: f(std::integral_constant<int, 21>{}); break;
    case 32: f(std::integral_constant<int, 32>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// f(Type<T>{}, std::integral_constant<int, NC>{}): the compositing kernels' two template arguments.
template <bool kHalves, typename F>
void dispatch_float_channels(c10::ScalarType dtype, int64_t C, const char* op, F&& f) {
  dispatch_float<kHalves>(dtype, op, [&](auto t) { dispatch_channels(C, [&](auto nc) { f(t, nc); }); });
}

}  // namespace pigan
