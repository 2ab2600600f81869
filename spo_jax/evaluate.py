"""Policies for acting, and deterministic evaluation on the environment's ground-truth return."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from spo_jax import networks as nets
from spo_jax.rollout import rollout


class PolicyParams(NamedTuple):
  """What acting needs: the observation normalizer and the policy network's parameters."""

  normalizer: nets.Normalizer
  policy: dict


def make_policy_factory(networks: nets.Networks, normalize_observations: bool = True):
  """Returns `make_policy(params, deterministic=True) -> policy(obs, key=None) -> action`.

  obs [..., D] -> action [..., A] in [-1, 1]: tanh of the mean (deterministic) or of a
  Gaussian sample (stochastic, needs `key`). The Brax-style factory of `train`'s result.
  """

  def make_policy(params: PolicyParams, deterministic: bool = True
                  ) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
    def policy(obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
      norm_obs = nets.normalize(params.normalizer, obs, normalize_observations)
      mean, log_std = networks.policy.apply(params.policy, norm_obs)
      if deterministic:
        return jnp.tanh(mean)
      if key is None:
        raise ValueError("a stochastic policy needs a PRNG key: policy(obs, key)")
      return jnp.tanh(nets.sample_raw_action(mean, log_std, key))

    return policy

  return make_policy


def make_evaluator(env: Env, networks: nets.Networks, num_episodes: int, horizon: int,
                   normalize_observations: bool = True):
  """A jitted `evaluate(params, key) -> metrics`: `num_episodes` episodes of the
  deterministic policy from reset, at most `horizon` steps, ground-truth return."""
  make_policy = make_policy_factory(networks, normalize_observations)

  @jax.jit
  def evaluate(params: PolicyParams, key: jax.Array) -> dict[str, jax.Array]:
    policy = make_policy(params, deterministic=True)

    def policy_fn(obs, key):
      del key
      action = policy(obs)
      # rollout applies tanh to its raw action; arctanh of the clipped action inverts it.
      return jnp.arctanh(jnp.clip(action, -1 + 1e-6, 1 - 1e-6)), jnp.zeros(obs.shape[:-1])

    result = rollout(env, policy_fn, key, num_episodes, horizon)
    returns = jnp.sum(result.trajectory.reward, axis=0)
    lengths = jnp.sum(result.trajectory.mask, axis=0)
    return {"eval/episode_reward": jnp.mean(returns),
            "eval/episode_reward_std": jnp.std(returns),
            "eval/episode_reward_min": jnp.min(returns),
            "eval/episode_length": jnp.mean(lengths)}

  return evaluate
