"""Policies for acting, and deterministic evaluation on the environment's ground-truth return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from spo_jax import networks as nets
from spo_jax.rollout import PolicyFn, rollout
from spo_jax.teachers import TeacherProtocol, ask


class PolicyParams(NamedTuple):
  """What acting needs: the observation normalizer and the policy network's parameters."""

  normalizer: nets.Normalizer
  policy: dict


def make_policy_factory(networks: nets.Networks, normalize_observations: bool = True):
  """Returns `make_policy(params, deterministic=True) -> policy(obs, key=None) -> action`.

  obs [..., D] -> env action [..., A]. Continuous: in [-1, 1], tanh of the mean
  (deterministic) or of a Gaussian sample (stochastic, needs `key`). Discrete: one-hot [K],
  of the most likely action (argmax of the logits) or of a sample. The Brax-style factory of
  `train`'s result.
  """
  dist_fns = networks.distribution

  def make_policy(params: PolicyParams, deterministic: bool = True
                  ) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
    def policy(obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
      dist = nets.apply_policy(networks, params.policy, params.normalizer, obs,
                               normalize_observations)
      if deterministic:
        return dist_fns.mode_action(dist)
      if key is None:
        raise ValueError("a stochastic policy needs a PRNG key: policy(obs, key)")
      return dist_fns.to_env_action(dist_fns.sample(dist, key))

    return policy

  return make_policy


def rollout_policy(networks: nets.Networks, params: PolicyParams,
                   normalize_observations: bool = True, deterministic: bool = True):
  """The `rollout` form of a saved policy: `policy_fn(obs, key) -> (raw_action, log_prob)`.

  Deterministic: the distribution's mode with log_prob 0 (continuous: arctanh of the clipped
  tanh(mean), so the rollout's tanh gives back the policy's action; discrete: the one-hot
  argmax). Stochastic: a sample and its log-probability, as in training.
  """
  return acting_policy(
      networks, lambda obs: nets.apply_policy(networks, params.policy, params.normalizer, obs,
                                              normalize_observations), deterministic)


def acting_policy(networks: nets.Networks, distribution_of: Callable[[jax.Array], Any],
                  deterministic: bool):
  """`policy_fn(obs, key) -> (raw_action, log_prob)` from `distribution_of(obs [N, D])`, the
  policy's action distribution: its mode with log_prob 0, or a sample and its
  log-probability (`rollout_policy` says what the mode is)."""
  dist_fns = networks.distribution

  def policy_fn(obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    dist = distribution_of(obs)
    if deterministic:
      return dist_fns.mode(dist), jnp.zeros(obs.shape[:-1])
    raw = dist_fns.sample(dist, key)
    return raw, dist_fns.log_prob(dist, raw)

  return policy_fn


def make_evaluator(env: Env, networks: nets.Networks, num_episodes: int, horizon: int,
                   normalize_observations: bool = True):
  """A jitted `evaluate(params, key) -> metrics`: `num_episodes` episodes of the
  deterministic policy from reset, at most `horizon` steps, ground-truth return."""

  @jax.jit
  def evaluate(params: PolicyParams, key: jax.Array) -> dict[str, jax.Array]:
    policy_fn = rollout_policy(networks, params, normalize_observations, deterministic=True)
    result = rollout(env, policy_fn, key, num_episodes, horizon)
    returns = jnp.sum(result.trajectory.reward, axis=0)
    lengths = jnp.sum(result.trajectory.mask, axis=0)
    return {"eval/episode_reward": jnp.mean(returns),
            "eval/episode_reward_std": jnp.std(returns),
            "eval/episode_reward_min": jnp.min(returns),
            "eval/episode_length": jnp.mean(lengths)}

  return evaluate


def head_to_head(env: Env, teacher: TeacherProtocol, policy_a: PolicyFn, policy_b: PolicyFn,
                 key: jax.Array, num_episodes: int, horizon: int) -> dict[str, jax.Array]:
  """The teacher's verdict between two policies: `num_episodes` episodes of each from the
  same reset keys, every episode of A compared with every episode of B.

  Returns `win_rate` = mean over labelled pairs (i, j) of P(a_i > b_j) (1/2: as good as each
  other; the teacher's soft answer, no label sampling), its standard error over A's episodes,
  the number of labelled pairs, and each policy's ground-truth return. Jit-compatible; the
  policies are `rollout` policy functions (see `rollout_policy`).
  """
  k_rollout, k_cmp = jax.random.split(key)
  # The same rollout key for both: episode i of A and of B start from the same reset state.
  result_a = rollout(env, policy_a, k_rollout, num_episodes, horizon, teacher)
  result_b = rollout(env, policy_b, k_rollout, num_episodes, horizon, teacher)
  rows = jnp.arange(num_episodes)
  index = rows[:, None] * num_episodes + rows[None, :]

  def pair(a, b, i):
    return ask(teacher, a, b, k_cmp, i)

  pref, abstain = jax.vmap(jax.vmap(pair, (None, 0, 0)), (0, None, 0))(
      result_a.summaries, result_b.summaries, index)  # [N_a, N_b]
  labelled = (~abstain).astype(jnp.float32)
  per_episode = jnp.sum(labelled * pref, axis=1) / jnp.maximum(jnp.sum(labelled, axis=1), 1.0)
  has_label = jnp.sum(labelled, axis=1) > 0
  count = jnp.maximum(jnp.sum(has_label), 1)
  win_rate = jnp.sum(labelled * pref) / jnp.maximum(jnp.sum(labelled), 1.0)
  spread = jnp.sum(jnp.where(has_label, (per_episode - win_rate) ** 2, 0.0)) / count
  return {"win_rate": jnp.where(jnp.sum(labelled) > 0, win_rate, 0.5),
          "win_rate_stderr": jnp.sqrt(spread / count),
          "num_labels": jnp.sum(labelled).astype(jnp.int32),
          "return_a": jnp.mean(jnp.sum(result_a.trajectory.reward, axis=0)),
          "return_b": jnp.mean(jnp.sum(result_b.trajectory.reward, axis=0))}


def seed_slice(tree: Any, index: int) -> Any:
  """Seed `index` of a tree whose leaves lead with the seed axis [S, ...] (a vmapped run's
  parameters or state)."""
  return jax.tree.map(lambda x: x[index], tree)
