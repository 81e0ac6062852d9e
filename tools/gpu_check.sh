#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step_* functions are called indirectly, as "step_$name"
# One command that verifies snnkern on a machine with an NVIDIA GPU (docs/gpu.md):
#
#   tools/gpu_check.sh [STEP ...]        STEP: build test bench epochs summary all (default: all)
#
#   build    SNNKERN_CUDA=1 editable build for the GPU present (skipped when csrc/ is unchanged since
#            the last build here), compiled_with_cuda() must be True; peers from .gpu-wheels/
#   test     the whole test suite (cpu, emulated and cuda), junit XML and counts
#   bench    benchmarks/run.py --device cuda
#   epochs   benchmarks/epochs.py --device cuda
#   summary  SUMMARY.md: machine, build, tests, the issue's goals met/missed, failures
#
# Each step stays under GPU_CHECK_STEP_TIMEOUT seconds (default 570) and can run alone, in a later
# command on the same machine: only `build` compiles (and skips that when nothing changed). With
# GPU_CHECK_BUDGET seconds for the whole command (default 580 when $OUT is set, i.e. on a lent
# machine), steps get what is left, so `build test` fits one 10-minute command. Results:
# benchmarks/results/<gpu-slug>/ (logs/ inside); with $OUT set, after every step, $OUT/gpu_check.log
# and $OUT/results/ (the readable .md files and results.tar.gz of the whole folder).
#
# Environment: GPU_CHECK_DRY=1 runs on the CPU at --quick sizes without building (a plumbing check);
# GPU_CHECK_RESULTS (results folder), GPU_CHECK_SITE (where peer wheels are installed, default
# build/gpu-check-site), GPU_CHECK_REBUILD=1, GPU_CHECK_STEP_TIMEOUT, GPU_CHECK_PYTEST_ARGS and
# GPU_CHECK_TEST_PART (run the suite in named parts, e.g. by test file, when one step is too long),
# GPU_CHECK_BENCH_ARGS, GPU_CHECK_EPOCHS_ARGS, GPU_CHECK_WORKERS (pytest -n), PYTHON, MAX_JOBS (16).
set -uo pipefail
START=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-$(command -v python3 || command -v python)}
DRY=${GPU_CHECK_DRY:-0}
[ "$DRY" = 0 ] && DEVICE=cuda || DEVICE=cpu
STEP_TIMEOUT=${GPU_CHECK_STEP_TIMEOUT:-570}
BUDGET=${GPU_CHECK_BUDGET:-}
[ -z "$BUDGET" ] && { [ -n "${OUT:-}" ] && BUDGET=580 || BUDGET=0; }
STEP_END=0  # SECONDS by which the running step must be done
SITE=${GPU_CHECK_SITE:-$ROOT/build/gpu-check-site}
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

usage() { awk 'NR > 2 && !/^#/ {exit} NR > 2 {sub(/^# ?/, ""); print}' "$0"; }

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
for s in "${steps[@]}"; do
  case $s in
    all) ;;
    build|test|bench|epochs|summary) ;;
    -h|--help|help) usage; exit 0 ;;
    *) echo "unknown step: $s" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "${steps[*]}" = all ]; then steps=(build test bench epochs summary); fi

if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device visible to torch ($PY); GPU_CHECK_DRY=1 runs the plumbing on the CPU" >&2
  exit 2
fi
SLUG=$("$PY" tools/gpu_check.py slug --device "$DEVICE") || exit 2
if [ "$DRY" = 0 ]; then
  RESULTS=${GPU_CHECK_RESULTS:-benchmarks/results/$SLUG}
else
  RESULTS=${GPU_CHECK_RESULTS:-benchmarks/results/$SLUG-quick}  # *-quick/ is ignored by git
fi
mkdir -p "$RESULTS/logs" || exit 2
RESULTS=$(cd "$RESULTS" && pwd)
LOGS=$RESULTS/logs
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
echo "gpu_check: steps ${steps[*]} | device $DEVICE ($SLUG) | results $RESULTS | python $PY"

# --------------------------------------------------------------------------------------------
words() {  # the shell words of "$1" (quotes honoured), one per line, for mapfile
  "$PY" -c 'import shlex, sys; sys.stdout.write("".join(w + "\n" for w in shlex.split(sys.argv[1])))' "$1"
}

left() {  # seconds left to the running step
  local n=$((STEP_END - SECONDS))
  [ "$n" -lt 1 ] && n=1
  echo "$n"
}

snnkern_cuda() {  # prints True/False, or fails when snnkern does not import
  "$PY" -c "import snnkern; print(snnkern.compiled_with_cuda())"
}

require_built() {
  local got
  got=$(snnkern_cuda) || { echo "snnkern does not import: run the build step first"; return 1; }
  if [ "$DRY" = 0 ] && [ "$got" != True ]; then
    echo "snnkern is not built with CUDA here (compiled_with_cuda: $got): run 'tools/gpu_check.sh build' first"
    return 1
  fi
}

