"""Time of one reward-model fit (rm_train_steps Adam steps) against the episodes' length.

  python scripts/rm_fit_cost.py [--seeds 1] [--lengths 1000,500,170,50] [--json out.json]

The fit of the reproduction's reward model on `balance` (H = 1000, observation 4 + action 1,
ensemble 3, 50 steps of minibatches of 32 pairs, buffer 512) with every buffered episode
`length` steps long, jitted, best of 3 after a compile; with --seeds S the fit is vmapped
over S seeds as `spo-reproduce` runs it. Run it on two trees to compare them (the fit's
interface is unchanged): docs/performance.md, "The reward model's fit follows the valid
steps".
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from spo_jax.reward_model import RewardModelSource, buffer_push

HORIZON, OBSERVATION, ACTION = 1000, 4, 1


def filled_state(source: RewardModelSource, length: int, key: jax.Array):
  """A state whose buffer is full of pairs of episodes `length` steps long."""
  state = source.init(key, None)
  q = source.buffer_size
  inputs = jax.random.normal(key, (q, 2, HORIZON, OBSERVATION + ACTION))
  mask = jnp.broadcast_to((jnp.arange(HORIZON) < length).astype(jnp.float32), (q, 2, HORIZON))
  label = (jax.random.uniform(key, (q,)) < 0.5).astype(jnp.float32)
  buffer = buffer_push(state.buffer, inputs, mask, label, jnp.ones((q,), bool))
  return state._replace(buffer=buffer)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--lengths", default="1000,500,170,50")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  source = RewardModelSource(None, OBSERVATION, ACTION, HORIZON, ensemble_size=3,
                             learning_rate=3e-3, train_steps=50, batch_size=32,
                             buffer_size=512)
  rows = []
  for length in [int(x) for x in args.lengths.split(",")]:
    keys = jax.random.split(jax.random.PRNGKey(length), args.seeds)
    states = jax.vmap(lambda k, n=length: filled_state(source, n, k))(keys)
    fit = jax.jit(jax.vmap(source.fit))
    start = time.perf_counter()
    jax.block_until_ready(fit(states, keys))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(3):
      start = time.perf_counter()
      jax.block_until_ready(fit(states, keys))
      times.append(time.perf_counter() - start)
    rows.append({"length": length, "seeds": args.seeds, "fit_s": min(times),
                 "first_call_s": compile_s})
    print(f"length {length:5d}  seeds {args.seeds:3d}  fit {min(times):8.3f} s  "
          f"(first call {compile_s:.1f} s)", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
