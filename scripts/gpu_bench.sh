#!/usr/bin/env bash
# The GPU benchmark table in one call, on a machine whose image has JAX with CUDA, flax,
# optax, chex and orbax-checkpoint but no brax or mujoco and no network.
#
# Before (on a machine with network, in the repository root):
#   PYTHONS=3.12 scripts/fetch_wheels.sh     # fills wheels/ (the image's python3 was 3.12.3)
# Then, from the session, with the device tool, stage by stage on the same warm machine (each
# stage installs if needed). On an H200 (2026-11-27) each SPO program took 35-65 s to compile:
# `check` + `throughput` filled one call of about 5 minutes, and `all` does not fit one call.
#   run(command="TESTS_LIMIT=60 bash scripts/gpu_bench.sh check; \
#                STAGE_LIMIT=290 bash scripts/gpu_bench.sh throughput", carry=["wheels"], timeout_s=420)
#   bash scripts/gpu_bench.sh check        # install, device, tiny correctness tests
#   bash scripts/gpu_bench.sh throughput   # ant, N=4096: raw vs SPO vs ground truth, breakdown
#   bash scripts/gpu_bench.sh winrate      # win-rate share, N = 256..8192, H = 1000
#   bash scripts/gpu_bench.sh seeds        # ant, N=256 per seed: S = 1, 4, 16, 64 vmapped
# The second lease's call (314 s): SEEDS=1,64 STAGE_LIMIT=190 ... seeds, then throughput with
# BACKEND=spring CONTENDERS=raw,spo BREAKDOWN=0 TAG=_spring, then with ENV=halfcheetah
# (docs/performance.md, "GPU", gives the exact lines).
# Results: $OUT/gpu_<stage>.json and .md (markdown tables), $OUT/env.txt (device, versions).
# Environment: ENV (default ant), BACKEND (default: the preset's), NUM_ENVS (4096),
# SEEDS_NUM_ENVS (256), REPEATS (3), SEEDS (1,4,16,64), WINRATE_SIZES (256,1024,4096,8192),
# CONTENDERS (throughput stage, default raw,spo,ground_truth), BREAKDOWN (1; 0 skips the SPO
# stage breakdown), EXTRA_ARGS (more spo-bench arguments, e.g. "--compaction-factor 0"),
# TAG (appended to the result files' names, so that one call can run a stage twice, e.g.
# TAG=_spring),
# STAGE_LIMIT (seconds one stage may run, default 600: a stage past it is stopped, its table
# left as far as it got and marked INCOMPLETE), PYTHON (default python3: the GPU image has no
# `python`), ALLOW_CPU=1 (dry-run the commands on a CPU machine; figures from it are not GPU
# figures).
# Bad input (an unknown stage, no wheels/ folder, JAX seeing no GPU): one line, exit code 2.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
case "$STAGE" in
  check|throughput|winrate|seeds|all) ;;
  *) echo "unknown stage '$STAGE': use check, throughput, winrate, seeds or all" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
