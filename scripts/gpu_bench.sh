#!/usr/bin/env bash
# The GPU benchmark table in one call, on a machine whose image has JAX with CUDA, flax,
# optax, chex and orbax-checkpoint but no brax or mujoco and no network.
#
# Before (on a machine with network, in the repository root):
#   PYTHONS=<the GPU image's python, e.g. 3.11> scripts/fetch_wheels.sh     # fills wheels/
# Then, from the session, with the device tool:
#   run(command="bash scripts/gpu_bench.sh all", carry=["wheels"], timeout_s=600)
# or stage by stage on the same warm machine (each stage installs if needed, < 10 min each):
#   bash scripts/gpu_bench.sh check        # install, device, tiny correctness tests
#   bash scripts/gpu_bench.sh throughput   # ant, N=4096: raw vs SPO vs ground truth, breakdown
#   bash scripts/gpu_bench.sh winrate      # win-rate share, N = 256..8192, H = 1000
#   bash scripts/gpu_bench.sh seeds        # ant, N=256 per seed: S = 1, 4, 16, 64 vmapped
# Results: $OUT/gpu_<stage>.json and .md (markdown tables), $OUT/env.txt (device, versions).
# Environment: ENV (default ant), NUM_ENVS (4096), SEEDS_NUM_ENVS (256), REPEATS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
OUT=${OUT:-bench_results/gpu}
ENV_NAME=${ENV:-ant}
NUM_ENVS=${NUM_ENVS:-4096}
SEEDS_NUM_ENVS=${SEEDS_NUM_ENVS:-256}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

install() {
  if python -c "import brax, mujoco, tyro, rich" 2>/dev/null; then return; fi
  if [ ! -d wheels ]; then
    echo "no wheels/ folder: run scripts/fetch_wheels.sh on a machine with network and carry it" >&2
    exit 2
  fi
  # Pin what the image has so that pip can never swap the CUDA jax for a CPU one.
  pip freeze | grep -iE '^(jax|jaxlib|jax-cuda[0-9a-z-]*|flax|optax|chex|orbax-checkpoint|numpy|scipy)==' \
    > "$OUT/constraints.txt" || true
  pip install --no-index --find-links wheels -c "$OUT/constraints.txt" brax==0.14.2 tyro rich
}

check() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python -c "import jax, brax; print('jax', jax.__version__, jax.devices()); print('brax', brax.__version__)"
    python --version; } | tee "$OUT/env.txt"
  python -c "import jax; assert jax.devices()[0].platform == 'gpu', jax.devices()"
  python -m pytest -x -q -p no:cacheprovider tests/test_rollout.py tests/test_bench.py \
    2>&1 | tail -3 | tee "$OUT/tests.txt"
}

bench() {  # name, then spo-bench arguments
  local name=$1; shift
  python -m spo_jax.bench --env "$ENV_NAME" --repeats "$REPEATS" --out "$OUT/gpu_$name.json" "$@" \
    2>&1 | grep -v -i "warn" | tee "$OUT/gpu_$name.md"
}

throughput() {
  bench throughput --num-envs "$NUM_ENVS" --contenders raw,spo,ground_truth \
    --skip-time-to-target --winrate-sizes "" --seeds ""
}

winrate() {
  bench winrate --num-envs "$NUM_ENVS" --contenders spo --no-breakdown --skip-time-to-target \
    --winrate-sizes 256,1024,4096,8192 --winrate-horizon 1000 --seeds ""
}

seeds() {
  bench seeds --num-envs "$SEEDS_NUM_ENVS" --contenders spo --no-breakdown \
    --skip-time-to-target --winrate-sizes "" --seeds 1,4,16,64 --chunks default
}

install
case "$STAGE" in
  check) check ;;
  throughput) throughput ;;
  winrate) winrate ;;
  seeds) seeds ;;
  all) check; throughput; winrate; seeds ;;
  *) echo "unknown stage '$STAGE': use check, throughput, winrate, seeds or all" >&2; exit 2 ;;
esac