source_hash() {  # what the extension is built from, and for which GPU
  { find csrc -type f | LC_ALL=C sort | xargs sha256sum; sha256sum setup.py; echo "arch $1"; } | sha256sum | cut -d' ' -f1
}

install_peers() {
  if [ ! -d .gpu-wheels ]; then
    echo "no .gpu-wheels/: peers not installed (their benchmark rows will say skipped)"
    return 0
  fi
  local stamp have name whl
  stamp=$(find .gpu-wheels -maxdepth 1 -type f -name '*.whl' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  have=$(cat "$SITE/.wheels.sha256" 2>/dev/null || true)
  if [ "$stamp" = "$have" ]; then
    echo "peer wheels already installed in $SITE"
    return 0
  fi
  mkdir -p "$SITE"
  for whl in .gpu-wheels/*.whl; do
    name=$(basename "$whl"); name=${name%%-*}
    if "$PY" -m pip install -q --no-deps --no-index --only-binary=:all: --find-links .gpu-wheels \
        --target "$SITE" --upgrade "$name"; then
      echo "peer installed: $name"
    else
      echo "WARNING: peer wheel $name did not install; the rows that need it will say skipped"
    fi
  done
  echo "$stamp" > "$SITE/.wheels.sha256"
  rm -f "$SITE/spikingjelly/_ops/lif/_native_build.json"  # a reinstalled spikingjelly lost its native op
}

step_build() {
  local arch got built=rebuilt hash
  if [ "$DRY" != 0 ]; then
    echo "DRY: no CUDA build; the snnkern already built here is used"
    got=$(snnkern_cuda) || { echo "snnkern does not import"; return 1; }
    install_peers
    "$PY" tools/gpu_check.py build-info --results "$RESULTS" --dry --build "dry run: not built" --compiled "$got" >/dev/null
    return 0
  fi
  nvidia-smi || echo "WARNING: nvidia-smi failed"
  command -v nvcc >/dev/null && nvcc --version | tail -n 1
  arch=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || return 1
  hash=$(source_hash "$arch")
  if [ "${GPU_CHECK_REBUILD:-0}" != 1 ] && [ "$(cat build/gpu-check-build.sha256 2>/dev/null)" = "$hash" ] \
      && [ "$(snnkern_cuda 2>/dev/null)" = True ]; then
    echo "snnkern already built here from these sources for $arch (GPU_CHECK_REBUILD=1 rebuilds)"
    built="reused (sources unchanged)"
  else
    echo "building: SNNKERN_CUDA=1 TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=${MAX_JOBS:-16}"
    local t0=$SECONDS
    if ! SNNKERN_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=${MAX_JOBS:-16} \
        timeout -k 30 "$(left)" "$PY" -m pip install --no-build-isolation --no-deps -e .; then
      "$PY" tools/gpu_check.py build-info --results "$RESULTS" --arch "$arch" --build "FAILED (pip install -e)" \
        --compiled False >/dev/null
      return 1
    fi
    built="rebuilt in $((SECONDS - t0)) s"
  fi
  got=$(snnkern_cuda)
  echo "snnkern.compiled_with_cuda(): $got"
  if [ "$got" != True ]; then
    "$PY" tools/gpu_check.py build-info --results "$RESULTS" --arch "$arch" --build "FAILED (no CUDA kernels)" \
      --compiled "$got" >/dev/null
    return 1
  fi
  mkdir -p build && echo "$hash" > build/gpu-check-build.sha256
  install_peers
  local sdist
  sdist=$(find .gpu-wheels -maxdepth 1 -name 'spikingjelly-*.tar.gz' 2>/dev/null | LC_ALL=C sort | tail -n 1)
  if [ -n "$sdist" ]; then
    timeout -k 10 "$(left)" "$PY" tools/gpu_check.py sj-native --sdist "$sdist" --site "$SITE" --build-dir build/gpu-check-sj \
      --arch "$arch" --results "$RESULTS" || echo "WARNING: SpikingJelly's native CUDA LIF did not build; its row will say skipped"
  fi
  "$PY" tools/gpu_check.py build-info --results "$RESULTS" --arch "$arch" --build "$built" --compiled "$got"
}

step_test() {
  require_built || return 1
  local part=${GPU_CHECK_TEST_PART:+-$GPU_CHECK_TEST_PART} rc words_=${GPU_CHECK_PYTEST_ARGS:-} extra=()
  local args=(-q -ra -p no:cacheprovider "--junitxml=$RESULTS/junit$part.xml")
  if "$PY" -c "import xdist" 2>/dev/null; then
    args+=(-n "${GPU_CHECK_WORKERS:-auto}")
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # 16 workers x all cores each would oversubscribe the CPU
  fi
  [ "$DRY" != 0 ] && [ -z "$words_" ] && words_="tests/test_data.py"  # dry: a small part, not the suite
  mapfile -t extra < <(words "$words_")
  if [ -z "$part" ]; then  # the whole suite replaces every earlier part
    rm -f "$RESULTS"/junit*.xml "$RESULTS"/pytest*.txt "$RESULTS"/pytest*.rc
  else
    rm -f "$RESULTS/junit$part.xml" "$RESULTS/pytest$part.txt" "$RESULTS/pytest$part.rc" \
      "$RESULTS/junit.xml" "$RESULTS/pytest.txt" "$RESULTS/pytest.rc"
  fi
  # SIGINT first: pytest then still writes the junit XML and its summary line
  timeout -s INT -k 30 "$(left)" "$PY" -m pytest "${args[@]}" "${extra[@]}" 2>&1 | tee "$RESULTS/pytest$part.txt"
  rc=${PIPESTATUS[0]}
  echo "$rc" > "$RESULTS/pytest$part.rc"
  "$PY" tools/gpu_check.py junit --results "$RESULTS"
  return "$rc"
}

step_bench() {
  require_built || return 1
  local args
  if [ "$DRY" != 0 ]; then
    args=(--quick --device cpu)
  else
    # rows stop starting 60 s before the step's limit; torch.compile rows run last with what is left
    local t
    t=$(left)
    args=(--device cuda --time-budget 1.5 --compile-timeout 120 --compile-budget 240
          --deadline-s $((t >= 240 ? t - 60 : t * 3 / 4)))
  fi
  mapfile -t -O "${#args[@]}" args < <(words "${GPU_CHECK_BENCH_ARGS:-}")
  timeout -s INT -k 30 "$(left)" "$PY" benchmarks/run.py "${args[@]}" --json "$RESULTS/results.json"
}

step_epochs() {
  require_built || return 1
  local args=(--device cuda)
  [ "$DRY" != 0 ] && args=(--quick --device cpu)
  mapfile -t -O "${#args[@]}" args < <(words "${GPU_CHECK_EPOCHS_ARGS:-}")
  timeout -s INT -k 30 "$(left)" "$PY" benchmarks/epochs.py "${args[@]}" --json "$RESULTS/epochs.json"
}

step_summary() {
  local dry=()
  [ "$DRY" != 0 ] && dry=(--dry)
  "$PY" tools/gpu_check.py summary --results "$RESULTS" "${dry[@]}"
}

run_step() {
  local name=$1 t0=$SECONDS rc record=$1 t=$STEP_TIMEOUT
  [ "$name" = test ] && [ -n "${GPU_CHECK_TEST_PART:-}" ] && record=test-$GPU_CHECK_TEST_PART
  if [ "$BUDGET" -gt 0 ] && [ "$name" != summary ]; then
    local rest=$((BUDGET - (SECONDS - START) - 20))
    [ "$rest" -lt "$t" ] && t=$rest
    if [ "$t" -lt 60 ]; then
      echo "=== gpu_check $name: not run, ${rest} s left of this command's budget (GPU_CHECK_BUDGET=$BUDGET) ==="
      "$PY" tools/gpu_check.py record --results "$RESULTS" --step "$record" --rc 1 --seconds 0 \
        --note "not run: too little of the command's time budget left; run it in its own command"
      return 1
    fi
  fi
  STEP_END=$((SECONDS + t))
  echo "=== gpu_check $name ($(date -u +%FT%TZ), at most $t s) ==="
  if [ -n "${OUT:-}" ]; then
    "step_$name" 2>&1 | tee "$LOGS/$name.log" | tee -a "$OUT/gpu_check.log"
  else
    "step_$name" 2>&1 | tee "$LOGS/$name.log"
  fi
  rc=${PIPESTATUS[0]}
  echo "=== gpu_check $name: exit $rc after $((SECONDS - t0)) s ===" | tee -a "$LOGS/$name.log" ${OUT:+"$OUT/gpu_check.log"}
  [ "$name" = summary ] || "$PY" tools/gpu_check.py record --results "$RESULTS" --step "$record" --rc "$rc" \
    --seconds $((SECONDS - t0))
  return "$rc"
}

export_out() {  # $OUT returns at most 8 files, 2 folders deep: the readable pages and one archive
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT/results"
  local f
  for f in SUMMARY.md tests.md results.md epochs.md; do
    [ -f "$RESULTS/$f" ] && cp "$RESULTS/$f" "$OUT/results/"
  done
  tar -czf "$OUT/results/results.tar.gz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
  echo "copied to $OUT/results/: $(cd "$OUT/results" && echo *)"
}

status=0
built_ok=1
for s in "${steps[@]}"; do
  if [ "$built_ok" = 0 ] && [ "$s" != summary ]; then
    echo "=== gpu_check $s: not run, the build failed ==="
    "$PY" tools/gpu_check.py record --results "$RESULTS" --step "$s" --rc 1 --seconds 0 --note "not run: the build failed"
    continue
  fi
  if ! run_step "$s"; then
    status=1
    [ "$s" = build ] && built_ok=0
  fi
  export_out  # after every step: a command stopped later still returns what was done
done
exit "$status"
