"""Which reward placement makes PPO's objective the win rate? The measurement behind the
`reward_placement` default (docs/design.md, "Reward placement").

  python scripts/objective_study.py                       # hopper, seeds 100-104, 1M env steps
  python scripts/objective_study.py --env walker2d --seeds 100,101 --budget 500000

For each placement and tuning seed (seeds >= 100: these runs choose a default, they are not
reported as results), trains SPO with the oracle teacher on the env's preset, exactly as
`spo-learning-bench`'s `spo` contender does (`learning_bench.our_config`), except for
`reward_placement`. Every run is a fresh subprocess and is saved as it finishes
(OUT/runs/<placement>-seed<k>.json), so rerunning the command resumes. OUT/finals.csv holds
one row per run; OUT/curves.csv one row per evaluation. The summary printed at the end
compares the placements' final returns: mean, a 95% bootstrap interval of the mean, and the
Mann-Whitney U test of the two first placements.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PLACEMENTS = ("spread", "discounted")

_RUN = """
import json, sys, time
import spo_jax
from spo_jax import learning_bench
env, placement, seed, budget, num_evals, path = sys.argv[1:7]
config = learning_bench.our_config(env, "spo", None, int(budget), int(num_evals)).replace(
    reward_placement=placement, seed=int(seed))
curve = []
start = time.perf_counter()
def progress(step, m):
  if "eval/episode_reward" in m:
    curve.append({"env_steps": int(step), "eval_return": float(m["eval/episode_reward"]),
                  "eval_length": float(m["eval/episode_length"]),
                  "wall_s": time.perf_counter() - start})
result = spo_jax.train(config, progress_fn=progress)
record = {"env": env, "placement": placement, "seed": int(seed), "budget": int(budget),
          "discount": config.discount, "env_steps": int(result.metrics["step"]),
          "wall_s": time.perf_counter() - start, "curve": curve}
spo_jax.run_dir.write_text_atomic(path, json.dumps(record, indent=1))
"""


def bootstrap_mean_interval(values: np.ndarray, rng: np.random.Generator,
                            resamples: int = 10_000) -> tuple[float, float]:
  """Percentile 95% interval of the mean over `resamples` resamples with replacement."""
  means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
  return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--env", default="hopper")
  parser.add_argument("--seeds", default="100,101,102,103,104")
  parser.add_argument("--budget", type=int, default=1_000_000)
  parser.add_argument("--num-evals", type=int, default=10)
  parser.add_argument("--placements", default=",".join(PLACEMENTS))
  parser.add_argument("--out", default=None, help="default docs/results/objective/<env>")
  args = parser.parse_args()
  out = Path(args.out or f"docs/results/objective/{args.env}")
  (out / "runs").mkdir(parents=True, exist_ok=True)
  seeds = [int(s) for s in args.seeds.split(",")]
  placements = args.placements.split(",")
  for seed in seeds:
    for placement in placements:  # alternated, so a drifting machine favours neither
      path = out / "runs" / f"{placement}-seed{seed}.json"
      if path.exists():
        continue
      started = time.time()
      subprocess.run([sys.executable, "-c", _RUN, args.env, placement, str(seed),
                      str(args.budget), str(args.num_evals), str(path)], check=True)
      record = json.loads(path.read_text())
      print(f"{placement} seed {seed}: final {record['curve'][-1]['eval_return']:.1f} "
            f"(length {record['curve'][-1]['eval_length']:.0f}) after {record['env_steps']:,} "
            f"env steps, {time.time() - started:.0f} s", flush=True)

  records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
  with open(out / "curves.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["env", "placement", "seed", "env_steps", "eval_return", "eval_length",
                     "wall_s"])
    for r in records:
      for point in r["curve"]:
        writer.writerow([r["env"], r["placement"], r["seed"], point["env_steps"],
                         f"{point['eval_return']:.3f}", f"{point['eval_length']:.1f}",
                         f"{point['wall_s']:.1f}"])
  with open(out / "finals.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["env", "placement", "seed", "env_steps", "final_return", "final_length",
                     "best_return", "wall_s"])
    for r in records:
      last = r["curve"][-1]
      writer.writerow([r["env"], r["placement"], r["seed"], r["env_steps"],
                       f"{last['eval_return']:.3f}", f"{last['eval_length']:.1f}",
                       f"{max(p['eval_return'] for p in r['curve']):.3f}", f"{r['wall_s']:.1f}"])

  rng = np.random.default_rng(0)
  finals = {p: np.array([r["curve"][-1]["eval_return"] for r in records if r["placement"] == p])
            for p in placements}
  print(f"\n{args.env}, final evaluation return over seeds {args.seeds}:")
  for p, values in finals.items():
    if len(values):
      low, high = bootstrap_mean_interval(values, rng)
      print(f"  {p:<11} mean {values.mean():8.1f}  95% CI [{low:.1f}, {high:.1f}]  "
            f"runs {np.round(values, 1).tolist()}")
  first, second = (finals[p] for p in placements[:2])
  if len(first) and len(second):
    from scipy.stats import mannwhitneyu

    test = mannwhitneyu(second, first, alternative="two-sided")
    print(f"  Mann-Whitney U ({placements[1]} vs {placements[0]}): U = {test.statistic:.1f}, "
          f"p = {test.pvalue:.3f}")


if __name__ == "__main__":
  main()
