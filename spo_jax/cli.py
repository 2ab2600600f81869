"""Command line: `spo-train`.

Every `Config` field is a flag (`--learning-rate 1e-3`, `--policy-hidden-sizes 32 32`, ...).
`--env NAME` first selects that environment's preset, then the other flags override it, so
`spo-train --env hopper --num-envs 512` means "the hopper preset with 512 environments".
Bad input exits with code 2 and one line naming the problem, before anything is compiled
or written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Literal

from spo_jax.config import Config, ConfigError, default_config, preset
from spo_jax.loggers import LogOptions


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


def parse_train_args(argv: list[str]) -> TrainCommand:
  import tyro

  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument("--env", default=None)
  known, _ = pre.parse_known_args(argv)
  base = default_config() if known.env is None else preset(known.env)
  return tyro.cli(
      TrainCommand, args=argv, default=TrainCommand(base, RunOptions(), LogOptions()),
      config=(tyro.conf.OmitArgPrefixes,), prog="spo-train",
      description="Train a policy by Self-Play Preference Optimization (SPO; Swamy et al., "
                  "ICML 2024) or a reference reward source, on a Brax environment. "
                  "--env selects a preset; every other flag overrides it.")


def _default_run_dir(config: Config) -> Path:
  stamp = time.strftime("%Y%m%d-%H%M%S")
  return Path("runs") / (f"{config.env}-{config.reward_source}-{config.teacher}"
                         f"-seed{config.seed}-{stamp}")


def train_main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  command = parse_train_args(argv)
  config, run = command.config, command.run
  from spo_jax.config import validate
  from spo_jax.loggers import check_options
  from spo_jax.train import NumericalError, TrainingInterrupted, train

  run_dir = None
  try:
    validate(config)
    check_options(command.log)
    run_dir = Path(run.run_dir) if run.run_dir else _default_run_dir(config)
    if not run.quiet:
      print(f"spo-train: {config.reward_source} on {config.env}, teacher {config.teacher}, "
            f"N={config.num_envs} episodes x H={config.episode_length} steps per iteration, "
            f"{config.num_timesteps:,d} env steps; run directory {run_dir}", flush=True)
    start = time.perf_counter()
    result = train(config, run_dir=run_dir, resume=run.resume, overwrite=run.overwrite,
                   verbose=not run.quiet, log_options=command.log, progress=run.progress)
  except ConfigError as error:
    _fail(str(error))
  except NumericalError as error:
    print(f"spo-train: error: {error}", file=sys.stderr)
    raise SystemExit(3) from None
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
