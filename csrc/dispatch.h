// Host-side helpers: pick the compile-time channel count of the compositing kernels.
#pragma once

#include <cstdint>
#include <type_traits>

namespace pigan {

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

}  // namespace pigan
