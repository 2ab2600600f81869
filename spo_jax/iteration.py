"""One training iteration as pure functions: `init(key) -> TrainState` and
`iteration(state) -> (state, metrics)`, all inside one `jax.jit`:

  key -> rollout (N episodes from reset, H steps, teacher summaries folded in the scan)
      -> reward source (win rates -> per-step rewards, or the env reward)
      -> PPO (masked GAE, clipped surrogate, minibatch epochs)
      -> observation normalizer update
      -> new TrainState

The whole state is one NamedTuple, so `jax.vmap(iteration)` over a leading seed axis needs
no special code. `setup.build` makes these from a config; `train` is the host loop around
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from spo_jax import counters as counters_lib
from spo_jax import networks as nets
from spo_jax import policy_average as averaging
from spo_jax import ppo
from spo_jax import reward_sources as sources
from spo_jax import teachers as teachers_lib
from spo_jax.config import Config
from spo_jax.evaluate import PolicyParams, rollout_policy
from spo_jax.guard import guard_flags
from spo_jax.rollout import RolloutResult, compaction_sizes, rollout
from spo_jax.teachers import TeacherProtocol


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
  # Running totals (env steps, physics steps, queries, labels), counted here on the device:
  # counters.py. A checkpoint keeps them in its meta JSON, not in its state (stored_form).
  counters: counters_lib.Counters
  # A sweep run's traced hyperparameters other than the learning rate, which lives in
  # `opt_state` (optax.inject_hyperparams): {field: [] float32}; () for a plain run.
  hyperparams: Any = ()


class _PlainState(NamedTuple):
  """How checkpoints store a plain run's state: a `TrainState` without `counters` (kept in
  the checkpoint's meta) and without `hyperparams`, the layout checkpoints had before sweeps
  existed and before the device counted (so those checkpoints still restore)."""

  params: nets.Params
  opt_state: Any
  normalizer: nets.Normalizer
  reward_state: Any
  key: jax.Array
  iteration: jax.Array
  policy_average: Any


# How checkpoints store a sweep run's state: `_PlainState`'s fields and the traced
# `hyperparams` (Orbax stores a NamedTuple as a dict of its fields, so only the names count).
_SweepState = NamedTuple("_SweepState", [(name, Any) for name in _PlainState._fields]
                         + [("hyperparams", Any)])


def stored_form(state: Any) -> Any:
  """What a checkpoint holds for `state` (concrete or abstract): a `TrainState` without its
  counters (the checkpoint's meta holds them: `counters.to_meta`), and without `hyperparams`
  when it has none; anything else as is."""
  if not isinstance(state, TrainState):
    return state
  kept = state[:len(_PlainState._fields)]
  return _PlainState(*kept) if state.hyperparams == () else _SweepState(*kept, state.hyperparams)


def from_stored(stored: Any, meta_counters: dict[str, Any] | None = None) -> Any:
  """The inverse of `stored_form`: the counters from the meta's `meta_counters` (one total
  per seed, or one for all; missing ones count from 0)."""
  if not isinstance(stored, (_PlainState, _SweepState)):
    return stored
  counters = counters_lib.from_meta(meta_counters, tuple(stored.iteration.shape))
  hyperparams = stored.hyperparams if isinstance(stored, _SweepState) else ()
  return TrainState(*stored[:len(_PlainState._fields)], counters=counters,
                    hyperparams=hyperparams)


# Config fields a sweep may vary inside one compiled program (spo_jax/sweep/): each is a number
# the iteration uses only in arithmetic, so it can be data (a traced scalar per run) instead of
# a constant. Every other field changes shapes or code and splits a sweep into groups.
TRACED_FIELDS = ("learning_rate", "entropy_coef", "value_coef", "clip_epsilon", "discount",
                 "gae_lambda", "reward_scale")


def traced_fields(config: Config) -> tuple[str, ...]:
  """The `TRACED_FIELDS` a run of `config` can take from its state. The discount is a constant
  of SPO's 'discounted' reward placement (reward_sources.py), so there it splits groups."""
  if config.reward_source == "spo" and config.reward_placement == "discounted":
    return tuple(name for name in TRACED_FIELDS if name != "discount")
  return TRACED_FIELDS


