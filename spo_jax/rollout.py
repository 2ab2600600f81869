"""Rollout: N episodes from reset, fixed horizon H, one `lax.scan`, teacher folded inside.

Step t of environment i is *valid* (mask 1) while the episode has not terminated before it;
the step on which the environment reports `done` is the last valid one. Later steps carry
mask 0 and zero reward, never reach the teacher, and are ignored by the loss.

Once every environment of the batch has terminated, the remaining scan steps skip the
physics and the policy (`lax.cond`), so early in training, when episodes last tens of steps,
an iteration costs tens of physics steps rather than H. (Under `vmap` over seeds the cond
becomes a select and this saving is lost; results are the same either way.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from spo_jax.networks import action_distribution
from spo_jax.teachers import TeacherStep

# (obs [N, D], key) -> (raw_action [N, A], log_prob [N]); the env action is
# `action_distribution(env).to_env_action(raw_action)`: tanh(raw_action) for continuous
# actions, the one-hot raw action itself for discrete ones (networks.py).
PolicyFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


class Trajectory(NamedTuple):
  """One iteration's experience, time-major."""

  obs: jax.Array  # [H, N, D] raw observation at step t
  raw_action: jax.Array  # [H, N, A] pre-tanh action (one-hot action for discrete envs)
  log_prob: jax.Array  # [H, N] behaviour log-probability
  reward: jax.Array  # [H, N] environment reward, 0 on masked steps
  mask: jax.Array  # [H, N] 1.0 on valid steps
  done: jax.Array  # [H, N] 1.0 on the step the environment terminated


class RolloutResult(NamedTuple):
  trajectory: Trajectory
  summaries: Any  # teacher summaries, leaves [N, ...] (None without a teacher)
  physics_steps: jax.Array  # [], int32: env.step calls executed x N (masked ones included)


def _masked_select(keep: jax.Array, new: Any, old: Any) -> Any:
  def select(n, o):
    return jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - keep.ndim)), n, o)

  return jax.tree.map(select, new, old)


def rollout(env: Env, policy_fn: PolicyFn, key: jax.Array, num_envs: int, horizon: int,
            teacher: Any | None = None,
            shard_envs: Callable[[Any], Any] | None = None) -> RolloutResult:
  """Run `num_envs` episodes of at most `horizon` steps from reset.

  `shard_envs`, if given, places a pytree whose leaves lead with the env axis N (e.g. a
  `with_sharding_constraint` over a device mesh); it is applied to the env state and the
  summaries, and the compiler propagates the layout through the scan.
  """
  k_reset, k_steps = jax.random.split(key)
  state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))
  if shard_envs is not None:
    state = shard_envs(state)
  summaries = None
  if teacher is not None:
    summaries = jax.vmap(lambda _: teacher.init())(jnp.arange(num_envs))
  alive = jnp.ones((num_envs,), jnp.float32)
  action_size = env.action_size
  to_env_action = action_distribution(env).to_env_action

  def live_step(carry, t, key):
    state, summaries, alive, steps = carry
    obs = state.obs
    raw_action, log_prob = policy_fn(obs, key)
    action = to_env_action(raw_action)
    next_state = jax.vmap(env.step)(state, action)
    valid = alive > 0
    # `where`, not multiplication: physics after termination may hold inf/nan, and
    # nan * 0 = nan would leak into the loss and its gradients.
    reward = jnp.where(valid, next_state.reward, 0.0)
    done = jnp.where(valid, jnp.minimum(next_state.done, 1.0), 0.0)
    if teacher is not None:
      step = TeacherStep(obs=obs, next_obs=next_state.obs, action=action,
                         reward=next_state.reward, metrics=next_state.metrics, mask=alive,
                         t=jnp.full((num_envs,), t, jnp.int32))
      summaries = _masked_select(alive > 0, jax.vmap(teacher.update)(summaries, step), summaries)
    out = Trajectory(_masked_select(valid, obs, jnp.zeros_like(obs)),
                     _masked_select(valid, raw_action, jnp.zeros_like(raw_action)),
                     jnp.where(valid, log_prob, 0.0), reward, alive, done)
    return (next_state, summaries, alive * (1.0 - done), steps + num_envs), out

  def dead_step(carry, t, key):
    state, _, _, _ = carry
    out = Trajectory(jnp.zeros_like(state.obs), jnp.zeros((num_envs, action_size)),
                     jnp.zeros((num_envs,)),
                     jnp.zeros((num_envs,)), jnp.zeros((num_envs,)), jnp.zeros((num_envs,)))
    return carry, out

  def body(carry, inputs):
    t, key = inputs
    return jax.lax.cond(jnp.any(carry[2] > 0), live_step, dead_step, carry, t, key)

  carry = (state, summaries, alive, jnp.zeros((), jnp.int32))
  inputs = (jnp.arange(horizon), jax.random.split(k_steps, horizon))
  (_, summaries, _, steps), trajectory = jax.lax.scan(body, carry, inputs)
  return RolloutResult(trajectory, summaries, steps)
