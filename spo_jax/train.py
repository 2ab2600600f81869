"""Training: pure `make_train(config) -> (init, iteration)` and the host loop `train(...)`.

One iteration (all inside one `jax.jit`):

  key -> rollout (N episodes from reset, H steps, teacher summaries folded in the scan)
      -> reward source (win rates -> per-step rewards, or the env reward)
      -> PPO (masked GAE, clipped surrogate, minibatch epochs)
      -> observation normalizer update
      -> new TrainState

The whole state is one NamedTuple, so `jax.vmap(iteration)` over a leading seed axis needs
no special code. `train` is the host loop around it: evaluation, logging, checkpoints and
`progress_fn(step, metrics)`, in the shape Brax users know.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env

from spo_jax import envs as envs_lib
from spo_jax import networks as nets
from spo_jax import ppo
from spo_jax import reward_sources as sources
from spo_jax import teachers as teachers_lib
from spo_jax.config import Config, ConfigError, default_config, validate
from spo_jax.evaluate import PolicyParams, make_evaluator, make_policy_factory
from spo_jax.rollout import rollout


class TrainState(NamedTuple):
  """Everything a run needs to continue exactly where it stopped."""

  params: nets.Params
  opt_state: Any  # optax state of the actor-critic optimizer
  normalizer: nets.Normalizer
  reward_state: Any  # the reward source's state (the opponent queue for SPO)
  key: jax.Array  # [2], uint32
  iteration: jax.Array  # [], int32: iterations completed


class TrainFunctions(NamedTuple):
  init: Callable[[jax.Array], TrainState]
  iteration: Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]


class Setup(NamedTuple):
  """Everything built from a config, before anything is compiled."""

  config: Config
  env: Env
  teacher: Any
  networks: nets.Networks
  fns: TrainFunctions
  evaluate: Callable[[PolicyParams, jax.Array], dict[str, jax.Array]]
  make_policy: Callable


def policy_params(state: TrainState) -> PolicyParams:
  return PolicyParams(state.normalizer, state.params.policy)


def _hyperparams(config: Config) -> ppo.PPOHyperparams:
  return ppo.PPOHyperparams(
      discount=config.discount, gae_lambda=config.gae_lambda, clip_epsilon=config.clip_epsilon,
      value_coef=config.value_coef, entropy_coef=config.entropy_coef,
      normalize_advantages=config.normalize_advantages, update_epochs=config.update_epochs,
      num_minibatches=config.num_minibatches,
      normalize_observations=config.normalize_observations)


def _make_functions(config: Config, env: Env, teacher: Any, networks: nets.Networks,
                    spec: teachers_lib.EnvSpec) -> TrainFunctions:
  source = sources.make_reward_source(config, teacher, spec)
  optimizer = ppo.make_optimizer(config.learning_rate, config.max_grad_norm)
  hp = _hyperparams(config)
  num_envs, horizon = config.num_envs, config.episode_length
  rollout_teacher = teacher if source.uses_teacher else None

  def init(key: jax.Array) -> TrainState:
    k_params, k_state, k_reward = jax.random.split(key, 3)
    params = nets.init_params(networks, k_params)
    summary_template = teacher.init() if source.uses_teacher else None
    return TrainState(params=params, opt_state=optimizer.init(params),
                      normalizer=nets.normalizer_init(networks.observation_size),
                      reward_state=source.init(k_reward, summary_template), key=k_state,
                      iteration=jnp.zeros((), jnp.int32))

  def one_iteration(state: TrainState, _) -> tuple[TrainState, dict[str, jax.Array]]:
    key, k_rollout, k_reward, k_ppo = jax.random.split(state.key, 4)

    def policy_fn(obs, key):
      norm_obs = nets.normalize(state.normalizer, obs, config.normalize_observations)
      mean, log_std = networks.policy.apply(state.params.policy, norm_obs)
      raw_action = nets.sample_raw_action(mean, log_std, key)
      return raw_action, nets.log_prob(mean, log_std, raw_action)

    result = rollout(env, policy_fn, k_rollout, num_envs, horizon, rollout_teacher)
    traj = result.trajectory
    rewards, reward_state, reward_metrics = source.rewards(state.reward_state, result, k_reward)
    params, opt_state, ppo_metrics = ppo.ppo_update(
        state.params, state.opt_state, optimizer, networks, state.normalizer, traj.obs,
        traj.raw_action, traj.log_prob, rewards * config.reward_scale, traj.mask, k_ppo, hp)
    normalizer = state.normalizer
    if config.normalize_observations:
      normalizer = nets.normalizer_update(normalizer, traj.obs, traj.mask)
    lengths = jnp.sum(traj.mask, axis=0)
    metrics = {
        "train/episode_reward": jnp.mean(jnp.sum(traj.reward, axis=0)),
        "train/episode_length": jnp.mean(lengths),
        "train/env_steps": jnp.sum(lengths).astype(jnp.int32),
        "train/physics_steps": result.physics_steps,
        "train/reward_mean": jnp.sum(rewards) / num_envs,
    }
    metrics.update({f"train/{k}": v for k, v in reward_metrics.items()})
    metrics.update({f"ppo/{k}": v for k, v in ppo_metrics.items()})
    new_state = TrainState(params, opt_state, normalizer, reward_state, key,
                           state.iteration + 1)
    return new_state, metrics

  def iteration(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    """`config.iterations_per_call` iterations; metrics stacked with a leading axis."""
    iteration.num_traces += 1  # counts compilations (tests check it stays at 1)
    return jax.lax.scan(one_iteration, state, None, length=config.iterations_per_call)

  iteration.num_traces = 0
  return TrainFunctions(init, iteration)


def build(config: Config, env: Env | None = None, teacher: Any | None = None) -> Setup:
  """Validate the config and build env, teacher, networks and the pure functions.

  `env` and `teacher` override the config's names with user objects. The teacher's contract
  is checked on sample data shaped like this environment's steps.
  """
  validate(config)
  user_env = env
  env = envs_lib.make_env(config.env if env is None else env, config.backend)
  envs_lib.check_env(env)
  limit = envs_lib.max_episode_length(env)
  if limit is not None and config.episode_length > limit:
    raise ConfigError(f"config field 'episode_length' = {config.episode_length} is invalid: "
                      f"this environment's episodes last at most {limit} steps")
  spec = teachers_lib.env_spec(env, config.episode_length, config.env if user_env is None else "")
  if teacher is None:
    teacher = teachers_lib.make_teacher(config, spec)
  check_env = getattr(teacher, "check_env", None)
  if callable(check_env):  # teachers that can only check the env object itself (outcome count)
    check_env(env)
  if config.reward_source != "ground_truth":
    teachers_lib.validate_teacher(teacher, obs_size=env.observation_size,
                                  action_size=env.action_size, metric_names=spec.metric_names,
                                  horizon=min(config.episode_length, 6))
  networks = nets.make_networks(env.observation_size, env.action_size,
                                config.policy_hidden_sizes, config.value_hidden_sizes,
                                config.activation, config.init_log_std)
  fns = _make_functions(config, env, teacher, networks, spec)
  evaluate = make_evaluator(env, networks, config.num_eval_envs, config.episode_length,
                            config.normalize_observations)
  make_policy = make_policy_factory(networks, config.normalize_observations)
  return Setup(config, env, teacher, networks, fns, evaluate, make_policy)


def make_train(config: Config, env: Env | None = None,
               teacher: Any | None = None) -> TrainFunctions:
  """Pure `init(key) -> TrainState` and `iteration(state) -> (state, metrics)`.

  Neither is jitted here: wrap them in `jax.jit` (or `jax.vmap` then `jax.jit` for many
  seeds). `train` does this for you.
  """
  return build(config, env, teacher).fns


# -------------------------------------------------------------------------------------
# Host loop
# -------------------------------------------------------------------------------------

def _prepare_run_dir(run_dir: Path, config: Config, resume: bool, overwrite: bool) -> bool:
  """Check the run directory before anything is compiled or written.

  Returns True when there is a checkpoint to resume from.
  """
  from spo_jax.checkpoint import config_differences, read_run_config

  holds_run = (run_dir / "config.json").exists() or (run_dir / "checkpoints").exists()
  if resume and overwrite:
    raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
  if run_dir.exists() and not run_dir.is_dir():
    raise ConfigError(f"run directory '{run_dir}' is a file; choose a directory path")
  if resume:
    if not holds_run:
      raise ConfigError(f"nothing to resume: '{run_dir}' holds no run (no config.json); "
                        "drop --resume to start a new run there")
    saved = read_run_config(run_dir)
    diffs = config_differences(saved, config)
    if diffs:
      details = ", ".join(f"{k}: saved {getattr(saved, k)!r}, now {getattr(config, k)!r}"
                          for k in diffs)
      raise ConfigError(f"cannot resume '{run_dir}': its checkpoint was made with a different "
                        f"config ({details}); use the saved values or a new --run-dir")
    return True
  if holds_run and not overwrite:
    raise ConfigError(f"run directory '{run_dir}' already holds a run; pass --resume to "
                      "continue it, --overwrite to replace it, or choose another --run-dir")
  return False


def _check_writable(run_dir: Path) -> None:
  parent = run_dir
  while not parent.exists():
    parent = parent.parent
  probe = parent / f".spo_jax_write_test_{time.time_ns()}"
  try:
    probe.touch()
    probe.unlink()
  except OSError as error:
    raise ConfigError(f"cannot write to '{parent}' ({error.strerror}); choose a --run-dir "
                      "you can write to") from error


def _to_python(metrics: dict[str, Any]) -> dict[str, float | int]:
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    out[k] = int(v) if np.issubdtype(v.dtype, np.integer) else float(v)
  return out


# Config fields that may name a file whose contents shape the teacher: a resumed run must see
# the same bytes, not just the same path.
_FILE_FIELDS = ("teacher_labels_file", "teacher_raters", "teacher_table")


def _file_digests(config: Config) -> dict[str, str]:
  digests = {}
  for field in _FILE_FIELDS:
    path = Path(getattr(config, field) or "")
    if str(path) and path.is_file():
      digests[field] = hashlib.sha256(path.read_bytes()).hexdigest()
  return digests


def _check_same_files(saved: dict[str, str], current: dict[str, str], run_dir: Path) -> None:
  for field in sorted(set(saved) | set(current)):
    if saved.get(field) != current.get(field):
      raise ConfigError(f"cannot resume '{run_dir}': the file named by '{field}' has changed "
                        "since the checkpoint was written, so the teacher would differ; restore "
                        "the original file or start a new --run-dir")


class TrainingInterrupted(KeyboardInterrupt):
  """Training stopped on SIGINT/SIGTERM after saving a checkpoint at `iteration`."""

  def __init__(self, signal_name: str, iteration: int, run_dir: Path | None):
    super().__init__(f"{signal_name} at iteration {iteration}")
    self.signal_name, self.iteration, self.run_dir = signal_name, iteration, run_dir


class _StopSignal:
  """Turns the first SIGINT/SIGTERM into a request to stop after the current iteration (an
  iteration in flight owns donated buffers, so stopping inside it could lose the state)."""

  def __init__(self):
    self.received: str | None = None
    self._previous = {}
    if threading.current_thread() is not threading.main_thread():
      return
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class TrainResult(NamedTuple):
  make_policy: Callable
  params: PolicyParams
  metrics: dict[str, float | int]


def train(config: Config | None = None, *, env: Env | None = None, teacher: Any | None = None,
          progress_fn: Callable[[int, dict[str, Any]], None] | None = None,
          run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          verbose: bool = False, handle_signals: bool = True) -> TrainResult:
  """Train by SPO (or the configured reward source); returns (make_policy, params, metrics).

  progress_fn(step, metrics) is called after each evaluation with `step` = env steps so far.
  With `run_dir`, writes config.json, metrics.jsonl and Orbax checkpoints there; `resume`
  continues the latest checkpoint exactly, `overwrite` replaces an existing run. Every check
  (config, env, teacher contract, run directory) happens before anything is compiled or
  written.

  With `handle_signals` (in the main thread), SIGINT and SIGTERM stop training after the
  iteration in flight, save a checkpoint and raise `TrainingInterrupted`; a second SIGINT
  interrupts at once (the last periodic checkpoint is kept).
  """
  from spo_jax.checkpoint import Checkpointer

  config = default_config() if config is None else config
  validate(config)
  run_path = Path(run_dir) if run_dir is not None else None
  has_checkpoint = False
  if run_path is not None:
    has_checkpoint = _prepare_run_dir(run_path, config, resume, overwrite)
    _check_writable(run_path)
  elif resume:
    raise ConfigError("--resume needs the --run-dir of the run to continue")
  setup = build(config, env, teacher)
  file_digests = _file_digests(config)
  fit_metrics = getattr(setup.teacher, "fit_metrics", None)
  if verbose and fit_metrics:
    print("teacher fit: " + ", ".join(f"{k} {float(v):.4g}" for k, v in fit_metrics.items()),
          flush=True)

  checkpointer = None
  state = None
  counters = {"env_steps": 0, "physics_steps": 0, "total_queries": 0, "total_feedback": 0,
              "wall_time": 0.0}
  init = jax.jit(setup.fns.init)
  if run_path is not None:
    if has_checkpoint:
      checkpointer = Checkpointer(run_path / "checkpoints")
      step = checkpointer.latest_step()
      if step is None:
        raise ConfigError(f"nothing to resume: '{run_path}' has no complete checkpoint")
      abstract = jax.eval_shape(init, jax.random.PRNGKey(config.seed))
      state, meta = checkpointer.restore(step, abstract)
      counters.update(meta["counters"])
      _check_same_files(meta.get("files", {}), file_digests, run_path)
    else:
      if overwrite and run_path.exists():
        shutil.rmtree(run_path)
      run_path.mkdir(parents=True, exist_ok=True)
      (run_path / "config.json").write_text(config.to_json())
      (run_path / "metrics.jsonl").write_text("")
      checkpointer = Checkpointer(run_path / "checkpoints")
  if state is None:
    state = init(jax.random.PRNGKey(config.seed))

  iteration = jax.jit(setup.fns.iteration, donate_argnums=0)
  eval_key = jax.random.PRNGKey(config.seed + 1)
  metrics_file = open(run_path / "metrics.jsonl", "a") if run_path is not None else None  # noqa: SIM115
  last_metrics: dict[str, Any] = {}
  window: list[dict[str, Any]] = []
  start = time.perf_counter() - counters["wall_time"]
  compile_time = None

  def save(state: TrainState) -> None:
    if checkpointer is not None:
      counters["wall_time"] = time.perf_counter() - start
      checkpointer.save(int(state.iteration), state,
                        {"config": config.to_dict(), "counters": dict(counters),
                         "files": file_digests})

  def evaluate(state: TrainState) -> dict[str, Any]:
    it = int(state.iteration)
    metrics = _to_python(setup.evaluate(policy_params(state), jax.random.fold_in(eval_key, it)))
    if window:
      for k in window[-1]:
        metrics[k] = float(np.mean([w[k] for w in window]))
    metrics.update({"step": counters["env_steps"], "iteration": it,
                    "train/physics_steps_total": counters["physics_steps"],
                    "train/total_queries": counters["total_queries"],
                    "train/total_feedback": counters["total_feedback"],
                    "time/elapsed_s": time.perf_counter() - start})
    if compile_time is not None:
      metrics["time/first_call_s"] = compile_time
    return metrics

  stop_signal = _StopSignal() if handle_signals else None
  try:
    while True:
      if stop_signal is not None and stop_signal.received is not None:
        save(state)
        raise TrainingInterrupted(stop_signal.received, int(state.iteration), run_path)
      done_steps = counters["env_steps"] >= config.num_timesteps
      done_iters = config.max_iterations and int(state.iteration) >= config.max_iterations
      if done_steps or done_iters:
        break
      t0 = time.perf_counter()
      state, stacked = iteration(state)
      stacked = jax.device_get(stacked)
      if compile_time is None:
        compile_time = time.perf_counter() - t0
      for i in range(config.iterations_per_call):
        row = {k: v[i] for k, v in stacked.items()}
        counters["env_steps"] += int(row["train/env_steps"])
        counters["physics_steps"] += int(row["train/physics_steps"])
        counters["total_queries"] += int(row["train/num_queries"])
        counters["total_feedback"] += int(row["train/num_labels"])
        window.append(_to_python(row))
      it = int(state.iteration)
      is_last = counters["env_steps"] >= config.num_timesteps or (
          config.max_iterations and it >= config.max_iterations)
      if it % config.eval_every < config.iterations_per_call or is_last:
        last_metrics = evaluate(state)
        window.clear()
        if metrics_file is not None:
          metrics_file.write(json.dumps(last_metrics) + "\n")
          metrics_file.flush()
        if verbose:
          _print_progress(last_metrics, config)
        if progress_fn is not None:
          progress_fn(last_metrics["step"], last_metrics)
        target = config.target_return
        if target is not None and last_metrics["eval/episode_reward"] >= target:
          save(state)
          break
      if config.checkpoint_every and it % config.checkpoint_every < config.iterations_per_call:
        save(state)
    if not last_metrics or last_metrics["iteration"] != int(state.iteration):
      last_metrics = evaluate(state)
      if metrics_file is not None:
        metrics_file.write(json.dumps(last_metrics) + "\n")
      if progress_fn is not None:
        progress_fn(last_metrics["step"], last_metrics)
    save(state)
  finally:
    if stop_signal is not None:
      stop_signal.restore()
    if metrics_file is not None:
      metrics_file.close()
    if checkpointer is not None:
      checkpointer.close()
  return TrainResult(setup.make_policy, policy_params(state), last_metrics)


def _print_progress(m: dict[str, Any], config: Config) -> None:
  elapsed = m["time/elapsed_s"]
  rate = m["step"] / max(elapsed, 1e-9)
  parts = [f"iter {m['iteration']:>4d}", f"steps {m['step']:>10,d}/{config.num_timesteps:,d}",
           f"{rate:>8,.0f} steps/s", f"eval return {m['eval/episode_reward']:8.1f}"]
  if "train/episode_reward" in m:
    parts.append(f"train return {m['train/episode_reward']:8.1f}")
  if "train/winrate_std" in m:
    parts.append(f"win-rate std {m['train/winrate_std']:.3f}")
  parts.append(f"{elapsed:6.0f}s")
  print(" | ".join(parts), flush=True)
