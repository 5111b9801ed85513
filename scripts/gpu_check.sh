#!/usr/bin/env bash
# One-command GPU validation of pigan-kernels (issue 4), under 10 minutes on one GPU:
#   scripts/gpu_check.sh OUT_DIR
# 1. builds pigan._C with its CUDA kernels for this GPU (pip install --no-build-isolation -e .,
#    against the torch already installed: torch is never reinstalled),
# 2. runs the GPU tests (pytest -m gpu, plus the build test),
# 3. runs the benchmarks (pytest-benchmark JSON),
# 4. writes OUT_DIR/summary.md (readable table with the GPU's name) and OUT_DIR/summary.json.
# Missing test tools (pytest, pytest-benchmark, ninja, triton) are installed from $PIGAN_WHEELS
# (a folder of wheels, for offline machines) or else from the package index.
# The exit status is non-zero when the build or any test fails.
set -uo pipefail

OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
status=0
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }

# --- CUDA toolkit
if [ -z "${CUDA_HOME:-}" ] || [ ! -x "${CUDA_HOME}/bin/nvcc" ]; then
  CUDA_HOME=""
  for c in /usr/local/cuda /usr/local/cuda-*; do
    if [ -x "$c/bin/nvcc" ]; then CUDA_HOME=$c; break; fi
  done
  if [ -z "$CUDA_HOME" ] && command -v nvcc >/dev/null; then
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  fi
fi
export CUDA_HOME
log "CUDA_HOME=${CUDA_HOME:-<none>} ($("${CUDA_HOME}/bin/nvcc" --version 2>/dev/null | tail -1))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/nvidia-smi.txt" 2>&1
GPU_NAME=$($PY -c "import torch; print(torch.cuda.get_device_name())" 2>/dev/null \
           || head -1 "$OUT/nvidia-smi.txt" | cut -d, -f1)
log "GPU: $GPU_NAME; torch $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')"
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)
  export TORCH_CUDA_ARCH_LIST
fi
log "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"

# --- missing tools only (never torch)
missing=()
for pair in pytest:pytest pytest_benchmark:pytest-benchmark ninja:ninja triton:triton; do
  $PY -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  if [ -n "${PIGAN_WHEELS:-}" ] && [ -d "$PIGAN_WHEELS" ]; then
    $PY -m pip install --no-index --find-links "$PIGAN_WHEELS" "${missing[@]}" >> "$OUT/install.log" 2>&1
  else
    $PY -m pip install "${missing[@]}" >> "$OUT/install.log" 2>&1
  fi || log "WARNING: could not install ${missing[*]} (see install.log)"
fi

# --- build
log "building pigan._C"
start=$(date +%s)
if MAX_JOBS=${MAX_JOBS:-$(nproc)} $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  log "build ok in $(( $(date +%s) - start )) s"
else
  log "BUILD FAILED (see build.log)"; tail -40 "$OUT/build.log"; exit 1
fi
$PY -c "import json, pigan._C as C; print(json.dumps(C.build_info()))" > "$OUT/build_info.json" || status=1
log "build_info: $(cat "$OUT/build_info.json")"

# --- GPU tests
log "GPU tests"
if ! $PY -m pytest tests/test_native_build.py -q -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1; then
  status=1; log "BUILD TEST FAILED"
fi
if ! $PY -m pytest tests -m gpu -q -x -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" \
      >> "$OUT/gpu_tests.log" 2>&1; then
  status=1; log "GPU TESTS FAILED"
fi
tail -5 "$OUT/gpu_tests.log" | tee -a "$OUT/gpu_check.log"

# --- benchmarks
log "benchmarks"
# CPU cases are left out (they take minutes and belong to the CPU table); PIGAN_BENCH_K overrides.
if ! $PY -m pytest benchmarks --benchmark-only --benchmark-json="$OUT/bench.json" -q -p no:cacheprovider \
      -k "${PIGAN_BENCH_K:-not cpu}" \
      > "$OUT/bench.log" 2>&1; then
  status=1; log "BENCHMARKS FAILED"
fi
tail -3 "$OUT/bench.log" | tee -a "$OUT/gpu_check.log"

# --- summary
if [ -f "$OUT/bench.json" ]; then
  $PY scripts/bench_summary.py "$OUT/bench.json" --md "$OUT/summary.md" --json "$OUT/summary.json" \
      --title "pigan-kernels GPU check ($(date -u +%Y-%m-%dT%H:%MZ))" \
      --machine "GPU: $GPU_NAME; CUDA_HOME $CUDA_HOME; arch $TORCH_CUDA_ARCH_LIST" || status=1
  {
    echo
    echo "GPU tests: $(tail -1 "$OUT/gpu_tests.log")"
    echo "build_info: $(cat "$OUT/build_info.json")"
  } >> "$OUT/summary.md"
  cat "$OUT/summary.md"
fi
log "done, status $status"
exit $status
