"""Reproduce the four questions of the SPO paper (Swamy et al., ICML 2024) over many seeds.

  Q1  intransitive preferences: does SPO find the Minimax Winner (MW)? A matrix game with
      the non-uniform cycle `cycle3` (exploitability of SPO's averaged and last policy and
      of the reward model's policy, against the exact MW of `spo_jax.minimax`), and a control
      task judged by the `intransitive` majority of raters (each rater's score of the final
      policies, and the raters' head-to-head verdict between SPO and the reward model).
  Q2  maximum-reward preferences (the `oracle` teacher): true return against env steps and
      against labels consumed, SPO vs reward model (RM) vs PPO on the env reward.
  Q3  stochastic preferences: `bradley_terry` over a range of beta and `mistake(oracle)` over
      epsilon; final true return against the noise level, SPO vs RM.
      In Q2 and Q3 SPO draws one Bernoulli label per query from k random opponents per
      trajectory and RM labels N k pairs per iteration: equal labels at every iteration
      (`--labels-per-trajectory k`, `plans.equal_label_configs`); soft-label SPO over all
      pairs runs beside them as a noise-free reference (`--no-soft-reference` drops it).
  Q4  non-Markovian preferences (`constraint`, `deadline`, ...): the teacher's own target
      property (measured by rolling out the final policies) and the true return, SPO vs RM.

Every (question, method, setting) is ONE compiled run of `spo_jax.train` with the seeds
vmapped (`num_seeds`); its metrics.jsonl, checkpoints and a `final.json` (what was measured
after training) stay under OUT/<question>/<run>/. A run whose `final.json` matches its
config is not run again, so an interrupted suite continues where it stopped (`--force`
re-runs). Then: a tidy OUT/<question>/results.csv (one row per seed per evaluation),
OUT/<question>/finals.csv (one row per seed and final measure), the interquartile mean
(IQM) across seeds with 95% stratified-bootstrap confidence intervals (rliable; Agarwal et
al. 2021), OUT/summary.md and PNG figures.

  spo-reproduce --question all --scale cpu --seeds 5 --out runs/repro
  spo-reproduce --question all --scale gpu --dry-run     # the plan, validated
  spo-reproduce --question q1 --tiny --out /tmp/r        # seconds (tests)
  spo-reproduce --question all --out runs/repro --docs docs/results

`python scripts/reproduce.py` and `python -m spo_jax.reproduce` take the same arguments.
`--docs DIR` copies the figures into DIR/ and rewrites the generated blocks of DIR.md
(docs/results.md), leaving the hand-written reading around them untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from spo_jax import teachers as teachers_lib
from spo_jax.config import ConfigError, validate
from spo_jax.envs import make_env, require_family
from spo_jax.reproduce import analysis, extras, report, running
from spo_jax.reproduce.plans import (
    DEFAULT_TABLE,
    METHODS,
    NONMARKOV,
    QUESTIONS,
    SCALES,
    Run,
    check_labels_per_trajectory,
    dry_run,
    plan_runs,
    scale_plan,
)
from spo_jax.run_dir import RunDirBusy
from spo_jax.teachers.raters import PRESETS as RATER_PRESETS
from spo_jax.write_errors import QuietAfterWriteFailure, RunWriteError

PROG = "spo-reproduce"


class UsageError(ValueError):
  """Bad command-line input: printed as one line, exit code 2, before anything runs."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line and exit 2, instead of argparse's usage block
    raise UsageError(message)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
  """The argument parser; its errors raise `UsageError` instead of exiting."""
  parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--question", default="all",
                      help=f"one of {', '.join(QUESTIONS)} or all (default)")
  parser.add_argument("--scale", default="cpu", help="cpu (default; the CPU budget) or gpu")
  parser.add_argument("--seeds", type=int, default=None,
                      help="seeds per run, vmapped in one compiled run (default: 10 cpu, "
                           "10 gpu, 3 tiny)")
  parser.add_argument("--out", type=Path, default=Path("runs/reproduce"),
                      help="output directory (default runs/reproduce)")
  parser.add_argument("--tiny", action="store_true",
                      help="seconds-long sizes on the package's tiny envs (smoke test)")
  parser.add_argument("--env", default=None,
                      help="environment of the control tasks instead of the scale's default")
  parser.add_argument("--teachers", default=None,
                      help=f"Q4 teachers, comma-separated, from {', '.join(NONMARKOV)}")
  parser.add_argument("--table", default=DEFAULT_TABLE,
                      help="Q1 matrix game payoff table: a preset (rps, cycle3, transitive3) "
                           "or a .json/.npy/.csv file")
  parser.add_argument("--methods", default=None,
                      help=f"comma-separated subset of {', '.join(METHODS)} (default: all "
                           "that apply to each question)")
  parser.add_argument("--labels-per-trajectory", type=int, default=None, metavar="K",
                      help="Q2/Q3 equal-label budget: SPO asks K sampled labels per trajectory, "
                           "RM labels N*K pairs per iteration (default: 2 cpu, 1 gpu, 1 tiny)")
  parser.add_argument("--no-soft-reference", action="store_true",
                      help="leave out Q2/Q3's soft-label SPO reference runs")
  parser.add_argument("--force", action="store_true", help="re-run finished runs")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the validated plan with its budget, run nothing")
  parser.add_argument("--analyze-only", action="store_true",
                      help="skip training; tables and figures from the finished runs")
  parser.add_argument("--docs", type=Path, default=None,
                      help="also copy the figures to DIR/ and write the tables into DIR.md")
  parser.add_argument("--reps", type=int, default=2000,
                      help="bootstrap resamples per confidence interval (default 2000)")
  return parser


