"""Tune SPO and the reward model (RM) for the reproduction's Q2/Q3 task, on tuning seeds only.

Both methods get the same tuning budget: four configurations each, every configuration
trained on the same three tuning seeds (100, 101, 102: never the reported seeds 0-9), at the
plan's equal-label budget (`plans.equal_label_configs`, k labels per trajectory) and env
steps. The score of a configuration is the area under its learning curve: the mean over its
seeds of `running.curve_area`, the evaluation return averaged over the env steps of the run,
the reproduction's `return_auc` measure (Q2 asks how fast a method learns, and a final
return at the 1000 cap cannot tell two configurations apart).
Ground-truth PPO (not tuned: the preset's values) runs beside them on seeds 100-109, to show
whether the task still discriminates at the plan's budget (its curve is still rising).

    python scripts/tune_reproduce.py --out docs/results/tuning            # all, one process
    python scripts/tune_reproduce.py --only spo --out ...                 # one method's grid
    python scripts/tune_reproduce.py --summarize --out docs/results/tuning

Writes OUT/<name>/ (each run's config.json and metrics.jsonl, checkpoints off),
OUT/tuning.csv (one row per configuration, seed and evaluation) and OUT/summary.csv and
summary.md (per configuration: final return mean, min, max over seeds; the chosen one marked).
A finished run (its metrics.jsonl complete) is skipped when the command is run again.
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import statistics

from spo_jax.reproduce import plans, running, tuning

ENV = "balance"
TUNING_SEEDS = (100, 3)  # first seed, count
PPO_SEEDS = (100, 10)

# Four configurations per method (equal tuning budgets). SPO: the policy's learning rate.
# RM: the policy's learning rate crossed with the reward model's (learning rate, ensemble).
GRIDS = {
    "spo": {f"lr{lr:g}": {"learning_rate": lr} for lr in (3e-4, 1e-3, 3e-3, 1e-2)},
    "rm": {f"lr{lr:g}-rmlr{rm_lr:g}-ens{ens}": {"learning_rate": lr, "rm_learning_rate": rm_lr,
                                                 "rm_ensemble_size": ens}
           for lr in (1e-3, 3e-3) for rm_lr, ens in ((1e-3, 1), (3e-3, 3))},
    "ppo": {"preset": {}},
}


def configs():
  """(method, name, config) of every tuning run, from the cpu plan's own settings."""
  plan = plans.scale_plan("cpu")
  base = plans.base_config(ENV, plan.envs[ENV], 1, tiny=False).replace(
      teacher="oracle", checkpoint_every=0)
  by_method = plans.equal_label_configs(base, plan.labels_per_trajectory)
  by_method["ppo"] = base.replace(reward_source="ground_truth")
  for method, grid in GRIDS.items():
    first, count = PPO_SEEDS if method == "ppo" else TUNING_SEEDS
    for name, fields in grid.items():
      yield method, f"{method}-{name}", by_method[method].replace(
          seed=first, num_seeds=count, **fields)


def evaluations(run_dir: pathlib.Path):
  """Rows (iteration, step, seed, eval return) of a run's evaluations."""
  return [(r["iteration"], r["step"], r["seed"], r["eval/episode_reward"])
          for r in running.read_metrics(run_dir) if "eval/episode_reward" in r]


def summarize(out: pathlib.Path) -> None:
  rows, summary = [], []
  for method, name, config in configs():
    run_dir = out / name
    if not (run_dir / "metrics.jsonl").exists():
      continue
    evals = evaluations(run_dir)
    if not evals:  # started, not evaluated yet
      continue
    rows += [(method, name, *e) for e in evals]
    last = {}
    for iteration, _, seed, value in evals:
      last[seed] = (iteration, value)
    finals = [v for _, v in last.values()]
    auc = statistics.mean(running.curve_areas(run_dir, budget=config.num_timesteps))
    summary.append({"method": method, "config": name, "seeds": len(finals), "auc": auc,
                    "final_mean": statistics.mean(finals), "final_min": min(finals),
                    "final_max": max(finals)})
  with open(out / "tuning.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "config", "iteration", "env_steps", "seed", "eval_return"])
    writer.writerows(rows)
  print(tuning.write_summary(
      out, summary, "auc", lower_is_better=False,
      header=["method", "configuration", "seeds",
              "area under the curve (mean return up to the budget)",
              "final return, mean (min-max)"],
      cells=lambda s: [s["method"], s["config"], str(s["seeds"]), f"{s['auc']:.1f}",
                       f"{s['final_mean']:.1f} ({s['final_min']:.0f}-{s['final_max']:.0f})"]),
        end="")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--only", choices=sorted(GRIDS), help="one method's grid")
  parser.add_argument("--names", default="",
                      help="comma-separated run names to train (default: all of the grid), "
                           "so that two processes can share a grid")
  parser.add_argument("--summarize", action="store_true", help="only rebuild the tables")
  args = parser.parse_args()
  if not args.summarize:
    names = set(filter(None, args.names.split(",")))
    tuning.train_grid(configs(), args.out, wanted=lambda method, name: (
        (not args.only or method == args.only) and (not names or name in names)))
  summarize(args.out)


if __name__ == "__main__":
  main()
