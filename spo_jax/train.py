"""The host loop: `train(config, ...) -> (make_policy, params, metrics)`, in the shape Brax
users know.

`train` checks its arguments and takes the run directory's lock; `_train` then reads as the
loop's steps: build (spo_jax/setup.py) → restore or init → iterate, each jitted call
(spo_jax/iteration.py) followed by the numerical guard (spo_jax/guard.py), evaluation and
logging when due, a checkpoint when due → a last evaluation and checkpoint. `HostLoop`
(spo_jax/host_loop.py) holds what the steps share: the compiled functions, the run
directory's checkpointer and logger, and the host's copy of the counters (env steps, physics
steps, queries and labels, counted on the device in the `TrainState`: spo_jax/counters.py; wall
time) that the checkpoint's meta carries. SIGINT/SIGTERM stop between
calls (spo_jax/signals.py).

The names that used to live here (`build`, `make_train`, `TrainState`, `Setup`,
`check_memory`, `NumericalError`, `TrainingInterrupted`, ...) are re-exported from their
modules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from brax.envs.base import Env

from spo_jax import determinism
from spo_jax import progress as progress_lib
from spo_jax import run_dir as run_dir_lib
from spo_jax.checkpoint import check_contents
from spo_jax.config import Config, ConfigError, validate
from spo_jax.evaluate import PolicyParams, seed_slice
from spo_jax.guard import GUARDED, NumericalError, check_guard  # noqa: F401 (re-exported)
from spo_jax.host_loop import HostLoop, RunSet
from spo_jax.iteration import (  # noqa: F401 (re-exported)
  TrainFunctions,
  TrainState,
  policy_params,
  ppo_hyperparams,
  with_hyperparams,
)
from spo_jax.loggers import LogOptions
from spo_jax.loggers import check_options as check_log_options
from spo_jax.memory import available_memory, check_memory, iteration_bytes  # noqa: F401
from spo_jax.presets import default_config
from spo_jax.saved_policy import check_resume_env, read_spec
from spo_jax.setup import (  # noqa: F401 (re-exported)
  Setup,
  build,
  device_mesh,
  init_over_seeds,
  make_train,
  over_seeds,
  seed_keys,
)
from spo_jax.signals import StopSignal, TrainingInterrupted  # noqa: F401 (re-exported)
from spo_jax.teachers import TeacherProtocol


class TrainResult(NamedTuple):
  make_policy: Callable
  params: PolicyParams
  metrics: dict[str, float | int]



def train(config: Config | None = None, *, env: Env | None = None,
          teacher: TeacherProtocol | None = None,
          progress_fn: Callable[[int, dict[str, Any]], None] | None = None,
          run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          verbose: bool = False, handle_signals: bool = True,
          log_options: LogOptions | None = None, progress: str = "auto",
          runs: RunSet | None = None) -> TrainResult:
  """Train by SPO (or the configured reward source); returns (make_policy, params, metrics).

  progress_fn(step, metrics) is called after each evaluation with `step` = env steps so far.
  With `run_dir`, writes config.json, provenance.json (code, library versions, devices,
  command; spo_jax/provenance.py), the metrics (metrics.jsonl, and as `log_options` asks:
  metrics.csv, TensorBoard, W&B; spo_jax/loggers.py) and Orbax checkpoints there; `resume`
  continues the latest checkpoint exactly (metrics logged after it are dropped: they are
  recomputed; provenance.json gains an entry, and a line on stderr names library versions
  that changed), `overwrite` replaces an existing run. `config.deterministic` sets the XLA
  flag for bit-for-bit GPU runs, which XLA reads only when JAX starts its backend
  (spo_jax/determinism.py: on a GPU already started without it, `ConfigError`). Every check
  (config, env, teacher contract, run directory, logging options) happens before anything is
  compiled or written.
  `verbose` shows progress: `progress` = "auto" (a bar on a terminal, one line per evaluation
  otherwise), "bar" or "lines" (spo_jax/progress.py).

  With `config.num_seeds = S > 1`, the S seeds train as one vmapped, compiled run: `params`
  then has a leading seed axis, metrics.jsonl holds one row per seed per evaluation (field
  `seed`), and `metrics` is the mean over seeds with the rows under `per_seed`. Training
  stops when every seed has collected `num_timesteps` env steps (or reached `target_return`).

  `runs` (a sweep group, spo_jax/sweep/): the `config.num_seeds` vmapped runs get their own
  seeds, traced hyperparameters and row tags instead of seeds `config.seed + i`.

  With `handle_signals` (in the main thread), SIGINT and SIGTERM stop training after the
  iteration in flight, save a checkpoint and raise `TrainingInterrupted`; a second SIGINT
  interrupts at once (the last periodic checkpoint is kept).

  The run directory has one writer: `train` holds its lock (`run_dir.RunLock`) from before it
  inspects the directory until it returns; another process's run there raises `RunDirBusy`.
  `resume` restores the newest checkpoint that matches its manifest, naming any newer damaged
  one on stderr. A write the file system refuses (disk full, read-only) raises
  `RunWriteError`, naming the file and the last good checkpoint; what was written before it
  is left intact.
  """
  config = default_config() if config is None else config
  # First, before anything can start JAX's backend (XLA reads XLA_FLAGS only then): checking
  # an env name may import the env's package (gymnax starts the backend on import).
  if isinstance(config, Config):
    determinism.enable(config)
  run_path = Path(run_dir) if run_dir is not None else None
  if env is None and resume and run_path is not None:
    # A run on the user's own env: say that it needs the env again, not that its label is
    # no registry name (which `validate` would).
    saved_spec = read_spec(run_path)
    if saved_spec is not None:
      check_resume_env(saved_spec, None, run_path)
  validate(config, env)  # with a user's env object, config.env is only the run's label
  log_options = LogOptions() if log_options is None else log_options
  check_log_options(log_options)
  if progress not in progress_lib.STYLES:
    raise ConfigError(f"progress '{progress}' is not one of {', '.join(progress_lib.STYLES)}")
  if run_path is None:
    if resume:
      raise ConfigError("--resume needs the --run-dir of the run to continue")
    return _train(config, env, teacher, progress_fn, None, False, False, verbose,
                  handle_signals, log_options, progress, runs)
  run_dir_lib.check_arguments(run_path, resume, overwrite)
  # One writer per run directory: held from before the directory is inspected until the run
  # has closed every file (spo_jax/run_dir.py).
  lock = run_dir_lib.RunLock(run_path).acquire()
  try:
    return _train(config, env, teacher, progress_fn, run_path, resume, overwrite, verbose,
                  handle_signals, log_options, progress, runs)
  finally:
    lock.release()


def _train(config: Config, env: Env | None, teacher: Any | None,
           progress_fn: Callable[[int, dict[str, Any]], None] | None, run_path: Path | None,
           resume: bool, overwrite: bool, verbose: bool, handle_signals: bool,
           log_options: LogOptions, progress: str, runs: RunSet | None = None) -> TrainResult:
  """`train` once its arguments are checked and, with a run directory, its lock is held."""
  has_checkpoint = False
  if run_path is not None:
    has_checkpoint = check_contents(run_path, config, resume, overwrite)
  setup = build(config, env, teacher, traced=tuple(runs.values) if runs else ())
  loop = HostLoop(setup, run_path, progress_fn, verbose, runs)
  stop_signal = None
  try:
    state = loop.restore_or_init(has_checkpoint, overwrite)
    loop.open_log(state, has_checkpoint, log_options, progress if verbose else "none")
    stop_signal = StopSignal() if handle_signals else None
    loop.display.start(min(loop.counters["env_steps"]))
    state = loop.iterate(state, stop_signal)
    loop.finish(state)
  finally:
    loop.close(stop_signal)
  params = policy_params(state)
  return TrainResult(setup.make_policy, seed_slice(params, 0) if config.num_seeds == 1 else params,
                     loop.last_metrics)
