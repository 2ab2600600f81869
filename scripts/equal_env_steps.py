"""Compare runs at equal env steps: each seed's mean evaluation return up to a budget B (the
area under its curve, cut at B: `running.curve_areas`) and its return at B (interpolated),
IQM and 95% bootstrap interval over seeds (`analysis.iqm_with_ci`).

B defaults to the largest budget every seed of every run has reached (the slowest seed's
last evaluation), so that no curve is extrapolated.

    python scripts/equal_env_steps.py RUN_DIR [RUN_DIR ...] [--budget B] [--csv OUT.csv]
"""
from __future__ import annotations

import argparse
import csv
import pathlib

import numpy as np

from spo_jax.reproduce import analysis, running


def curves(run_dir: pathlib.Path) -> dict[int, list[tuple[float, float]]]:
  """Seed -> [(env steps, eval return)] in iteration order (a resumed row replaces)."""
  by_seed: dict[int, dict[int, tuple[float, float]]] = {}
  for row in running.read_metrics(run_dir):
    if "eval/episode_reward" in row:
      by_seed.setdefault(row["seed"], {})[row["iteration"]] = (row["step"],
                                                               row["eval/episode_reward"])
  return {s: [v[i] for i in sorted(v)] for s, v in sorted(by_seed.items())}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", type=pathlib.Path)
  parser.add_argument("--budget", type=float, default=None)
  parser.add_argument("--csv", type=pathlib.Path, default=None)
  args = parser.parse_args()
  all_curves = {run: curves(run) for run in args.runs}
  reached = min(points[-1][0] for c in all_curves.values() for points in c.values())
  budget = reached if args.budget is None else args.budget
  if budget > reached:
    parser.error(f"--budget {budget:.0f} is beyond {reached:.0f}, the env steps every seed "
                 "of every run reached")
  rows = []
  print(f"budget: {budget:,.0f} env steps (every seed reached {reached:,.0f})")
  for run, by_seed in all_curves.items():
    areas = running.curve_areas(run, budget=budget)
    at_budget = [float(np.interp(budget, [s for s, _ in p], [r for _, r in p]))
                 for p in by_seed.values()]
    for name, values in (("mean return up to the budget", areas),
                         ("return at the budget", at_budget)):
      point, low, high = analysis.iqm_with_ci(np.asarray(values))
      print(f"{run}: {name} {point:.1f} [{low:.1f}, {high:.1f}] ({len(values)} seeds)")
      rows += [{"run": str(run), "measure": name, "seed": seed, "budget": budget, "value": v}
               for seed, v in zip(by_seed, values, strict=True)]
  if args.csv:
    with open(args.csv, "w", newline="") as f:
      writer = csv.DictWriter(f, ["run", "measure", "seed", "budget", "value"])
      writer.writeheader()
      writer.writerows(rows)


if __name__ == "__main__":
  main()