def _names(text: str | None, valid, what: str) -> tuple[str, ...] | None:
  """A comma-separated list of names from `valid` (None stays None), or UsageError naming
  the first unknown one."""
  if text is None:
    return None
  names = tuple(t.strip() for t in text.split(",") if t.strip())
  bad = [t for t in names if t not in valid]
  if bad or not names:
    raise UsageError(f"unknown {what} {bad[0] if bad else text!r}; valid: "
                     f"{', '.join(valid)} (comma-separated)")
  return names


def check_arguments(args: argparse.Namespace) -> list[Run]:
  """The runs `args` ask for, after every check that needs no compilation: names, then each
  run's config and teacher (built against its environment, so a bad table file or metric
  name fails here). Raises `UsageError`."""
  questions = QUESTIONS if args.question == "all" else (args.question,)
  if args.question not in (*QUESTIONS, "all"):
    raise UsageError(f"unknown question {args.question!r}; valid: {', '.join(QUESTIONS)}, all")
  if args.scale not in SCALES:
    raise UsageError(f"unknown scale {args.scale!r}; valid: {', '.join(SCALES)}")
  plan = scale_plan(args.scale, args.tiny)
  if args.env is not None and ":" in args.env:
    try:  # brax:hopper is hopper; the plans name no env of another family
      args.env = require_family(args.env, ("package", "brax"), "spo-reproduce")
    except ConfigError as error:
      raise UsageError(str(error)) from None
  if args.env is not None and args.env not in plan.envs:
    where = "--tiny" if args.tiny else f"--scale {args.scale}"
    raise UsageError(f"unknown env {args.env!r} for {where}; valid: "
                     f"{', '.join(sorted(plan.envs))}")
  teachers = _names(args.teachers, NONMARKOV, "Q4 teacher")
  if args.seeds is not None and args.seeds < 1:
    raise UsageError(f"--seeds {args.seeds} is invalid; use 1 or more (5 or more for "
                     "meaningful intervals)")
  methods = _names(args.methods, tuple(METHODS), "method")
  if args.labels_per_trajectory is not None:
    if not {"q2", "q3"} & set(questions):
      raise UsageError(f"--labels-per-trajectory sets the equal-label budget of q2 and q3 "
                       f"only; --question {args.question} has no equal-label runs")
    problem = check_labels_per_trajectory(plan, args.labels_per_trajectory, args.env)
    if problem is not None:
      raise UsageError(problem)
  # Only now the package's configs and teachers (and so jax) are needed.

  if args.env is not None and "q1" in questions and args.env not in RATER_PRESETS:
    raise UsageError(f"env {args.env!r} has no intransitive rater preset for Q1; valid: "
                     f"{', '.join(sorted(set(RATER_PRESETS) & set(plan.envs)))}")
  seeds = args.seeds or plan.default_seeds
  runs = [run for q in questions
          for run in plan_runs(q, args.scale, seeds, tiny=args.tiny, env=args.env,
                               q4_teachers=teachers, table=args.table,
                               labels_per_trajectory=args.labels_per_trajectory,
                               soft_reference=not args.no_soft_reference)]
  if methods is not None:
    runs = [run for run in runs if run.method in methods]
    if not runs:
      raise UsageError(f"no run of {args.question} uses the methods {args.methods!r}; Q2 "
                       "runs spo, rm, ppo and spo_soft, Q3 spo, rm and spo_soft, the other "
                       "questions spo and rm")
  try:
    validate_runs(runs)
  except ConfigError as error:
    raise UsageError(str(error)) from error
  return runs


def validate_runs(runs: list[Run]) -> None:
  """`validate` every config and build every teacher against its env (no compilation);
  raises `spo_jax.ConfigError` on the first problem."""
  envs: dict[str, Any] = {}
  for run in runs:
    config = validate(run.config)
    if config.env not in envs:
      envs[config.env] = make_env(config.env, config.backend)
    spec = teachers_lib.env_spec(envs[config.env], config.episode_length, config.env)
    teacher = teachers_lib.make_teacher(config, spec)
    if config.env != "matrix_game":
      teachers_lib.hook(teacher, "check_env")(envs[config.env])


def main(argv: list[str] | None = None, *, prog: str = PROG, command: str = PROG) -> int:
  """Run the command line `argv` (default `sys.argv[1:]`); returns the exit code: 0, or 2
  after one line on stderr for bad input or a missing `reproduce` extra. `prog` names the
  command in error messages and `--help`; `command` + the arguments is the command line
  the reports quote."""
  argv = sys.argv[1:] if argv is None else argv
  try:
    args = build_parser(prog).parse_args(argv)
    if args.reps < 100:
      raise UsageError(f"--reps {args.reps} is too few; use at least 100 (2000 is the default)")
    runs = check_arguments(args)
    if not args.dry_run:
      extras.check()
  except (UsageError, extras.MissingExtra) as error:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2
  if args.dry_run:
    dry_run(runs)
    return 0

  out: Path = args.out
  out.mkdir(parents=True, exist_ok=True)
  episodes = scale_plan(args.scale, args.tiny).final_episodes
  seconds: dict[str, float] = {}
  if not args.analyze_only:
    quiet = QuietAfterWriteFailure()
    try:
      with quiet.watching():
        seconds = running.execute(runs, out, args.force, episodes)
    except RunDirBusy as error:  # another reproduction (or spo-train) holds a point's run
      print(f"{prog}: error: {error}", file=sys.stderr)
      return 2
    except RunWriteError as error:  # disk full: finished points are kept, rerun to go on
      quiet.report(f"{prog}: error: {error}")
      return 4
    running.head_to_head_q1(runs, out, args.force, episodes)
  results, finals = analysis.collect(runs, out)
  report.write_reports(runs, out, results, finals, f"{command} " + " ".join(argv), seconds,
                       args.reps, args.table, docs=args.docs)
  return 0
