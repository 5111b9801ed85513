#!/usr/bin/env bash
# One-command GPU verdict of pigan-kernels:
#   scripts/gpu_check.sh OUT_DIR             on a machine with a CUDA GPU
#   scripts/gpu_check.sh --dry-run OUT_DIR   rehearsal on the CPU (or PIGAN_GPU_DRY_RUN=1)
#
# Phases, each under its own `timeout` so a slow or hung phase cannot starve the others; every phase
# runs even when an earlier one failed. Budgets in seconds (PIGAN_BUDGET_<PHASE> overrides one),
# 515 s in all, inside 9 minutes with process start-up:
#   preflight     25  GPU, versions, tools (no CUDA device and no dry run: exit 2, one line)
#   build        130  pip install --no-build-isolation --no-deps -e . (MAX_JOBS=nproc, this GPU's
#                     arch only), pigan._C.build_info(), tests/test_native_build.py
#   tests         90  pytest -m gpu tests (no -x; junit XML)
#   bench_film    80  FiLM layer 256->256, 2^20 points, fp32/tf32/bf16, fwd and fwd+bwd: ours vs
#                     cuBLAS addmm vs eager vs torch.compile (autotune and compile inside the budget)
#   bench_render  45  SIREN trunk fwd and fwd+bwd; compositing fwd+bwd B=28 64x64 S=24 (and C=32
#                     midpoint) with device copy bandwidth; sample_pdf, merge
#   bench_train   90  one CelebA generator train step B=28 64x64 12+12 bf16 autocast: auto vs
#                     reference vs torch.compile(reference)
#   bench_skip    45  a heads generator distilled on the spot (scripts/distill_faces.py, 600 steps),
#                     then B=8 renders at 256x256, 24+24 samples: exact vs skipping empty space
#   summary       10  OUT/summary.md + OUT/summary.json (scripts/gpu_check_report.py), always
# A phase also stops early enough to leave the summary its time inside the 515 s total. Benchmarks
# stream each finished case to OUT/bench.jsonl, so a phase cut short keeps the cases it finished
# (torch.compile cases run last).
#
# Dry run: CPU-only build (PIGAN_GPU_SKIP_BUILD=1 skips it), `pytest -m gpu` (every case skips, which
# rehearses the selection and the junit parsing), the same benchmark cases on the CPU at tiny sizes
# (PIGAN_BENCH_TINY=1). A fake nvidia-smi on PATH rehearses its parsing. PIGAN_GPU_BENCH_K adds a
# pytest -k filter to every benchmark phase.
# Exit status: 0 when every phase passed, 1 when any failed or ran out of time, 2 when there is no
# CUDA device (and no dry run) or OUT_DIR is missing.
set -uo pipefail

DRY=${PIGAN_GPU_DRY_RUN:-0}
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
if [ $# -ne 1 ]; then
  echo "usage: scripts/gpu_check.sh [--dry-run] OUT_DIR" >&2; exit 2
fi
mkdir -p "$1" && OUT=$(cd "$1" && pwd) || { echo "gpu_check: cannot create $1" >&2; exit 2; }
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=${PYTHON:-python3}
TOTAL=${PIGAN_BUDGET_TOTAL:-515}
SUMMARY_BUDGET=${PIGAN_BUDGET_SUMMARY:-10}
START=$(date +%s)
rm -f "$OUT/phases.tsv" "$OUT/bench.jsonl" "$OUT/summary.md" "$OUT/summary.json"
export PIGAN_GPU_DRY_RUN=$DRY PY OUT ROOT

log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }

# run_phase NAME BUDGET COMMAND: COMMAND (a bash string) under timeout; its output in OUT/NAME.log;
# one line "name rc seconds budget" in OUT/phases.tsv (rc 124: out of time).
run_phase() {
  local name=$1 budget=$2 cmd=$3 over left t0 rc
  over="PIGAN_BUDGET_${name^^}"
  budget=${!over:-$budget}
  left=$(( START + TOTAL - $(date +%s) ))
  left=$(( left - SUMMARY_BUDGET ))
  if [ "$left" -lt "$budget" ]; then budget=$left; fi
  if [ "$budget" -lt 5 ]; then
    log "$name: SKIPPED (total budget of $TOTAL s spent)"
    printf '%s\t%s\t%s\t%s\n' "$name" skipped 0 "$budget" >> "$OUT/phases.tsv"
    return
  fi
  log "$name (budget $budget s)"
  t0=$(date +%s)
  timeout --kill-after=5 "$budget" bash -c "$cmd" > "$OUT/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$budget" >> "$OUT/phases.tsv"
  case $rc in
    0) log "$name: ok in $(( $(date +%s) - t0 )) s" ;;
    124|137) log "$name: OUT OF TIME after $budget s (see $name.log)" ;;
    *) log "$name: FAILED, exit $rc (see $name.log)"; tail -5 "$OUT/$name.log" | sed 's/^/    /' ;;
  esac
}

# ---------------------------------------------------------------- preflight (not timed by a phase:
# it decides whether there is anything to run)
GPU_SMI=$(timeout 15 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
          --format=csv,noheader 2>&1) || GPU_SMI="nvidia-smi failed: ${GPU_SMI:-not found}"
