"""The PPO update's per-slot bookkeeping at H x N = 1000 x 256 slots, each jitted alone.

  python scripts/ppo_slot_costs.py

Times (best of 5) one argsort of all slots (the valid-first orders before), the prefix-sum
partition and the prefix-sorted random order that replace them, the GAE scan and an
elementwise normalisation, for episodes of 5-100 steps (docs/performance.md, "Compaction").
"""

import time

import jax
import jax.numpy as jnp

from spo_jax import ppo

HORIZON, NUM_ENVS = 1000, 256


def best_of_5(name, fn, *args) -> None:
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(5):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  print(f"{name:40s} {min(times) * 1e3:8.2f} ms", flush=True)


def main() -> None:
  key = jax.random.PRNGKey(0)
  lengths = jax.random.randint(key, (NUM_ENVS,), 5, 100)
  mask = (jnp.arange(HORIZON)[:, None] < lengths[None]).astype(jnp.float32)
  valid = mask.reshape(-1) > 0
  best_of_5("argsort of all slots (before)",
            lambda k, v: jnp.argsort(jnp.where(v, jax.random.uniform(k, v.shape), 2.0)),
            key, valid)
  best_of_5("prefix-sum partition", ppo.valid_first_in_time_order, valid)
  best_of_5("random valid-first order (prefix sort)", ppo.valid_first_order, key, valid)
  values = jax.random.normal(key, (HORIZON, NUM_ENVS))
  best_of_5("GAE scan", lambda r, v, m: ppo.compute_gae(r, v, m, 0.99, 0.95), values, values,
            mask)
  obs = jax.random.normal(key, (HORIZON, NUM_ENVS, 11))
  best_of_5("normalisation", lambda o, m: jnp.where(m[..., None] > 0, (o - 1.0) / 2.0, 0.0),
            obs, mask)


if __name__ == "__main__":
  main()
