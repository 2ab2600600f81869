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

import contextlib
import os
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
from spo_jax import policy_average as averaging
from spo_jax import ppo
from spo_jax import progress as progress_lib
from spo_jax import reward_sources as sources
from spo_jax import run_dir as run_dir_lib
from spo_jax import teachers as teachers_lib
from spo_jax.config import Config, ConfigError, default_config, validate
from spo_jax.evaluate import PolicyParams, make_evaluator, make_policy_factory, rollout_policy
from spo_jax.loggers import LogOptions, MetricsLogger
from spo_jax.loggers import check_options as check_log_options
from spo_jax.rollout import compaction_sizes, rollout
from spo_jax.saved_policy import PolicySpec, write_spec
from spo_jax.teachers import TeacherProtocol, hook


class TrainState(NamedTuple):
  """Everything a run needs to continue exactly where it stopped."""

  params: nets.Params
  opt_state: Any  # optax state of the actor-critic optimizer
  normalizer: nets.Normalizer
  reward_state: Any  # the reward source's state (the opponent queue for SPO)
  key: jax.Array  # [2], uint32
  iteration: jax.Array  # [], int32: iterations completed
  # One-step games with discrete actions (policy_average.py): [K] float32, the uniform mean
  # of the action probabilities of the policies after iterations 1..iteration; () otherwise.
  policy_average: Any


class TrainFunctions(NamedTuple):
  init: Callable[[jax.Array], TrainState]
  iteration: Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]


class Setup(NamedTuple):
  """Everything built from a config, before anything is compiled."""

  config: Config
  env: Env
  teacher: TeacherProtocol
  networks: nets.Networks
  fns: TrainFunctions
  evaluate: Callable[[PolicyParams, jax.Array], dict[str, jax.Array]]
  make_policy: Callable
  # One-step discrete games: the game (observation, payoff table, exact Minimax Winner) and
  # `game_metrics(state) -> eval/ metrics` of the last and the averaged policy; else None.
  game: averaging.OneStepGame | None = None
  game_metrics: Callable[[TrainState], dict[str, jax.Array]] | None = None
  # What loading the policy needs besides its weights (written to RUN_DIR/policy.json).
  policy_spec: PolicySpec | None = None


def policy_params(state: TrainState) -> PolicyParams:
  return PolicyParams(state.normalizer, state.params.policy)


def ppo_hyperparams(config: Config) -> ppo.PPOHyperparams:
  """PPO's settings from the config's PPO fields."""
  return ppo.PPOHyperparams(
      discount=config.discount, gae_lambda=config.gae_lambda, clip_epsilon=config.clip_epsilon,
      value_coef=config.value_coef, entropy_coef=config.entropy_coef,
      normalize_advantages=config.normalize_advantages, update_epochs=config.update_epochs,
      num_minibatches=config.num_minibatches,
      normalize_observations=config.normalize_observations,
      num_microbatches=config.num_microbatches)


def device_mesh(config: Config) -> jax.sharding.Mesh:
  """A 1-D mesh (axis 'd') over all devices, after checking the sharded axis divides evenly.

  Several hosts: call `jax.distributed.initialize()` first in every process; `jax.devices()`
  then lists every host's devices and the same mesh spans them (docs/performance.md).
  """
  devices = jax.devices()
  axis = {"envs": ("num_envs", config.num_envs), "seeds": ("num_seeds", config.num_seeds)}
  field, size = axis[config.shard]
  if size % len(devices):
    raise ConfigError(
        f"config field '{field}' = {size} cannot be split over {len(devices)} devices with "
        f"shard='{config.shard}': use a multiple of {len(devices)}, or shard='none'")
  return jax.sharding.Mesh(np.asarray(devices), ("d",))