echo "$GPU_SMI" > "$OUT/nvidia-smi.txt"
if ! timeout 60 "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch" | tee -a "$OUT/gpu_check.log" >&2; exit 2
fi
if [ "$DRY" != 1 ]; then
  if ! timeout 60 "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False; nvidia-smi: $(head -1 "$OUT/nvidia-smi.txt")); run it on a GPU machine, or rehearse with --dry-run" \
      | tee -a "$OUT/gpu_check.log" >&2
    exit 2
  fi
  ARCH=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}
else
  log "DRY RUN: CPU rehearsal at tiny sizes; its numbers are not measurements"
  ARCH=""
fi
export ARCH
CUDA_HOME=${CUDA_HOME:-}
if [ -z "$CUDA_HOME" ] || [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  CUDA_HOME=""
  for c in /usr/local/cuda /usr/local/cuda-*; do
    if [ -x "$c/bin/nvcc" ]; then CUDA_HOME=$c; break; fi
  done
  if [ -z "$CUDA_HOME" ] && command -v nvcc >/dev/null; then
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  fi
fi
export CUDA_HOME

run_phase preflight 25 '
  "$PY" scripts/gpu_check_report.py --env "$OUT/env.json" --nvidia-smi "$OUT/nvidia-smi.txt" --arch "$ARCH"
  cat "$OUT/env.json"
  "$PY" -c "import pytest, pytest_benchmark" || { echo "pytest and pytest-benchmark are needed"; exit 1; }
'

# ---------------------------------------------------------------- build
if [ "$DRY" = 1 ]; then
  BUILD_ENV="PIGAN_NO_CUDA=1"
else
  BUILD_ENV="TORCH_CUDA_ARCH_LIST=$ARCH"
fi
if [ "${PIGAN_GPU_SKIP_BUILD:-0}" = 1 ]; then
  BUILD_CMD='echo "build skipped (PIGAN_GPU_SKIP_BUILD=1): using the installed pigan._C"'
else
  BUILD_CMD="env $BUILD_ENV MAX_JOBS=\${MAX_JOBS:-\$(nproc)} \"\$PY\" -m pip install --no-build-isolation --no-deps -e ."
fi
run_phase build 130 "
  set -o pipefail
  $BUILD_CMD || exit 1
  cd /tmp && \"\$PY\" -c 'import json, torch, pigan._C as C; print(json.dumps(C.build_info()))' > \"\$OUT/build_info.json\" || exit 1
  cd \"\$ROOT\" && cat \"\$OUT/build_info.json\"
  $( [ "$DRY" = 1 ] && echo "export PIGAN_NO_CUDA=1;" ) \"\$PY\" -m pytest tests/test_native_build.py -q -p no:cacheprovider \
    --junitxml=\"\$OUT/build_tests.xml\"
"

# ---------------------------------------------------------------- GPU tests
run_phase tests 90 '
  "$PY" -m pytest tests -m gpu -v -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml"
  rc=$?
  if [ $rc = 5 ]; then echo "no test carries the gpu marker"; fi
  exit $rc
'

# ---------------------------------------------------------------- benchmarks
export PIGAN_BENCH_JSONL="$OUT/bench.jsonl"
if [ "$DRY" = 1 ]; then export PIGAN_BENCH_TINY=1; fi
bench() {  # bench PHASE BUDGET K-EXPRESSION
  local k="$3"
  if [ -n "${PIGAN_GPU_BENCH_K:-}" ]; then k="($k) and ($PIGAN_GPU_BENCH_K)"; fi
  run_phase "$1" "$2" "\"\$PY\" -m pytest benchmarks -m gpucheck -k '$k' --benchmark-only -p no:cacheprovider \
    --benchmark-json=\"\$OUT/$1.json\" --benchmark-columns=min,median,rounds"
}
bench bench_film 80 "film_layer"
bench bench_render 45 "film_stack or composite or midpoint or device_copy or sample_pdf or merge"
bench bench_train 90 "train_step"
if [ "$DRY" = 1 ]; then HEADS_STEPS=20; DISTILL_DEVICE=""; else HEADS_STEPS=600; DISTILL_DEVICE="--device cuda"; fi
export PIGAN_BENCH_RENDER_CHECKPOINT="$OUT/heads.pt"
run_phase bench_skip 45 "
  \"\$PY\" scripts/distill_faces.py --out \"\$PIGAN_BENCH_RENDER_CHECKPOINT\" --steps $HEADS_STEPS --batch 4 --points 2048 \
    --lr 3e-4 $DISTILL_DEVICE || exit 1
  \"\$PY\" -m pytest benchmarks -m gpucheck -k render_batch --benchmark-only -p no:cacheprovider \
    --benchmark-json=\"\$OUT/bench_skip.json\" --benchmark-columns=min,median,rounds
"

# ---------------------------------------------------------------- summary
log "summary (budget $SUMMARY_BUDGET s)"
timeout --kill-after=5 "$SUMMARY_BUDGET" "$PY" scripts/gpu_check_report.py --summarize "$OUT" \
  > "$OUT/summary.log" 2>&1 || { log "summary: FAILED (see summary.log)"; tail -5 "$OUT/summary.log"; }
cat "$OUT/summary.md" 2>/dev/null

status=0
while IFS=$'\t' read -r _ rc _ _; do
  if [ "$rc" != 0 ]; then status=1; fi
done < "$OUT/phases.tsv"
if [ ! -s "$OUT/summary.json" ]; then status=1; fi
log "done in $(( $(date +%s) - START )) s, status $status ($OUT/summary.md)"
exit $status
