"""Everything built from a config before anything is compiled: `build` validates the config
and makes the env, the teacher, the networks (from a `PolicySpec`, the description that
policy.json keeps), the pure training functions (spo_jax/iteration.py), the evaluator and,
for one-step discrete games, the game and its metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env

from spo_jax import envs as envs_lib
from spo_jax import networks as nets
from spo_jax import policy_average as averaging
from spo_jax import reward_sources as sources
from spo_jax import teachers as teachers_lib
from spo_jax.config import Config, ConfigError, validate
from spo_jax.evaluate import PolicyParams, make_evaluator, make_policy_factory
from spo_jax.iteration import TrainFunctions, TrainState, make_functions
from spo_jax.memory import check_memory
from spo_jax.saved_policy import PolicySpec
from spo_jax.teachers import TeacherProtocol, hook


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


def build(config: Config, env: Env | None = None, teacher: TeacherProtocol | None = None, *,
          chunk: int | None = None, traced: tuple[str, ...] = ()) -> Setup:
  """Validate the config and build env, teacher, networks and the pure functions.

  `env` and `teacher` override the config's names with user objects (`config.env` is then
  only the run's label, and policy.json records the env's class path); both are checked
  against their protocols (`envs.check_env`, `teachers.check_teacher_protocol`) and the
  teacher's contract on sample data shaped like this environment's steps. `chunk`: steps per
  trip of the rollout's time loop (None: `rollout.DEFAULT_CHUNK`; results do not depend on it).
  `traced`: hyperparameters read from the state, set per run by a sweep (iteration.py).
  """
  validate(config, env)  # with a user's env object, config.env is only the run's label
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
  policy_spec = PolicySpec.from_config(config, env, obs_size, env_kwargs,
                                       None if user_env is None else envs_lib.class_path(env))
  networks = policy_spec.make_networks()
  game = averaging.one_step_game(env, teacher, config.episode_length)
  fns = make_functions(config, env, teacher, networks, spec, game, chunk,
                       _env_sharding(config), traced=traced)
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


def _env_sharding(config: Config) -> Callable | None:
  """With `shard = 'envs'`: constrain every array with an env axis to the device mesh."""
  if config.shard != "envs":
    return None
  sharding = jax.sharding.NamedSharding(device_mesh(config), jax.sharding.PartitionSpec("d"))
  return lambda tree: jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, sharding) if jnp.ndim(x) else x, tree)


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


def init_over_seeds(init: Callable, num_seeds: int) -> Callable:
  """`init` over a leading seed axis like `over_seeds`, but one seed after another
  (`jax.lax.map`) where there are several.

  Not `jax.vmap`: vmapped, the networks' orthogonal initialisers become batched QR
  factorisations, and jaxlib's CPU kernel for a batch (`ParallelBatchMap`) waits for its
  pieces on the XLA thread pool that it is itself running on. When as many such kernels run
  at once as the pool has threads (two on a 2-core machine), every thread waits and the call
  never returns (docs/performance.md, "A fixed fault"). Each seed's values are the ones its
  own single-seed run draws, and initialising happens once per run, so the loop costs
  nothing that shows.
  """
  if num_seeds == 1:
    return over_seeds(init, num_seeds)
  return lambda *args: jax.lax.map(lambda per_seed: init(*per_seed), args)


def make_train(config: Config, env: Env | None = None,
               teacher: TeacherProtocol | None = None) -> TrainFunctions:
  """Pure `init(key) -> TrainState` and `iteration(state) -> (state, metrics)`.

  Neither is jitted here: wrap them in `jax.jit`. For S seeds, jit
  `init_over_seeds(fns.init, S)` and `jax.vmap(fns.iteration)` (a vmapped `init` can
  deadlock on a CPU: `init_over_seeds`). `train` does this for you.
  """
  return build(config, env, teacher).fns
