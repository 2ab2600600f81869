"""Useful-step fraction of the first training iterations: valid steps / physics steps.

  python scripts/useful_steps.py --envs hopper walker2d ant --num-envs 256 --iterations 5

A rollout simulates every environment until the batch's longest episode ends (rollout.py),
so the fraction is mean episode length / longest episode length. Early in training episodes
are short and uneven; this says how much of the physics a fixed-length, auto-reset segment
design could recover (at most 1 / fraction). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import spo_jax
from spo_jax.train import build


def measure(env: str, num_envs: int, horizon: int | None, iterations: int, seed: int) -> dict:
  config = spo_jax.preset(env).replace(num_envs=num_envs, iterations_per_call=1, seed=seed)
  if horizon:
    config = config.replace(episode_length=horizon)
  setup = build(config)
  step = jax.jit(setup.fns.iteration, donate_argnums=0)
  state = jax.jit(setup.fns.init)(jax.random.PRNGKey(seed))
  rows = []
  for i in range(iterations):
    start = time.perf_counter()
    state, m = step(state)
    m = jax.device_get(m)
    valid, physics = int(m["train/env_steps"][0]), int(m["train/physics_steps"][0])
    rows.append({"iteration": i + 1, "valid_steps": valid, "physics_steps": physics,
                 "mean_length": float(m["train/episode_length"][0]),
                 "longest": physics // num_envs, "fraction": valid / physics,
                 "seconds": time.perf_counter() - start})
    print(env, rows[-1], flush=True)
  return {"env": env, "num_envs": num_envs, "horizon": config.episode_length, "rows": rows}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--envs", nargs="+", default=["hopper", "walker2d", "ant"])
  parser.add_argument("--num-envs", type=int, default=256)
  parser.add_argument("--episode-length", type=int, default=None)
  parser.add_argument("--iterations", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="bench_results/useful_steps.json")
  args = parser.parse_args()
  results = [measure(env, args.num_envs, args.episode_length, args.iterations, args.seed)
             for env in args.envs]
  print("\n| env | iteration | mean episode length | longest | valid / physics steps |")
  print("|---|---|---|---|---|")
  for result in results:
    for r in result["rows"]:
      print(f"| {result['env']} | {r['iteration']} | {r['mean_length']:.1f} | {r['longest']} "
            f"| {r['fraction']:.2f} |")
    fractions = [r["fraction"] for r in result["rows"]]
    result["median_fraction"] = float(np.median(fractions))
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"jax": jax.__version__, "results": results}, indent=2))
  print(f"\nJSON: {out}")


if __name__ == "__main__":
  main()