# What the numerical guard checks, in the order the quantities arise in an iteration.
GUARDED = ("teacher_outputs", "rewards", "loss", "gradients", "parameters")


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _guard_flags(reward_metrics, rewards, ppo_metrics, params) -> dict[str, jax.Array]:
  """`guard/<quantity>` = 1 where it went bad in this iteration: a handful of reductions over
  arrays the iteration has in hand anyway (docs/performance.md measures the cost)."""
  invalid = reward_metrics.get("teacher_invalid", jnp.zeros((), jnp.int32))
  loss_ok = _all_finite([ppo_metrics[k] for k in ("policy_loss", "value_loss", "entropy")])
  flags = {"teacher_outputs": invalid > 0, "rewards": ~_all_finite(rewards),
           "loss": ~loss_ok, "gradients": ~jnp.isfinite(ppo_metrics["grad_norm"]),
           "parameters": ~_all_finite(params)}
  return {f"guard/{k}": flags[k].astype(jnp.int32) for k in GUARDED}


class NumericalError(RuntimeError):
  """A guarded quantity became nan/inf (or a teacher answer left [0, 1]); training stopped
  and the state of that iteration was not saved."""

  def __init__(self, quantities: list[str], iteration: int, seed: int,
               last_checkpoint: int | None, run_dir: Path | None):
    where = f" (seed {seed})"
    saved = ("no checkpoint was written before it" if last_checkpoint is None else
             f"the last good checkpoint, iteration {last_checkpoint}, is kept in {run_dir}")
    names = ", ".join(q.replace("_", " ") for q in quantities)
    hint = ("a teacher answer must be a probability in [0, 1]: check the teacher"
            if quantities[0] == "teacher_outputs" else
            "lower learning_rate or reward_scale, or check the environment's rewards")
    what = ("nan/inf, or a teacher answer outside [0, 1]" if "teacher_outputs" in quantities
            else "nan/inf")
    super().__init__(f"numerical guard: bad {names} in iteration {iteration}{where} ({what}); "
                     f"training stopped and {saved}. Likely fix: {hint}.")
    self.quantities, self.iteration, self.seed = quantities, iteration, seed


