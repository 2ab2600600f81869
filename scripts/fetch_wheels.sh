#!/usr/bin/env bash
# Download, on a machine with network, the wheels a GPU machine without network needs to run
# the benchmark: brax, mujoco(-mjx) and their dependencies, tyro and rich. The GPU image has
# JAX with CUDA, flax, optax, chex, orbax-checkpoint (and numpy, scipy): their wheels are
# dropped so that they are never replaced (a CPU jaxlib would shadow the CUDA one) and the
# folder stays small enough to carry (< 64 MiB). wheels/ is gitignored: never commit it.
#
#   scripts/fetch_wheels.sh                 # Python 3.11 and 3.12 (brax 0.14.2 needs >= 3.11), x86_64 Linux
#   PYTHONS="3.11" scripts/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONS=${PYTHONS:-$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
PACKAGES=(brax==0.14.2 tyro rich)
rm -rf wheels && mkdir -p wheels
for py in $PYTHONS; do
  pip download --quiet -d wheels --only-binary=:all: --python-version "$py" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 "${PACKAGES[@]}"
done
# What the GPU image already has (see the docstring): never carried, never reinstalled.
rm -f wheels/jax-* wheels/jaxlib-* wheels/jax_cuda* wheels/numpy-* wheels/scipy-* \
  wheels/flax-* wheels/optax-* wheels/chex-* wheels/orbax_checkpoint-* wheels/tensorstore-* \
  wheels/ml_dtypes-* wheels/nvidia_*
du -sh wheels