STAGE_LIMIT=${STAGE_LIMIT:-600}
OUT=${OUT:-bench_results/gpu}
ENV_NAME=${ENV:-ant}
BACKEND=${BACKEND:-}
CONTENDERS=${CONTENDERS:-raw,spo,ground_truth}
BREAKDOWN=${BREAKDOWN:-1}
TAG=${TAG:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
NUM_ENVS=${NUM_ENVS:-4096}
SEEDS_NUM_ENVS=${SEEDS_NUM_ENVS:-256}
REPEATS=${REPEATS:-3}
SEEDS=${SEEDS:-1,4,16,64}
WINRATE_SIZES=${WINRATE_SIZES:-256,1024,4096,8192}
mkdir -p "$OUT"
# The GPU image sets MUJOCO_GL=egl without the EGL library PyOpenGL looks for, and `import
# mujoco` (through brax) then dies in OpenGL's EGL bindings; nothing here renders.
export MUJOCO_GL=disable
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

install() {
  if $PY -c "import brax, mujoco, tyro, rich, tensorboardX" 2>/dev/null; then return; fi
  if [ ! -d wheels ]; then
    echo "no wheels/ folder: run scripts/fetch_wheels.sh on a machine with network and carry it" >&2
    exit 2
  fi
  # Pin what the image has so that pip can never swap the CUDA jax for a CPU one.
  $PY -m pip freeze | grep -iE '^(jax|jaxlib|jax-cuda[0-9a-z-]*|flax|optax|chex|orbax-checkpoint|numpy|scipy)==' \
    > "$OUT/constraints.txt" || true
  $PY -m pip install -q --no-index --find-links wheels -c "$OUT/constraints.txt" \
    brax==0.14.2 tyro rich tensorboardX
}

require_gpu() {
  if [ "${ALLOW_CPU:-0}" = 1 ]; then return; fi
  if ! $PY -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')" 2>/dev/null; then
    echo "JAX sees no GPU here ($($PY -c 'import jax; print(jax.devices())' 2>&1 | tail -1)):" \
      "run on the GPU machine, or set ALLOW_CPU=1 for a dry run" >&2
    exit 2
  fi
}

describe() {  # every stage: the device and versions its figures come from
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    $PY -c "import jax, jaxlib, brax, mujoco, flax, optax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices()); print('brax', brax.__version__, 'mujoco', mujoco.__version__, 'flax', flax.__version__, 'optax', optax.__version__)"
    $PY --version; echo "XLA_FLAGS=${XLA_FLAGS:-}"; } > "$OUT/env.txt"
}

check() {
  cat "$OUT/env.txt"
  # A short correctness subset (the rollout's compaction, chunking and segments, all win-rate
  # maths) under the accelerator's numerics; the whole suite is CI's job, on the CPU.
  timeout "${TESTS_LIMIT:-150}" $PY -m pytest -x -q -p no:cacheprovider tests/test_winrate.py \
    tests/test_rollout.py -k "not vmapped_seeds_simulate" 2>&1 | tail -3 | tee "$OUT/tests.txt"
}

bench() {  # name, then spo-bench arguments
  local name=$1$TAG; shift
  local rc=0
  timeout "$STAGE_LIMIT" $PY -m spo_jax.bench --env "$ENV_NAME" ${BACKEND:+--backend "$BACKEND"} \
    --repeats "$REPEATS" $EXTRA_ARGS \
    --out "$OUT/gpu_$name.json" "$@" 2>&1 | grep -v -i "warn" | tee "$OUT/gpu_$name.md" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "INCOMPLETE: stage $name stopped (exit $rc, limit ${STAGE_LIMIT}s)" | tee -a "$OUT/gpu_$name.md"
  fi
}

throughput() {
  local breakdown=()
  if [ "$BREAKDOWN" = 0 ]; then breakdown=(--no-breakdown); fi
  bench throughput --num-envs "$NUM_ENVS" --contenders "$CONTENDERS" "${breakdown[@]}" \
    --skip-time-to-target --winrate-sizes "" --seeds ""
}

winrate() {
  bench winrate --num-envs "$NUM_ENVS" --contenders spo --no-breakdown --skip-time-to-target \
    --winrate-sizes "$WINRATE_SIZES" --winrate-horizon 1000 --seeds ""
}

seeds() {
  # --skip-throughput: section 1 would compile one more SPO program (up to a minute here)
  bench seeds --num-envs "$SEEDS_NUM_ENVS" --contenders spo --skip-throughput \
    --skip-time-to-target --winrate-sizes "" --seeds "$SEEDS" --chunks default
}

install
require_gpu
describe
case "$STAGE" in
  check) check ;;
  throughput) throughput ;;
  winrate) winrate ;;
  seeds) seeds ;;
  all) check; throughput; seeds; winrate ;;
esac
