// The ISA level of the vectorised host loops: see cpu_isa.h.
#include "cpu_isa.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace pigan {

namespace {

bool supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kBaseline:
      return true;
#if PIGAN_HAVE_ISA_VARIANTS
    // libgcc's checks include the OS's saving of the AVX / AVX-512 registers (XCR0).
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::kAvx512:
      return supports(CpuIsa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    default:
      return false;
  }
}

CpuIsa best() {
  for (CpuIsa isa : {CpuIsa::kAvx512, CpuIsa::kAvx2})
    if (supports(isa)) return isa;
  return CpuIsa::kBaseline;
}

CpuIsa choose() {
#if PIGAN_HAVE_ISA_VARIANTS
  __builtin_cpu_init();  // may run before libgcc's constructor when called from another one
#endif
  const char* env = std::getenv("PIGAN_CPU_ISA");
  const std::string want = env ? env : "";
  if (want.empty() || want == "auto") return best();
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (want != cpu_isa_name(isa)) continue;
    if (!supports(isa))
      throw std::invalid_argument("PIGAN_CPU_ISA=" + want + ": this CPU " +
#if PIGAN_HAVE_ISA_VARIANTS
                                  "lacks it"
#else
                                  "is not x86-64; only the portable code is built"
#endif
                                  + std::string(" (it supports: ") + cpu_isa_supported() + ")");
    return isa;
  }
  throw std::invalid_argument("PIGAN_CPU_ISA=" + want +
                              ": unknown ISA level; use baseline, avx2, avx512 or auto (this CPU supports: " +
                              cpu_isa_supported() + ")");
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
    default: return "baseline";
  }
}

std::string cpu_isa_supported() {
  std::string s;
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (supports(isa)) s += std::string(s.empty() ? "" : ",") + cpu_isa_name(isa);
  return s;
}

CpuIsa cpu_isa() {
  // A throwing initialiser leaves the static unset: every later call reports the same error.
  static const CpuIsa isa = choose();
  return isa;
}

}  // namespace pigan