class TrainFunctions(NamedTuple):
  init: Callable[[jax.Array], TrainState]
  iteration: Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]


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


def _check_traced(config: Config, traced: tuple[str, ...]) -> None:
  unknown = sorted(set(traced) - set(traced_fields(config)))
  if unknown:
    raise ValueError(f"fields {unknown} cannot be traced in this run; traced fields: "
                     f"{traced_fields(config)}")


def _iteration_metrics(config: Config, result: Any, rewards: jax.Array,
                       reward_metrics: dict[str, jax.Array], ppo_metrics: dict[str, jax.Array],
                       params: nets.Params) -> dict[str, jax.Array]:
  """One iteration's metrics (each []): the rollout's (`result`, a `RolloutResult` with
  trajectory leaves [H, N, ...]), the reward source's under `train/`, PPO's under `ppo/`, and
  the numerical guard's flags when it is on. `rewards`: [H, N], before `reward_scale`."""
  traj = result.trajectory
  lengths = jnp.sum(traj.mask, axis=0)  # [N]
  metrics = {
      "train/episode_reward": jnp.mean(jnp.sum(traj.reward, axis=0)),
      "train/episode_length": jnp.mean(lengths),
      "train/env_steps": jnp.sum(lengths).astype(jnp.int32),
      "train/physics_steps": result.physics_steps,
      "train/loop_steps": result.loop_steps,
      "train/reward_mean": jnp.sum(rewards) / config.num_envs,
  }
  metrics.update({f"train/{k}": v for k, v in reward_metrics.items()})
  metrics.update({f"ppo/{k}": v for k, v in ppo_metrics.items()})
  if config.numerical_guard:
    metrics.update(guard_flags(reward_metrics, rewards, ppo_metrics, params))
  return metrics


def training_rollout(config: Config, env: Env, teacher: TeacherProtocol,
                     source: sources.RewardSource, chunk: int | None = None,
                     shard_envs: Callable | None = None
                     ) -> Callable[[Any, jax.Array], RolloutResult]:
  """`(policy_fn, key) -> RolloutResult`: N = `config.num_envs` episodes of H steps exactly as
  a training iteration rolls them out for `source` (its teacher folded in when it asks one,
  its segments, the whole-episode summaries beside them, the compaction stages). The one
  place that says so: the iteration and `spo-bench`'s breakdown both call it."""
  rollout_teacher = teacher if source.uses_teacher else None
  batch_sizes = compaction_sizes(config.num_envs, config.compaction_factor)
  episode_summary = sources.episode_summary(source)

  def run(policy_fn, key: jax.Array) -> RolloutResult:
    return rollout(env, policy_fn, key, config.num_envs, config.episode_length,
                   rollout_teacher, shard_envs, chunk=chunk,
                   segment_length=source.segment_length, batch_sizes=batch_sizes,
                   episode_summary=episode_summary)

  return run


