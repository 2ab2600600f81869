"""`spo-sweep`: a grid (or list) of configs x seeds, one compile per group (docs/sweeps.md).

  spo-sweep plan.toml                    run the sweep (or resume it: rerun the same command)
  spo-sweep plan.toml --shard i/n        run groups i, i+n, ... (default: SLURM's array index)
  spo-sweep plan.toml --collect          merge the finished groups into results.csv and
                                         summary.csv, print the summary
  spo-sweep --out DIR --collect          the same, from the plan DIR was started with
  spo-sweep --out DIR --grid learning_rate=1e-4,1e-3 --set env=balance --seeds 0,1

Bad input exits with code 2 and one line on stderr before anything is written; a run
stopped by a signal exits with 130/143 (rerun the command to resume it); --collect with
groups still unfinished writes what is there and exits with code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from spo_jax import determinism
from spo_jax.config import ConfigError
from spo_jax.loggers import LogOptions
from spo_jax.loggers import check_options as check_log_options
from spo_jax.sweep import plan as plan_lib
from spo_jax.sweep import results as results_lib
from spo_jax.sweep import run as run_lib
from spo_jax.train import NumericalError, TrainingInterrupted
from spo_jax.write_errors import RunWriteError

SUMMARY_FIELDS = ("point", "seeds", "final_return_mean", "final_return_iqm",
                  "final_return_iqm_low", "final_return_iqm_high", "best_return_mean",
                  "env_steps", "reached_target", "steps_to_target", "labels_to_target")


def _fail(message: str, code: int = 2) -> None:
  print(f"spo-sweep: error: {message}", file=sys.stderr)
  raise SystemExit(code)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="spo-sweep", description="Sweep config fields x seeds: traced fields (learning "
      "rate, PPO coefficients, discount, GAE lambda, reward scale) vmapped in one compile per "
      "group; other fields split groups. See docs/sweeps.md.")
  parser.add_argument("plan", nargs="?", default=None, help="sweep file (TOML)")
  parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                      help="add a grid axis (repeatable)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="set a field for every point (repeatable)")
  parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0)")
  parser.add_argument("--out", default=None, help="sweep directory ([sweep] out)")
  parser.add_argument("--shard", default=None, metavar="i/n",
                      help="run groups i, i+n, ...; default: SLURM_ARRAY_TASK_ID of "
                      "SLURM_ARRAY_TASK_COUNT when set, else all")
  parser.add_argument("--collect", action="store_true",
                      help="merge finished groups into results.csv and summary.csv")
  parser.add_argument("--sort", default="final_return_iqm", metavar="FIELD",
                      help="summary column to sort by (default final_return_iqm)")
  parser.add_argument("--target", type=float, default=None,
                      help="return for steps/labels to target (default: target_return)")
  parser.add_argument("--quiet", action="store_true", help="print only the summary")
  parser.add_argument("--wandb", action="store_true",
                      help="also log to W&B: one run per (point, seed), grouped by sweep")
  parser.add_argument("--wandb-project", default="spo_jax")
  parser.add_argument("--wandb-entity", default=None)
  parser.add_argument("--wandb-group", default=None,
                      help="W&B group (default: the sweep directory's name)")
  parser.add_argument("--wandb-mode", default=None, choices=["online", "offline", "disabled"])
  return parser


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  parser = _parser()
  parser.error = lambda message: _fail(message)  # one line, exit code 2
  args = parser.parse_args(argv)
  try:
    plan, groups, shard, target, wandb = _checked_request(args)
  except ConfigError as error:
    _fail(str(error))
  mine = plan_lib.shard_groups(groups, shard)
  if not args.collect:
    _run_shard(args, plan, groups, mine, wandb)
    if shard[1] > 1:
      print(f"spo-sweep: shard {shard[0]}/{shard[1]} done; merge with --collect once every "
            "shard finished", flush=True)
      return
  _collect(args, plan, groups, target)


def _checked_request(args: argparse.Namespace) -> tuple:
  """The plan (from the sweep file and flags, or the one --out was started with), its groups,
  the shard (i, n), the target return and the W&B options, every flag checked; raises
  `ConfigError` (one line) before anything is written."""
  if args.collect and args.plan is None and not args.grid and args.out is not None:
    plan = plan_lib.saved_plan(args.out)  # spo-sweep --out DIR --collect
  else:
    plan = plan_lib.make_plan(plan_lib.plan_data(args.plan, args.grid, args.set, args.seeds,
                                                 args.out))
  shard = plan_lib.parse_shard(args.shard, dict(os.environ))
  if args.collect and args.shard is not None:
    raise ConfigError("--collect merges every group; drop --shard")
  sortable = set(SUMMARY_FIELDS) | {k for p in plan.points for k in p}
  if args.sort not in sortable:
    raise ConfigError(f"--sort '{args.sort}' is not a summary column; columns: "
                      f"{', '.join(sorted(sortable))}")
  groups = plan_lib.make_groups(plan)
  resumed = run_lib.check_directory(plan)
  if args.collect and not resumed:
    raise ConfigError(f"nothing to collect: '{plan.out}' holds no sweep yet")
  target = args.target if args.target is not None else groups[0].config.target_return
  wandb = LogOptions(wandb=args.wandb, wandb_project=args.wandb_project,
                     wandb_entity=args.wandb_entity, wandb_group=args.wandb_group,
                     wandb_mode=args.wandb_mode)
  check_log_options(wandb)
  return plan, groups, shard, target, wandb


def _run_shard(args: argparse.Namespace, plan, groups: list, mine: list, wandb) -> None:
  """Run this process's groups `mine` in turn, skipping finished ones (a rerun resumes)."""
  determinism.enable(groups[0].config)  # before JAX starts its backend
  run_lib.write_plan(plan)
  total_runs = sum(len(g.runs.seeds) for g in mine)
  if not args.quiet:
    print(f"spo-sweep: {len(plan.points)} points x {len(plan.seeds)} seeds in "
          f"{len(groups)} group(s); this process runs {len(mine)} group(s), "
          f"{total_runs} runs; sweep directory {plan.out}", flush=True)
  for group in mine:
    if run_lib.is_done(plan, group):
      if not args.quiet:
        print(f"spo-sweep: {group.name} already finished, skipped", flush=True)
      continue
    start = time.perf_counter()
    if not args.quiet:
      traced = ", ".join(group.traced) or "none"
      print(f"spo-sweep: {group.name}: points {list(group.points)} x {len(plan.seeds)} "
            f"seeds, traced fields: {traced}", flush=True)
    _run_group(plan, group, wandb)
    if not args.quiet:
      print(f"spo-sweep: {group.name} done in {time.perf_counter() - start:.0f} s",
            flush=True)


