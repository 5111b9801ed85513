// Run-time choice of the x86 ISA level of the vectorised host loops (film rows, compositing blocks).
//
// target_clones picks a clone by itself with no way to force a lower one, so the loops are compiled
// here once per level through target attributes, and a table of function pointers per caller is filled
// once from cpu_isa(): the best level this CPU (and OS) supports, or the one PIGAN_CPU_ISA names
// (baseline | avx2 | avx512; unset, empty or "auto" = the best). An unknown name, or a level the CPU
// lacks, is an error (std::invalid_argument, raised when pigan._C loads): a forced path must really be
// the one that runs, or a comparison of paths would compare a path with itself.
//
// Levels: baseline = x86-64 (SSE2, what the rest of the library is compiled for); avx2 = AVX2 + FMA (the
// vector core of x86-64-v3); avx512 = that plus AVX-512 F/CD/BW/DQ/VL with 512-bit vectors. Each variant
// is compiled for exactly the features cpu_isa.cpp checks at run time, so a CPU (or VM) that hides one of
// x86-64-v3's scalar extensions still runs its vector level safely. The attributes
// list ISA extensions rather than arch=x86-64-v3: GCC refuses to inline a function into one with a
// different arch=, and the loops rely on inlining the default-target helpers into each variant.
// Host-only: keep it out of CUDA translation units. Builds other than GCC on x86-64 (aarch64, clang)
// have the baseline level only.
#pragma once

#include <string>

namespace pigan {

enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The level in use (decided on the first call, from the CPU and $PIGAN_CPU_ISA; throws
// std::invalid_argument on a bad $PIGAN_CPU_ISA, on every call).
CpuIsa cpu_isa();
const char* cpu_isa_name(CpuIsa isa);
// The levels this CPU supports, e.g. "baseline,avx2".
std::string cpu_isa_supported();

}  // namespace pigan

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define PIGAN_HAVE_ISA_VARIANTS 1
#define PIGAN_ISA_ATTR_baseline
#define PIGAN_ISA_ATTR_avx2 __attribute__((target("avx,avx2,fma")))
#define PIGAN_ISA_ATTR_avx512                                                                              \
  __attribute__((target("avx,avx2,fma,avx512f,avx512cd,avx512bw,avx512dq,avx512vl,"                    \
                        "prefer-vector-width=512")))
#else
#define PIGAN_HAVE_ISA_VARIANTS 0
#endif

// PIGAN_FOR_EACH_ISA(M): M(attribute, suffix) once per compiled level, e.g. to define
// `ATTR void f_##SUFFIX(...) { f_body(...); }` for each; the body is an always-inline function so
// that it is vectorised for the caller's ISA.
#if PIGAN_HAVE_ISA_VARIANTS
#define PIGAN_FOR_EACH_ISA(M) \
  M(PIGAN_ISA_ATTR_baseline, baseline) M(PIGAN_ISA_ATTR_avx2, avx2) M(PIGAN_ISA_ATTR_avx512, avx512)
#else
#define PIGAN_FOR_EACH_ISA(M) M(, baseline)
#endif

#if defined(__GNUC__)
#define PIGAN_ALWAYS_INLINE inline __attribute__((always_inline))
#define PIGAN_NOINLINE __attribute__((noinline))
#else
#define PIGAN_ALWAYS_INLINE inline
#define PIGAN_NOINLINE
#endif

// The variant of `name` (defined by PIGAN_FOR_EACH_ISA as name##_baseline, _avx2, _avx512) for isa;
// template arguments, if any, follow: PIGAN_ISA_PICK(f, isa, <T, NC>).
#if PIGAN_HAVE_ISA_VARIANTS
#define PIGAN_ISA_PICK(name, isa, ...)                                             \
  ((isa) == ::pigan::CpuIsa::kAvx512 ? &name##_avx512 __VA_ARGS__                  \
   : (isa) == ::pigan::CpuIsa::kAvx2 ? &name##_avx2 __VA_ARGS__                    \
                                     : &name##_baseline __VA_ARGS__)
#else
#define PIGAN_ISA_PICK(name, isa, ...) (&name##_baseline __VA_ARGS__)
#endif
