"""Initialise S seeds of a preset and call one vmapped training iteration, reporting whether
each returns: the reproducer of the CPU deadlock in docs/performance.md ("A fixed fault").

  timeout 200 python scripts/vmapped_seeds_probe.py ant 2          # the package's init
  timeout 200 python scripts/vmapped_seeds_probe.py ant 2 vmap     # the old, vmapped init
  timeout 200 python scripts/vmapped_seeds_probe.py ant 1,2        # S = 1 first, then S = 2

Prints "S init ok <seconds>" and "S iteration ok <seconds>" for each S whose calls returned;
a call that deadlocks prints nothing more, so run it under `timeout` (exit code 124 then).
With `vmap`, the networks' orthogonal initialisers become batched QR calls, which is what
deadlocked jaxlib's CPU thread pool (spo_jax/setup.py, `init_over_seeds`).
"""

import sys
import time

import jax
import jax.numpy as jnp

from spo_jax.presets import preset
from spo_jax.setup import build, init_over_seeds, over_seeds


def main(env_name: str, seeds: list[int], init_mode: str = "package",
         num_envs: int = 16) -> None:
  config = preset(env_name).replace(num_envs=num_envs, iterations_per_call=1)
  for s in seeds:
    setup = build(config, chunk=16)
    keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(s)])
    over = jax.vmap if init_mode == "vmap" else (lambda f: init_over_seeds(f, s))
    init = jax.jit(over(setup.fns.init)).lower(keys).compile()
    start = time.perf_counter()
    state = jax.block_until_ready(init(keys))
    print(s, "init ok", round(time.perf_counter() - start, 3), flush=True)
    iteration = jax.jit(over_seeds(setup.fns.iteration, s)).lower(state).compile()
    start = time.perf_counter()
    jax.block_until_ready(iteration(state))
    print(s, "iteration ok", round(time.perf_counter() - start, 3), flush=True)


if __name__ == "__main__":
  if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["vmap"], ["package"]):
    sys.exit("usage: vmapped_seeds_probe.py ENV S[,S...] [package|vmap]")
  main(sys.argv[1], [int(x) for x in sys.argv[2].split(",")], *sys.argv[3:])