def _make_functions(config: Config, env: Env, teacher: TeacherProtocol,
                    networks: nets.Networks, spec: teachers_lib.EnvSpec,
                    game: averaging.OneStepGame | None = None,
                    chunk: int | None = None) -> TrainFunctions:
  source = sources.make_reward_source(config, teacher, spec)
  shard_envs = None
  if config.shard == "envs":
    sharding = jax.sharding.NamedSharding(device_mesh(config), jax.sharding.PartitionSpec("d"))
    shard_envs = lambda tree: jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, sharding) if jnp.ndim(x) else x, tree)
  optimizer = ppo.make_optimizer(config.learning_rate, config.max_grad_norm)
  hp = ppo_hyperparams(config)
  num_envs, horizon = config.num_envs, config.episode_length
  rollout_teacher = teacher if source.uses_teacher else None
  batch_sizes = (compaction_sizes(num_envs, config.compaction_factor)
                 if config.compaction_factor else None)

  def init(key: jax.Array) -> TrainState:
    k_params, k_state, k_reward = jax.random.split(key, 3)
    params = nets.init_params(networks, k_params)
    summary_template = teacher.init() if source.uses_teacher else None
    return TrainState(params=params, opt_state=optimizer.init(params),
                      normalizer=nets.normalizer_init(networks.observation_size),
                      reward_state=source.init(k_reward, summary_template), key=k_state,
                      iteration=jnp.zeros((), jnp.int32),
                      policy_average=() if game is None else jnp.zeros((game.num_actions,)))

  def one_iteration(state: TrainState, _) -> tuple[TrainState, dict[str, jax.Array]]:
    key, k_rollout, k_reward, k_ppo = jax.random.split(state.key, 4)

    policy_fn = rollout_policy(networks, policy_params(state), config.normalize_observations,
                               deterministic=False)
    result = rollout(env, policy_fn, k_rollout, num_envs, horizon, rollout_teacher,
                     shard_envs, chunk=chunk, segment_length=source.segment_length,
                     batch_sizes=batch_sizes)
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
        "train/loop_steps": result.loop_steps,
        "train/reward_mean": jnp.sum(rewards) / num_envs,
    }
    metrics.update({f"train/{k}": v for k, v in reward_metrics.items()})
    metrics.update({f"ppo/{k}": v for k, v in ppo_metrics.items()})
    if config.numerical_guard:
      metrics.update(_guard_flags(reward_metrics, rewards, ppo_metrics, params))
    policy_average = state.policy_average
    if game is not None:
      probs = averaging.policy_probs(networks, params.policy, normalizer, game,
                                     config.normalize_observations)
      policy_average = averaging.running_average(policy_average, probs, state.iteration + 1)
    new_state = TrainState(params, opt_state, normalizer, reward_state, key,
                           state.iteration + 1, policy_average)
    return new_state, metrics

  def iteration(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    """`config.iterations_per_call` iterations; metrics stacked with a leading axis."""
    iteration.num_traces += 1  # counts compilations (tests check it stays at 1)
    return jax.lax.scan(one_iteration, state, None, length=config.iterations_per_call)

  iteration.num_traces = 0
  return TrainFunctions(init, iteration)


def build(config: Config, env: Env | None = None, teacher: TeacherProtocol | None = None, *,
          chunk: int | None = None) -> Setup:
  """Validate the config and build env, teacher, networks and the pure functions.

  `env` and `teacher` override the config's names with user objects; both are checked
  against their protocols (`envs.check_env`, `teachers.check_teacher_protocol`) and the
  teacher's contract on sample data shaped like this environment's steps. `chunk`: steps per
  trip of the rollout's time loop (None: `rollout.DEFAULT_CHUNK`; results do not depend on it).
  """
  validate(config)
  if config.shard != "none":
    device_mesh(config)  # the device count must divide the sharded axis: check before compiling
  user_env = env
  env_kwargs = {} if user_env is not None else _package_env_kwargs(config, teacher)
  env = envs_lib.make_env(config.env if env is None else env, config.backend, **env_kwargs)
  envs_lib.check_env(env)
  obs_size = envs_lib.observation_size(env)
  check_memory(config, obs_size, env.action_size)
  limit = envs_lib.max_episode_length(env)
  for field in ("episode_length", "eval_episode_length"):
    if limit is not None and getattr(config, field) > limit:
      raise ConfigError(f"config field '{field}' = {getattr(config, field)} is invalid: "
                        f"this environment's episodes last at most {limit} steps")
  spec = teachers_lib.env_spec(env, config.episode_length, config.env if user_env is None else "")
  uses_teacher = sources.REWARD_SOURCES.get(config.reward_source).uses_teacher
  if teacher is None:
    # A source that asks no teacher (PPO on the env reward): don't build (or fit) one.
    teacher = teachers_lib.make_teacher(config, spec) if uses_teacher else teachers_lib.Oracle()
  teachers_lib.check_teacher_protocol(teacher)
  hook(teacher, "check_env")(env)  # what only the env object can tell (an outcome count)
  if uses_teacher:
    teachers_lib.validate_teacher(teacher, obs_size=obs_size,
                                  action_size=env.action_size, metric_names=spec.metric_names,
                                  horizon=min(config.episode_length, 6))
  policy_spec = PolicySpec.from_config(config, env, obs_size, env_kwargs)
  networks = policy_spec.make_networks()
  game = averaging.one_step_game(env, teacher, config.episode_length)
  fns = _make_functions(config, env, teacher, networks, spec, game, chunk)
  evaluate = make_evaluator(env, networks, config.num_eval_envs, config.eval_horizon,
                            config.normalize_observations)
  make_policy = make_policy_factory(networks, config.normalize_observations)
  game_metrics = None
  if game is not None:
    def game_metrics(state: TrainState) -> dict[str, jax.Array]:
      last = averaging.policy_probs(networks, state.params.policy, state.normalizer, game,
                                    config.normalize_observations)
      # Before the first iteration the average holds no iterate yet: it is the initial policy.
      average = jnp.where(state.iteration > 0, state.policy_average, last)
      return averaging.game_metrics(game, last, average)
  return Setup(config, env, teacher, networks, fns, evaluate, make_policy, game, game_metrics,
               policy_spec)


def _package_env_kwargs(config: Config, teacher: TeacherProtocol | None) -> dict[str, Any]:
  """Constructor arguments of the package env named by `config.env`: `matrix_game` gets as
  many actions as the payoff table has outcomes (the teacher's, or `teacher_table`'s)."""
  if config.env != "matrix_game":
    return {}
  if teacher is not None:
    size = hook(teacher, "num_outcomes")
    return {} if size is None else {"num_outcomes": int(size)}
  if not sources.REWARD_SOURCES.get(config.reward_source).uses_teacher:
    return {}
  return teachers_lib.teacher_env_kwargs(config)


# Floats stored per step of the rollout besides the observation and the action: log-prob,
# reward, mask, value, advantage, return, done, time feature.
_SCALARS_PER_STEP = 8


def iteration_bytes(config: Config, obs_size: int, action_size: int) -> dict[str, int]:
  """Lower bound on the bytes one iteration's buffers take, by what they scale with.

    rollout:     S * H * N * (obs + action + 8 scalars) * 4 bytes
    preferences: S * N * M * 4 bytes, M = num_opponents, or N + queue_size for all pairs
                 (reward_source 'spo' only)

  XLA keeps a few more arrays alive (minibatch copies, gradients, the teacher's summaries),
  so real use is higher; the check below only refuses what cannot fit at all.
  """
  s, n, h = config.num_seeds, config.num_envs, config.episode_length
  opponents = config.num_opponents or n + config.queue_size
  rollout_bytes = s * h * n * (obs_size + action_size + _SCALARS_PER_STEP) * 4
  # Only SPO compares every trajectory with its opponents; the reward model labels a few pairs.
  entry = sources.REWARD_SOURCES.get(config.reward_source)
  preference_bytes = s * n * opponents * 4 if entry.preference_matrix else 0
  return {"rollout": rollout_bytes, "preferences": preference_bytes}


def available_memory(config: Config) -> tuple[int, str]:
  """(bytes, where): the accelerator's memory limit (`memory_stats()['bytes_limit']`, times
  the devices a sharded run spreads over), else the host's physical memory."""
  devices = jax.devices()
  stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    count = len(devices) if config.shard != "none" else 1
    return int(stats["bytes_limit"]) * count, f"{count} x {devices[0].device_kind}"
  pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return int(pages), "host RAM"


def check_memory(config: Config, obs_size: int, action_size: int,
                 available: tuple[int, str] | None = None) -> None:
  """Refuse, before compiling, a run whose per-iteration buffers (`iteration_bytes`) exceed
  the memory there is, naming the quantity to lower and by how much."""
  need = iteration_bytes(config, obs_size, action_size)
  total = sum(need.values())
  limit, where = available_memory(config) if available is None else available
  if total <= limit:
    return
  gib = 2.0**30
  s, n, h = config.num_seeds, config.num_envs, config.episode_length
  per_seed = total // s
  if per_seed <= limit:
    fix = f"lower num_seeds to at most {limit // per_seed} (or num_envs, episode_length)"
  elif need["preferences"] > need["rollout"] and config.queue_size > n:
    fix = (f"lower queue_size (now {config.queue_size}; the N x (N + queue_size) preference "
           "matrix dominates), or set num_opponents to compare each trajectory with k random "
           "opponents")
  elif need["preferences"] > need["rollout"]:
    fix = ("lower num_envs (the N x (N + queue_size) preference matrix dominates), or set "
           "num_opponents to compare each trajectory with k random opponents")
  else:
    fix = "lower num_envs or episode_length (one seed's rollout alone does not fit)"
  raise ConfigError(
      f"config fields num_seeds = {s}, num_envs = {n}, episode_length = {h} need at least "
      f"{total / gib:.1f} GiB per iteration (rollout {need['rollout'] / gib:.1f} GiB, "
      f"preferences {need['preferences'] / gib:.1f} GiB), more than the {limit / gib:.1f} GiB "
      f"of {where}; {fix}")


def make_train(config: Config, env: Env | None = None,
               teacher: TeacherProtocol | None = None) -> TrainFunctions:
  """Pure `init(key) -> TrainState` and `iteration(state) -> (state, metrics)`.

  Neither is jitted here: wrap them in `jax.jit` (or `jax.vmap` then `jax.jit` for many
  seeds). `train` does this for you.
  """
  return build(config, env, teacher).fns


# -------------------------------------------------------------------------------------
# Host loop
# -------------------------------------------------------------------------------------

def _to_python(metrics: dict[str, Any]) -> dict[str, float | int]:
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    out[k] = int(v) if np.issubdtype(v.dtype, np.integer) else float(v)
  return out


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


def seed_keys(config: Config) -> jax.Array:
  """[S, 2] keys of the S = num_seeds seeds: seed i of a run is `config.seed + i`, so seed i
  of a many-seed run starts exactly like a single run with `seed = config.seed + i`."""
  return jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(config.num_seeds)])


