"""Tune SPO and the reward model (RM) for Q1's matrix game, on tuning seeds only.

The reproduction reports the matrix game (`cycle3`, `spo-reproduce --question q1`) on seeds
0-9. This script chooses its settings on seeds 100, 101, 102, with equal tuning budgets:
four configurations per method, each trained for the plan's iterations on the three seeds.
The score is what Q1 reports: the exploitability of the time-averaged policy at the end of
the run (`eval/exploitability_average`, lower is better), meaned over the seeds. The
starting value, the uniform policy's exploitability on `cycle3`, is 1/30 ~ 0.033.

    python scripts/tune_matrix_game.py --out docs/results/tuning/matrix_game
    python scripts/tune_matrix_game.py --summarize --out docs/results/tuning/matrix_game

Writes OUT/<name>/ (each run's config.json and metrics.jsonl) and OUT/summary.csv and
summary.md (per configuration: the mean, min and max over seeds; the chosen one marked).
A finished run is skipped when the command is run again.
"""
from __future__ import annotations

import argparse
import pathlib

from spo_jax.reproduce import plans, running, tuning

TUNING_SEEDS = (100, 3)  # first seed, count
MEASURE = "eval/exploitability_average"
# SPO: the preset (learning rate 1e-3, raw advantages, entropy bonus 0.01), the learning rate
# a step either side, and the setting the preset's comment says collapses (3e-3, normalized
# advantages, no entropy bonus). RM: the policy's learning rate crossed with the reward
# model's (learning rate, ensemble), as for Q2/Q3's tuning.
GRIDS = {
    "spo": {"preset": {},
            "lr3e-4": {"learning_rate": 3e-4},
            "lr3e-3": {"learning_rate": 3e-3},
            "lr3e-3-normadv-noent": {"learning_rate": 3e-3, "normalize_advantages": True,
                                     "entropy_coef": 0.0}},
    "rm": {f"lr{lr:g}-rmlr{rm_lr:g}-ens{ens}": {"learning_rate": lr, "rm_learning_rate": rm_lr,
                                                 "rm_ensemble_size": ens}
           for lr in (1e-3, 3e-3) for rm_lr, ens in ((1e-3, 1), (3e-3, 3))},
}


def configs():
  """(method, name, config) of every tuning run, from the cpu plan's matrix game."""
  first, count = TUNING_SEEDS
  base = plans.matrix_config(plans.scale_plan("cpu"), count, "cycle3", tiny=False).replace(
      seed=first)
  for method, grid in GRIDS.items():
    source = plans.METHODS[method]
    for name, fields in grid.items():
      yield method, f"{method}-{name}", base.replace(reward_source=source, **fields)


def summarize(out: pathlib.Path) -> None:
  scores = ((method, name, [r[MEASURE] for r in running.last_rows(out / name) if MEASURE in r])
            for method, name, _ in configs())
  print(tuning.write_spread_summary(
      out, scores, "exploitability of the averaged policy, mean (min-max)", digits=4), end="")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--summarize", action="store_true", help="only rebuild the tables")
  args = parser.parse_args()
  if not args.summarize:
    tuning.train_grid(configs(), args.out)
  summarize(args.out)


if __name__ == "__main__":
  main()
