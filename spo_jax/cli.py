"""Command line: `spo-train`.

Every `Config` field is a flag (`--learning-rate 1e-3`, `--policy-hidden-sizes 32 32`, ...).
`--env NAME` first selects that environment's preset, then the other flags override it, so
`spo-train --env hopper --num-envs 512` means "the hopper preset with 512 environments".
Bad input exits with code 2 and one line naming the problem, before anything is compiled
or written (a run directory held by another run is bad input too); a write the file system
refuses (disk full, read-only) exits with code 4 and one line naming the file and the last
good checkpoint (docs/long_runs.md lists every exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import io
import os
import re
import sys
import time
from pathlib import Path
from typing import Literal

from spo_jax import envs, reward_sources, teachers
from spo_jax.config import Config, ConfigError, validate
from spo_jax.loggers import LogOptions, check_options
from spo_jax.presets import default_config, preset
from spo_jax.train import NumericalError, TrainingInterrupted, train
from spo_jax.write_errors import QuietAfterWriteFailure, RunWriteError


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """Where the run lives."""

  run_dir: str | None = None
  """Run directory (config.json, metrics.jsonl, checkpoints/). Default:
  runs/<env>-<reward source>-<teacher>-seed<seed>-<date-time>."""
  resume: bool = False
  """Continue the run in --run-dir from its latest checkpoint (the config must match)."""
  overwrite: bool = False
  """Replace the run already in --run-dir."""
  quiet: bool = False
  """Print only the final summary."""
  progress: Literal["auto", "bar", "lines"] = "auto"
  """Progress display: a bar (env steps, steps/s, ETA, latest evaluation), one line per
  evaluation, or auto = the bar on a terminal and lines otherwise (CI logs, nohup)."""


@dataclasses.dataclass(frozen=True)
class TrainCommand:
  config: Config
  run: RunOptions
  log: LogOptions


def _fail(message: str) -> None:
  print(f"spo-train: error: {message}", file=sys.stderr)
  raise SystemExit(2)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOX = "│╭╮╰╯┃┏┓┗┛"
_TITLE = re.compile(r"^[A-Z][a-z]+( [a-z]+)*$")


def one_line_parse_error(text: str) -> str:
  """tyro's error box (title, message, a rule, the flag's help, a rule, a pointer to --help)
  as one line: the message, then the flag's usage when tyro shows it (e.g. `--num-envs INT`).

  Keeps the words tyro wrote, only re-flowed: tyro knows best what went wrong.
  """
  raw = [_ANSI.sub("", line).strip() for line in text.splitlines()]
  lines = [line.strip(_BOX).strip() for line in raw if not line.startswith(("╭", "╰"))]
  sections: list[list[str]] = [[]]
  for line in lines:
    if line and set(line) <= set("─━- "):
      sections.append([])
    elif line:
      sections[-1].append(line)
  sections = [section for section in sections if section]
  # Without a UTF-8 terminal tyro draws no box: the title ("Invalid choice") is a line of its
  # own above a rule instead of sitting in the top border.
  if len(sections) > 1 and len(sections[0]) == 1 and _TITLE.match(sections[0][0]):
    sections = sections[1:]
  if not sections:
    return "could not parse the command line (see spo-train --help)"
  message = " ".join(sections[0])
  usage = ""
  for section in sections[1:]:
    if section and section[0] == "Argument helptext:" and len(section) > 1:
      usage = section[1]
  # A union type ("{None}|FLOAT") lists each member's failure; the usage says it better.
  message = re.sub(r"\s+", " ", message).split(" Got errors:")[0].rstrip(".")
  if message.startswith("Unrecognized options:"):
    message += "; " + _unrecognized_hint(message.split(":", 1)[1])
  return f"{message}; expected {usage} (see spo-train --help)" if usage else (
      f"{message} (see spo-train --help)")


def _flag_names() -> list[str]:
  names = [f.name for cls in (Config, RunOptions) for f in dataclasses.fields(cls)]
  return ["--" + name.replace("_", "-") for name in names]


def _unrecognized_hint(tokens: str) -> str:
  """Suggest the flag meant by a misspelt one; a stray value usually follows a switch."""
  flags = _flag_names()
  for token in (t.strip() for t in tokens.split(",")):
    if token.startswith("--"):
      name = token.split("=")[0]
      negated = name.startswith("--no-")
      close = difflib.get_close_matches(name.replace("--no-", "--"), flags, n=1)
      if close:
        return f"did you mean {close[0].replace('--', '--no-') if negated else close[0]}?"
      return "every flag is a Config field or a run option, listed by spo-train --help"
  return ("true/false fields are switches that take no value, such as --center-rewards / "
          "--no-center-rewards")


def parse_train_args(argv: list[str]) -> TrainCommand:
  """Parse `spo-train` flags into (Config, RunOptions); a parse error prints one line on
  stderr and exits with code 2 (tyro's multi-line box is re-flowed by `one_line_parse_error`)."""
  import tyro  # lazy: ~0.15 s, needed only to parse; spo-reproduce imports this module too

  pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
  pre.add_argument("--env", default=None)
  try:
    known, _ = pre.parse_known_args(argv)
  except argparse.ArgumentError:
    _fail("--env needs a value: an environment name such as inverted_pendulum, hopper or "
          "point_reach (see spo-train --help)")
  base = default_config() if known.env is None else preset(known.env)
  captured = io.StringIO()
  try:
    with contextlib.redirect_stderr(captured):
      command = tyro.cli(
          TrainCommand, args=argv, default=TrainCommand(base, RunOptions(), LogOptions()),
          config=(tyro.conf.OmitArgPrefixes,), prog="spo-train",
          description="Train a policy by Self-Play Preference Optimization (SPO; Swamy et al., "
                      "ICML 2024) or a reference reward source, on a Brax environment. "
                      "--env selects a preset; every other flag overrides it.\n\n"
                      + registered_plugins())
  except SystemExit as stop:
    if stop.code in (0, None):
      sys.stderr.write(captured.getvalue())
      raise
    _fail(one_line_parse_error(captured.getvalue()))
  # --env brax:hopper trains hopper: the run records the name presets and spo-eval know it by
  return dataclasses.replace(
      command, config=command.config.replace(env=envs.canonical_env_name(command.config.env)))


def registered_plugins() -> str:
  """The registered reward sources, teachers, wrappers and environments, one line each, read
  from their registries (so a plug-in registered before `train_main` is listed too)."""
  sections = (("reward sources (--reward-source)", reward_sources.REWARD_SOURCES),
              ("teachers (--teacher)", teachers.TEACHERS),
              ("teacher wrappers (--teacher 'wrapper(base)')", teachers.WRAPPER_REGISTRY),
              ("environments (--env)", envs.ENVS),
              ("environment families (--env FAMILY:NAME)", envs.ENV_FAMILIES))
  return "\n\n".join(f"{title}:\n{registry.describe()}" for title, registry in sections)


def _default_run_dir(config: Config) -> Path:
  stamp = time.strftime("%Y%m%d-%H%M%S")
  # 'gymnax:CartPole-v1' -> 'gymnax-CartPole-v1': a colon in a path confuses scp and
  # TensorBoard's --logdir_spec (NAME:PATH).
  return Path("runs") / (f"{config.env.replace(':', '-')}-{config.reward_source}-{config.teacher}"
                         f"-seed{config.seed}-{stamp}")


def train_main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  command = parse_train_args(argv)
  config, run = command.config, command.run

  run_dir = None
  quiet = QuietAfterWriteFailure()
  try:
    validate(config)
    check_options(command.log)
    run_dir = Path(run.run_dir) if run.run_dir else _default_run_dir(config)
    if not run.quiet:
      print(f"spo-train: {config.reward_source} on {config.env}, teacher {config.teacher}, "
            f"N={config.num_envs} episodes x H={config.episode_length} steps per iteration, "
            f"{config.num_timesteps:,d} env steps; run directory {run_dir}", flush=True)
    start = time.perf_counter()
    with quiet.watching():
      result = train(config, run_dir=run_dir, resume=run.resume, overwrite=run.overwrite,
                     verbose=not run.quiet, log_options=command.log, progress=run.progress)
  except ConfigError as error:
    _fail(str(error))
  except NumericalError as error:
    print(f"spo-train: error: {error}", file=sys.stderr)
    raise SystemExit(3) from None
  except RunWriteError as error:
    quiet.report(f"spo-train: error: {error}")
    raise SystemExit(4) from None
  except TrainingInterrupted as stop:
    print(f"\nspo-train: stopped by {stop.signal_name} after iteration {stop.iteration}; "
          f"checkpoint saved in {run_dir}. Continue it with the same arguments plus "
          f"--resume --run-dir {run_dir}", file=sys.stderr)
    raise SystemExit(130 if stop.signal_name == "SIGINT" else 143) from None
  except KeyboardInterrupt:
    print("\nspo-train: interrupted; resume from the last periodic checkpoint with "
          f"--resume --run-dir {run_dir}", file=sys.stderr)
    raise SystemExit(130) from None
  metrics = result.metrics
  wall = time.perf_counter() - start
  seeds = f" (mean of {config.num_seeds} seeds)" if config.num_seeds > 1 else ""
  print(f"\nDone. Final evaluation return {metrics['eval/episode_reward']:.1f}{seeds} "
        f"(episode length {metrics['eval/episode_length']:.0f}) after "
        f"{metrics['step']:,d} env steps and {metrics['iteration']} iterations; "
        f"{wall:.0f} s wall time.\n"
        f"Results: {run_dir}/metrics.jsonl (plot: spo-plot {run_dir}; evaluate: spo-eval "
        f"{run_dir}), TensorBoard {run_dir}/tensorboard, config {run_dir}/config.json, "
        f"checkpoints {run_dir}/checkpoints (load with spo_jax.load_policy('{run_dir}')).",
        flush=True)


if __name__ == "__main__":
  train_main()
