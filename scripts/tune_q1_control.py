"""Tune SPO and the reward model (RM) for Q1's control task, on tuning seeds only.

The reproduction reports the control task (point_reach judged by the 'spatial' raters,
`spo-reproduce --question q1`) on seeds 0-9. This script chooses settings on seeds 100, 101,
102 with equal tuning budgets: four configurations per method, each trained as the plan
trains it on the three seeds, then measured as the plan measures it: the better of two best
responses (from scratch and from a copy; `running.measure_exploitability`) against the
policy the method is judged by: SPO's mixture of iterates (its Minimax-Winner guarantee is
for the average), RM's last iterate. Lower is better.

    python scripts/tune_q1_control.py --out docs/results/tuning/q1_control
    python scripts/tune_q1_control.py --summarize --out docs/results/tuning/q1_control

Writes OUT/<name>/ (each run's config.json, metrics.jsonl and exploitability.json; the
checkpoints are deleted once measured) and OUT/summary.csv and summary.md. A measured run is
skipped when the command is run again.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics

import spo_jax
from spo_jax.reproduce import plans, running, tuning

TUNING_SEEDS = (100, 3)  # first seed, count
TARGET = {"spo": "mixture", "rm": "last"}  # the policy each method is judged by
# Four configurations per method. SPO: the policy's learning rate (the preset's 3e-3 and a
# step either side) and the preset with an entropy bonus (a spread of directions is what
# the Minimax Winner needs). RM: the policy's learning rate crossed with the reward model's
# (learning rate, ensemble), as for the other questions' tuning.
GRIDS = {
    "spo": {"preset": {}, "lr1e-3": {"learning_rate": 1e-3}, "lr1e-2": {"learning_rate": 1e-2},
            "ent0.01": {"entropy_coef": 0.01}},
    "rm": {f"lr{lr:g}-rmlr{rm_lr:g}-ens{ens}": {"learning_rate": lr, "rm_learning_rate": rm_lr,
                                                 "rm_ensemble_size": ens}
           for lr in (1e-3, 3e-3) for rm_lr, ens in ((1e-3, 1), (3e-3, 3))},
}


def runs():
  """(method, name, Run) of every tuning run: the cpu plan's control runs on the tuning seeds."""
  first, count = TUNING_SEEDS
  control = {r.method: r for r in plans.plan_runs("q1", "cpu", count)
             if r.setting == "control"}
  for method, grid in GRIDS.items():
    base = control[method]
    # The plan's runs carry the values chosen here (`plans.CONTROL_TUNED`): start from the
    # env preset's instead.
    preset = spo_jax.preset(base.config.env)
    untuned = {k: getattr(preset, k) for k in plans.CONTROL_TUNED[method]}
    for name, fields in grid.items():
      yield method, f"{method}-{name}", base._replace(
          config=base.config.replace(seed=first, **{**untuned, **fields}),
          exploit=(TARGET[method],))


def summarize(out: pathlib.Path) -> None:
  def scores(method: str, name: str) -> list[float]:
    path = out / name / "exploitability.json"
    return (json.loads(path.read_text())[f"br_exploitability_{TARGET[method]}"]
            if path.exists() else [])

  print(tuning.write_spread_summary(
      out, ((method, name, scores(method, name)) for method, name, _ in runs()),
      "exploitability (best response) of the judged policy, mean (min-max)", digits=3), end="")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--only", choices=sorted(GRIDS), help="one method's grid")
  parser.add_argument("--summarize", action="store_true", help="only rebuild the tables")
  args = parser.parse_args()
  if not args.summarize:
    for method, name, run in runs():
      run_dir = args.out / name
      if (args.only and method != args.only) or (run_dir / "exploitability.json").exists():
        continue
      spo_jax.train(run.config, run_dir=run_dir, overwrite=True, verbose=False)
      measured = running.measure_exploitability(run, run_dir, episodes=0)
      (run_dir / "exploitability.json").write_text(json.dumps(measured, indent=1) + "\n")
      shutil.rmtree(run_dir / "checkpoints")  # the data is the measurement, not the weights
      print(f"{name}: {statistics.mean(measured[f'br_exploitability_{TARGET[method]}']):.3f}",
            flush=True)
  summarize(args.out)


if __name__ == "__main__":
  main()