def over_seeds(fn: Callable, num_seeds: int) -> Callable:
  """`fn` over a leading seed axis: `jax.vmap` for several seeds; for one seed, index and
  re-add the axis instead, because under `vmap` the rollout's early-exit `cond` inside a chunk
  becomes a `select` and would simulate up to a chunk of masked steps (rollout.py)."""
  if num_seeds > 1:
    return jax.vmap(fn)

  def single(*args):
    out = fn(*jax.tree.map(lambda x: x[0], args))
    return jax.tree.map(lambda y: y[None], out)

  return single


def _seed(tree: Any, index: int) -> Any:
  return jax.tree.map(lambda x: x[index], tree)


def train(config: Config | None = None, *, env: Env | None = None,
          teacher: TeacherProtocol | None = None,
          progress_fn: Callable[[int, dict[str, Any]], None] | None = None,
          run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          verbose: bool = False, handle_signals: bool = True,
          log_options: LogOptions | None = None, progress: str = "auto") -> TrainResult:
  """Train by SPO (or the configured reward source); returns (make_policy, params, metrics).

  progress_fn(step, metrics) is called after each evaluation with `step` = env steps so far.
  With `run_dir`, writes config.json, the metrics (metrics.jsonl, and as `log_options` asks:
  metrics.csv, TensorBoard, W&B; spo_jax/loggers.py) and Orbax checkpoints there; `resume`
  continues the latest checkpoint exactly (metrics logged after it are dropped: they are
  recomputed), `overwrite` replaces an existing run. Every check (config, env, teacher
  contract, run directory, logging options) happens before anything is compiled or written.
  `verbose` shows progress: `progress` = "auto" (a bar on a terminal, one line per evaluation
  otherwise), "bar" or "lines" (spo_jax/progress.py).

  With `config.num_seeds = S > 1`, the S seeds train as one vmapped, compiled run: `params`
  then has a leading seed axis, metrics.jsonl holds one row per seed per evaluation (field
  `seed`), and `metrics` is the mean over seeds with the rows under `per_seed`. Training
  stops when every seed has collected `num_timesteps` env steps (or reached `target_return`).

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
  validate(config)
  log_options = LogOptions() if log_options is None else log_options
  check_log_options(log_options)
  if progress not in progress_lib.STYLES:
    raise ConfigError(f"progress '{progress}' is not one of {', '.join(progress_lib.STYLES)}")
  run_path = Path(run_dir) if run_dir is not None else None
  if run_path is None:
    if resume:
      raise ConfigError("--resume needs the --run-dir of the run to continue")
    return _train(config, env, teacher, progress_fn, None, False, False, verbose,
                  handle_signals, log_options, progress)
  run_dir_lib.check_arguments(run_path, resume, overwrite)
  # One writer per run directory: held from before the directory is inspected until the run
  # has closed every file (spo_jax/run_dir.py).
  lock = run_dir_lib.RunLock(run_path).acquire()
  try:
    return _train(config, env, teacher, progress_fn, run_path, resume, overwrite, verbose,
                  handle_signals, log_options, progress)
  finally:
    lock.release()


def _train(config: Config, env: Env | None, teacher: Any | None,
           progress_fn: Callable[[int, dict[str, Any]], None] | None, run_path: Path | None,
           resume: bool, overwrite: bool, verbose: bool, handle_signals: bool,
           log_options: LogOptions, progress: str) -> TrainResult:
  """`train` once its arguments are checked and, with a run directory, its lock is held."""
  from spo_jax.checkpoint import Checkpointer, restore_usable, write_text_atomic

  has_checkpoint = False
  if run_path is not None:
    has_checkpoint = run_dir_lib.check_contents(run_path, config, resume, overwrite)
  setup = build(config, env, teacher)
  file_digests = run_dir_lib.teacher_file_digests(config)
  fit_metrics = hook(setup.teacher, "fit_metrics")
  if verbose and fit_metrics:
    print("teacher fit: " + ", ".join(f"{k} {float(v):.4g}" for k, v in fit_metrics.items()),
          flush=True)

  num_seeds = config.num_seeds
  seeds = [config.seed + i for i in range(num_seeds)]
  keys = seed_keys(config)
  init = jax.jit(over_seeds(setup.fns.init, num_seeds))
  iteration = jax.jit(over_seeds(setup.fns.iteration, num_seeds), donate_argnums=0)
  evaluate_seeds = jax.jit(over_seeds(setup.evaluate, num_seeds))
  game_seeds = (None if setup.game_metrics is None
                else jax.jit(over_seeds(setup.game_metrics, num_seeds)))
  if verbose and setup.game is not None and setup.game.minimax_winner is not None:
    print("matrix game: exact Minimax Winner "
          + ", ".join(f"{p:.4f}" for p in setup.game.minimax_winner), flush=True)
  # A stream of its own for evaluation, apart from every seed's training keys.
  eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(keys)

  checkpointer = None
  state = None
  counters: dict[str, Any] = {name: [0] * num_seeds for name in (
      "env_steps", "physics_steps", "total_queries", "total_feedback")}
  counters["wall_time"] = 0.0
  if run_path is not None:
    if has_checkpoint:
      checkpointer = Checkpointer(run_path / run_dir_lib.CHECKPOINTS)
      # The newest checkpoint that matches its manifest; damaged newer ones are named on
      # stderr and left for the next save of their step to replace.
      _, state, meta = restore_usable(checkpointer, jax.eval_shape(init, keys))
      counters.update(meta["counters"])
      run_dir_lib.check_same_files(meta.get("files", {}), file_digests, run_path)
      if not (run_path / run_dir_lib.POLICY).exists():  # a run from before policy.json
        with _failed_write("policy", run_path / run_dir_lib.POLICY, checkpointer, run_path):
          write_spec(run_path, setup.policy_spec)
    else:
      if overwrite:
        run_dir_lib.clear(run_path)
      run_dir_lib.remove_leftovers(run_path)
      # Atomic: a kill leaves no config.json (an empty run dir: start it again as new) or a
      # whole one, never a truncated file that --resume cannot read.
      with _failed_write("config", run_path / run_dir_lib.CONFIG, None, run_path):
        write_text_atomic(run_path / run_dir_lib.CONFIG, config.to_json())
      with _failed_write("policy", run_path / run_dir_lib.POLICY, None, run_path):
        write_spec(run_path, setup.policy_spec)
      checkpointer = Checkpointer(run_path / run_dir_lib.CHECKPOINTS)
  if config.shard == "seeds":
    # Every leaf of the state leads with the seed axis: split it over the devices; jit keeps
    # the layout through the vmapped iteration.
    seed_sharding = jax.sharding.NamedSharding(device_mesh(config),
                                               jax.sharding.PartitionSpec("d"))
    keys = jax.device_put(keys, seed_sharding)
    eval_keys = jax.device_put(eval_keys, seed_sharding)
  if state is None:
    state = init(keys)
  if config.shard == "seeds":
    state = jax.device_put(state, seed_sharding)

  logger = None
  if run_path is not None:
    # On resume, rows of iterations after the checkpoint are dropped from every file: the
    # loop recomputes them.
    with _failed_write("metrics", run_path / run_dir_lib.METRICS, checkpointer, run_path):
      logger = MetricsLogger(run_path, log_options, config.to_dict(), num_seeds,
                             resume_iteration=int(state.iteration[0]) if has_checkpoint else None)
  display = progress_lib.make_progress(config, progress if verbose else "none")
  last_metrics: dict[str, Any] = {}
  windows: list[list[dict[str, Any]]] = [[] for _ in range(num_seeds)]
  start = time.perf_counter() - counters["wall_time"]
  compile_time = None

  def current_iteration(state: TrainState) -> int:
    return int(state.iteration[0])

  def save(state: TrainState) -> None:
    if checkpointer is not None:
      counters["wall_time"] = time.perf_counter() - start
      it = current_iteration(state)
      with _failed_write("checkpoint", checkpointer.directory / str(it), checkpointer,
                         run_path):
        checkpointer.save(it, state, {"config": config.to_dict(), "counters": dict(counters),
                                      "files": file_digests})

  def evaluate(state: TrainState) -> dict[str, Any]:
    """One metrics row per seed; returns the single row, or their mean with `per_seed`."""
    it = current_iteration(state)
    eval_metrics = jax.device_get(evaluate_seeds(
        policy_params(state), jax.vmap(lambda k: jax.random.fold_in(k, it))(eval_keys)))
    if game_seeds is not None:
      eval_metrics.update(jax.device_get(game_seeds(state)))
    rows = []
    for i in range(num_seeds):
      row = _to_python(_seed(eval_metrics, i))
      if windows[i]:
        for k in windows[i][-1]:
          row[k] = float(np.mean([w[k] for w in windows[i]]))
      row.update({"step": counters["env_steps"][i], "iteration": it, "seed": seeds[i],
                  "train/physics_steps_total": counters["physics_steps"][i],
                  "train/total_queries": counters["total_queries"][i],
                  "train/total_feedback": counters["total_feedback"][i],
                  "time/elapsed_s": time.perf_counter() - start})
      if compile_time is not None:
        row["time/first_call_s"] = compile_time
      rows.append(row)
    for window in windows:
      window.clear()
    if logger is not None:
      with _failed_write("metrics row", run_path / run_dir_lib.METRICS, checkpointer,
                         run_path):
        logger.log(rows)
    if num_seeds == 1:
      return rows[0]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    summary.update({"step": min(r["step"] for r in rows), "iteration": it, "per_seed": rows})
    return summary

  def finished(state: TrainState) -> bool:
    it = current_iteration(state)
    return (min(counters["env_steps"]) >= config.num_timesteps
            or bool(config.max_iterations and it >= config.max_iterations))

  def report(metrics: dict[str, Any]) -> None:
    display.evaluation(metrics)
    if progress_fn is not None:
      progress_fn(metrics["step"], metrics)

  def reached_target(metrics: dict[str, Any]) -> bool:
    if config.target_return is None:
      return False
    rows = metrics.get("per_seed", [metrics])
    return all(r["eval/episode_reward"] >= config.target_return for r in rows)

  stop_signal = _StopSignal() if handle_signals else None
  display.start(min(counters["env_steps"]))
  try:
    while not finished(state):
      if stop_signal is not None and stop_signal.received is not None:
        save(state)
        raise TrainingInterrupted(stop_signal.received, current_iteration(state), run_path)
      t0 = time.perf_counter()
      steps_before = min(counters["env_steps"])
      state, stacked = iteration(state)
      stacked = jax.device_get(stacked)  # leaves [S, iterations_per_call]
      if compile_time is None:
        compile_time = time.perf_counter() - t0
      _check_guard(stacked, config, current_iteration(state), seeds, checkpointer, run_path)
      # Vmapped seeds run their rollout loops in step: each simulates the longest one.
      executed = stacked["train/physics_steps"]
      if num_seeds > 1:
        executed = np.broadcast_to(config.num_envs * stacked["train/loop_steps"].max(axis=0),
                                   executed.shape)
      for s in range(num_seeds):
        for i in range(config.iterations_per_call):
          row = {k: v[s, i] for k, v in stacked.items()}
          counters["env_steps"][s] += int(row["train/env_steps"])
          counters["physics_steps"][s] += int(executed[s, i])
          counters["total_queries"][s] += int(row["train/num_queries"])
          counters["total_feedback"][s] += int(row["train/num_labels"])
          windows[s].append(_to_python(row))
      it = current_iteration(state)
      display.advance(min(counters["env_steps"]), it)
      if config.eval_every_steps:
        every = config.eval_every_steps
        due = min(counters["env_steps"]) // every > steps_before // every
      else:
        due = it % config.eval_every < config.iterations_per_call
      if due or finished(state):
        last_metrics = evaluate(state)
        report(last_metrics)
        if reached_target(last_metrics):
          break
      if config.checkpoint_every and it % config.checkpoint_every < config.iterations_per_call:
        save(state)
    if not last_metrics or last_metrics["iteration"] != current_iteration(state):
      last_metrics = evaluate(state)
      display.evaluation(last_metrics)
      if progress_fn is not None:
        progress_fn(last_metrics["step"], last_metrics)
    save(state)
    if logger is not None:
      with _failed_write("metrics", run_path / run_dir_lib.METRICS, checkpointer, run_path):
        logger.close()  # the last TensorBoard flush can meet a full disk too
  finally:
    display.close()
    if stop_signal is not None:
      stop_signal.restore()
    if logger is not None:
      with contextlib.suppress(Exception):  # already failing: report the first error
        logger.close()
    if checkpointer is not None:
      checkpointer.close()
  params = policy_params(state)
  return TrainResult(setup.make_policy, _seed(params, 0) if num_seeds == 1 else params,
                     last_metrics)


@contextlib.contextmanager
def _failed_write(what: str, path: Path, checkpointer: Any, run_path: Path):
  """Turn a file-system failure of the write inside (disk full, quota, read-only or vanished
  directory; `run_dir.write_failure`) into `RunWriteError`, naming the file (a logger's
  `FailedWrite` names its own), the path and the newest checkpoint left. Other errors pass."""
  try:
    yield
  except Exception as error:
    failure = run_dir_lib.write_failure(error)
    if failure is None:
      raise
    if isinstance(error, run_dir_lib.FailedWrite):
      what, path = error.what, error.path
    last = checkpointer.latest_step() if checkpointer is not None else None
    raise run_dir_lib.RunWriteError(what, path, *failure, last, run_path) from error


def _check_guard(stacked: dict[str, np.ndarray], config: Config, iteration: int,
                 seeds: list[int], checkpointer: Any, run_path: Path | None) -> None:
  """Raise `NumericalError` for the first guarded quantity that went bad in this call."""
  if not config.numerical_guard:
    return
  flags = np.stack([stacked[f"guard/{k}"] for k in GUARDED], axis=-1)  # [S, K, quantities]
  if not flags.any():
    return
  s, i = (int(v) for v in np.argwhere(flags.any(axis=-1))[0])
  bad = [GUARDED[q] for q in np.flatnonzero(flags[s, i])]
  first_iteration = iteration - config.iterations_per_call + 1
  last = checkpointer.latest_step() if checkpointer is not None else None
  raise NumericalError(bad, first_iteration + i, seeds[s], last, run_path)