def _run_group(plan, group, wandb) -> None:
  """One group; its failures exit as `spo-train` would (2 bad config, 3 numerical, 4 write,
  130/143 stopped by a signal)."""
  try:
    run_lib.run_group(plan, group, wandb=wandb)
  except ConfigError as error:
    _fail(f"{group.name}: {error}")
  except NumericalError as error:
    _fail(f"{group.name}: {error}", 3)
  except RunWriteError as error:
    _fail(f"{group.name}: {error}", 4)
  except TrainingInterrupted as stop:
    print(f"\nspo-sweep: stopped by {stop.signal_name} in {group.name} after iteration "
          f"{stop.iteration}; checkpoint saved. Rerun the same command to resume.",
          file=sys.stderr)
    raise SystemExit(130 if stop.signal_name == "SIGINT" else 143) from None


def _collect(args: argparse.Namespace, plan, groups: list, target: float | None) -> None:
  """Merge the finished groups into results.csv and summary.csv and print the summary; exit
  with code 1 while some group is unfinished."""
  unfinished = [g.name for g in groups if not run_lib.is_done(plan, g)]
  rows = results_lib.read_rows(plan, groups)
  summary = results_lib.summarize(plan, rows, target)
  results_path, summary_path = results_lib.write_tables(plan, rows, summary)
  print(results_lib.format_table(results_lib.sort_summary(summary, args.sort)))
  if not args.quiet:
    print("\n".join(results_lib.provenance_lines(plan, groups)))
  print(f"spo-sweep: wrote {results_path} ({len(rows)} rows) and {summary_path}; curves: "
        f"spo-plot {plan.out}", flush=True)
  if unfinished:
    _fail(f"{len(unfinished)} of {len(groups)} group(s) not finished yet: "
          f"{', '.join(unfinished)}; tables hold the finished ones", 1)


if __name__ == "__main__":
  main()
