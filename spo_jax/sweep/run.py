"""Running a sweep's groups in its directory, one after another, each resumable:

  SWEEP/plan.json            the plan (a rerun with a different plan is refused)
  SWEEP/groups/g000/         a run directory (spo_jax/train.py) holding all its points x seeds
                             (metrics.jsonl, metrics.csv, tensorboard/point_<p>/seed_<s>/:
                             spo_jax/loggers.py)
  SWEEP/groups/g000/done.json  written once the group finished: a rerun skips it
  SWEEP/results.csv, summary.csv   written by the run of a whole sweep, or by --collect

A group in flight when the sweep stopped (signal, kill, crash) resumes from its newest
checkpoint, exactly (train's --resume); one stopped before its first checkpoint starts again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spo_jax import run_dir as run_dir_lib
from spo_jax.checkpoint import complete_steps
from spo_jax.config import ConfigError
from spo_jax.loggers import LogOptions
from spo_jax.sweep.plan import Group, Plan
from spo_jax.train import TrainResult, train

PLAN = "plan.json"
GROUPS = "groups"
DONE = "done.json"


def group_dir(plan: Plan, group: Group) -> Path:
  return plan.out / GROUPS / group.name


def is_done(plan: Plan, group: Group) -> bool:
  return (group_dir(plan, group) / DONE).exists()


def check_directory(plan: Plan) -> bool:
  """Refuse a sweep directory that holds another plan (before anything is written); True when
  it already holds this one (a resumed sweep)."""
  out = plan.out
  if out.exists() and not out.is_dir():
    raise ConfigError(f"sweep directory '{out}' is a file; choose a directory path")
  saved = out / PLAN
  if saved.exists():
    if saved.read_text() != plan.canonical():
      raise ConfigError(f"the sweep file changed since '{out}' was started (its plan.json "
                        "differs): use the original file, or a new [sweep] out")
    return True
  if out.exists() and any(not p.name.startswith(".") for p in out.iterdir()):
    raise ConfigError(f"'{out}' is not empty and holds no sweep (no plan.json); choose "
                      "another [sweep] out")
  return False


def write_plan(plan: Plan) -> None:
  plan.out.mkdir(parents=True, exist_ok=True)
  if not (plan.out / PLAN).exists():
    run_dir_lib.write_text_atomic(plan.out / PLAN, plan.canonical())


def log_options(plan: Plan, wandb: LogOptions | None = None) -> LogOptions:
  """`wandb` (default `LogOptions()`: metrics.jsonl, metrics.csv and TensorBoard, each run a
  (point, seed) as spo_jax/loggers.py lays out), with W&B's runs, when asked, named after the
  sweep directory and grouped by it unless `wandb` names them."""
  if wandb is None:
    return LogOptions()
  if not wandb.wandb:
    return wandb
  name = plan.out.resolve().name
  return dataclasses.replace(wandb, wandb_name=wandb.wandb_name or name,
                             wandb_group=wandb.wandb_group or name)


def run_group(plan: Plan, group: Group, verbose: bool = False,
              progress_fn: Callable[[int, dict[str, Any]], None] | None = None,
              wandb: LogOptions | None = None) -> TrainResult:
  """Train one group in its run directory: new, resumed from its checkpoint, or started again
  when it stopped before its first one; then mark it done. `wandb`: the logging options, W&B's
  among them (`log_options`)."""
  path = group_dir(plan, group)
  held = run_dir_lib.holds_run(path)
  has_checkpoint = held and bool(complete_steps(path / run_dir_lib.CHECKPOINTS))
  result = train(group.config, run_dir=path, resume=has_checkpoint,
                 overwrite=held and not has_checkpoint, verbose=verbose,
                 log_options=log_options(plan, wandb), progress="lines",
                 runs=group.runs, progress_fn=progress_fn)
  run_dir_lib.write_text_atomic(path / DONE, json.dumps(
      {"group": group.index, "points": list(group.points), "traced": list(group.traced),
       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
  return result
