"""What the Q1 control policies do: the direction and length of each episode's travel.

On point_reach the 'spatial' raters judge the travel S = sum_t a_t (the point moves by
0.1 * a_t). A policy that travels one way is beaten by one that travels 60 degrees around
it; a Minimax Winner spreads its travel over directions. Per seed of a run, this rolls out
`--episodes` episodes of the last iterate (sampling its actions, as the best response faces
it) and reports the mean travel per step |S| / T (at most sqrt(2), both action coordinates
at their limit every step; 1 for a unit action every step), and the mean
resultant length R = |mean of S/|S||: 1 when every episode travels the same way, near 0 when
the directions are spread evenly.

    python scripts/q1_travel.py RUN_DIR [RUN_DIR ...] --csv OUT.csv
"""
from __future__ import annotations

import argparse
import csv
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax import best_response as br
from spo_jax.checkpoint import read_run_config
from spo_jax.envs import make_env
from spo_jax.rollout import rollout


def travel(run_dir: pathlib.Path, target: str, episodes: int) -> list[dict]:
  config = read_run_config(run_dir)
  env = make_env(config.env, config.backend)
  rows = []
  for seed in range(config.num_seeds):
    frozen = br.load_frozen(run_dir, target, seed_index=seed, deterministic=False)
    policy_fn, _ = br.frozen_policy_fn(frozen, jax.random.PRNGKey(1), episodes)
    result = rollout(env, policy_fn, jax.random.PRNGKey(2 + seed), episodes,
                     config.episode_length)
    mask = result.trajectory.mask  # [H, N]
    action = jnp.tanh(result.trajectory.raw_action)  # the env's action, in [-1, 1]
    total = np.asarray(jnp.sum(action * mask[..., None], axis=0))  # [N, 2]
    length = np.asarray(jnp.sum(mask, axis=0))
    norm = np.linalg.norm(total, axis=1)
    unit = total / np.maximum(norm, 1e-9)[:, None]
    rows.append({"run": run_dir.name, "target": target, "seed": seed,
                 "speed": float(np.mean(norm / np.maximum(length, 1.0))),
                 "resultant": float(np.linalg.norm(unit.mean(axis=0))),
                 "episode_length": float(length.mean())})
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", type=pathlib.Path)
  parser.add_argument("--episodes", type=int, default=256)
  parser.add_argument("--csv", type=pathlib.Path, required=True)
  args = parser.parse_args()
  rows = []
  for run in args.runs:
    for target in ("first", "last"):
      rows += travel(run, target, args.episodes)
  with open(args.csv, "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  for (run, target) in dict.fromkeys((r["run"], r["target"]) for r in rows):
    mine = [r for r in rows if r["run"] == run and r["target"] == target]
    print(f"{run} {target}: speed {np.mean([r['speed'] for r in mine]):.3f} "
          f"(seeds {min(r['speed'] for r in mine):.3f}-{max(r['speed'] for r in mine):.3f}), "
          f"resultant {np.mean([r['resultant'] for r in mine]):.3f} "
          f"({min(r['resultant'] for r in mine):.3f}-{max(r['resultant'] for r in mine):.3f})")


if __name__ == "__main__":
  main()
