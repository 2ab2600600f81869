"""Call the vmapped training iteration of S seeds once and report whether it returns: the
reproducer of the CPU hang in docs/performance.md ("Known fault").

  timeout 200 python scripts/vmapped_seeds_probe.py ant 2        # S = 2 of ant, N = 16
  timeout 200 python scripts/vmapped_seeds_probe.py ant 1,2      # S = 1 first, then S = 2

Prints "S ok <seconds>" for each S whose first call returned; a hung call prints nothing
more, so run it under `timeout` (exit code 124 then).
"""

import sys
import time

import jax
import jax.numpy as jnp

from spo_jax.presets import preset
from spo_jax.setup import build, over_seeds


def main(env_name: str, seeds: list[int], num_envs: int = 16) -> None:
  config = preset(env_name).replace(num_envs=num_envs, iterations_per_call=1)
  for s in seeds:
    setup = build(config, chunk=16)
    keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(s)])
    state = jax.jit(over_seeds(setup.fns.init, s))(keys)
    iteration = jax.jit(over_seeds(setup.fns.iteration, s)).lower(state).compile()
    start = time.perf_counter()
    jax.block_until_ready(iteration(state))
    print(s, "ok", round(time.perf_counter() - start, 3), flush=True)


if __name__ == "__main__":
  main(sys.argv[1], [int(x) for x in sys.argv[2].split(",")])