def make_functions(config: Config, env: Env, teacher: TeacherProtocol,
                   networks: nets.Networks, spec: teachers_lib.EnvSpec,
                   game: averaging.OneStepGame | None = None, chunk: int | None = None,
                   shard_envs: Callable | None = None, *,
                   source: sources.RewardSource | None = None,
                   traced: tuple[str, ...] = ()) -> TrainFunctions:
  """The pure `init(key) -> TrainState` and `iteration(state) -> (state, metrics)` of a built
  run (`setup.build`); `shard_envs` constrains the env axis of the rollout's arrays to the
  device mesh (`config.shard = 'envs'`). `source`: a reward source object to use instead of
  the one `config.reward_source` names (the best response of `best_response.py`, whose
  frozen opponent no config field can describe). `traced` (names from `TRACED_FIELDS`): fields
  read from the state instead of the config, so that runs vmapped together can differ in
  them; `init` starts them at the config's values and `with_hyperparams` sets them per run."""
  _check_traced(config, traced)
  if source is None:
    source = sources.make_reward_source(config, teacher, spec)
  else:
    sources.check_reward_source(source)
  optimizer = ppo.make_optimizer(config.learning_rate, config.max_grad_norm,
                                 inject="learning_rate" in traced)
  hp = ppo_hyperparams(config)
  state_fields = tuple(name for name in traced if name != "learning_rate")
  do_rollout = training_rollout(config, env, teacher, source, chunk, shard_envs)

  def init(key: jax.Array) -> TrainState:
    k_params, k_state, k_reward = jax.random.split(key, 3)
    params = nets.init_params(networks, k_params)
    summary_template = teacher.init() if source.uses_teacher else None
    return TrainState(params=params, opt_state=optimizer.init(params),
                      normalizer=nets.normalizer_init(networks.observation_size),
                      reward_state=source.init(k_reward, summary_template), key=k_state,
                      iteration=jnp.zeros((), jnp.int32),
                      policy_average=() if game is None else jnp.zeros((game.num_actions,)),
                      counters=counters_lib.zeros(),
                      hyperparams={name: jnp.asarray(getattr(config, name), jnp.float32)
                                   for name in state_fields} if state_fields else ())

  def one_iteration(state: TrainState, _) -> tuple[TrainState, dict[str, jax.Array]]:
    key, k_rollout, k_reward, k_ppo = jax.random.split(state.key, 4)

    policy_fn = rollout_policy(networks, policy_params(state), config.normalize_observations,
                               deterministic=False)
    result = do_rollout(policy_fn, k_rollout)
    traj = result.trajectory
    rewards, reward_state, reward_metrics = source.rewards(state.reward_state, result, k_reward)
    swept = dict(state.hyperparams) if state_fields else {}
    reward_scale = swept.pop("reward_scale", config.reward_scale)
    params, opt_state, ppo_metrics = ppo.ppo_update(
        state.params, state.opt_state, optimizer, networks, state.normalizer, traj.obs,
        traj.raw_action, traj.log_prob, rewards * reward_scale, traj.mask, k_ppo,
        hp._replace(**swept))
    normalizer = state.normalizer
    if config.normalize_observations:
      normalizer = nets.normalizer_update(normalizer, traj.obs, traj.mask)
    metrics = _iteration_metrics(config, result, rewards, reward_metrics, ppo_metrics, params)
    policy_average = state.policy_average
    if game is not None:
      probs = averaging.policy_probs(networks, params.policy, normalizer, game,
                                     config.normalize_observations)
      policy_average = averaging.running_average(policy_average, probs, state.iteration + 1)
    counters = counters_lib.advance(
        state.counters, metrics["train/env_steps"], result.physics_steps,
        reward_metrics["num_queries"], reward_metrics["num_labels"])
    new_state = state._replace(params=params, opt_state=opt_state, normalizer=normalizer,
                               reward_state=reward_state, key=key,
                               iteration=state.iteration + 1, policy_average=policy_average,
                               counters=counters)
    return new_state, metrics

  def iteration(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    """`config.iterations_per_call` iterations; metrics stacked with a leading axis."""
    return jax.lax.scan(one_iteration, state, None, length=config.iterations_per_call)

  return TrainFunctions(init, iteration)


def with_hyperparams(state: TrainState, values: dict[str, jax.Array]) -> TrainState:
  """`state` (from `init` with these fields traced) with one run's traced values: the
  learning rate into the optimizer's injected hyperparameters, the rest into `hyperparams`."""
  values = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
  opt_state = state.opt_state
  if "learning_rate" in values:
    injected = dict(opt_state.hyperparams, learning_rate=values.pop("learning_rate"))
    opt_state = opt_state._replace(hyperparams=injected)
  hyperparams = dict(state.hyperparams, **values) if values else state.hyperparams
  return state._replace(opt_state=opt_state, hyperparams=hyperparams)
