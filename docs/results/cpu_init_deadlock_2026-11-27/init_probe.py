"""The init-only probe behind init_probe_runs.tsv: compile S seeds' init, vmapped (the old
way) or one seed after another (`map`, what spo_jax.init_over_seeds does), then call it once.

  timeout 60 python init_probe.py ant 2 vmap
  timeout 60 python init_probe.py ant 2 map
"""

import sys
import time

import jax
import jax.numpy as jnp

from spo_jax.presets import preset
from spo_jax.setup import build

env_name, s, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = preset(env_name).replace(num_envs=16, iterations_per_call=1)
setup = build(config, chunk=16)
keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(s)])
f = jax.vmap(setup.fns.init) if mode == "vmap" else (lambda k: jax.lax.map(setup.fns.init, k))
init = jax.jit(f).lower(keys).compile()
t = time.perf_counter()
state = jax.block_until_ready(init(keys))
print("init ok", round(time.perf_counter() - t, 2), flush=True)
