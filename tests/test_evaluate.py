"""Tests for spo_jax/evaluate.py: acting with a saved policy and the head-to-head win rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax.rollout import rollout


def test_head_to_head_of_a_policy_with_itself_is_a_tie_and_better_policy_wins():
  """Oracle on point_reach: a policy against itself (same reset states, deterministic) gets
  P = 1/2 on every diagonal pair, and by antisymmetry the full N x N mean is exactly 1/2.
  A policy that moves toward the goal beats one that stands still (return is -distance)."""
  from spo_jax.evaluate import head_to_head
  from spo_jax.teachers import Oracle
  from spo_jax.tiny_envs import PointReach

  env = PointReach()

  def still(obs, key):
    return jnp.zeros(obs.shape[:-1] + (env.action_size,)), jnp.zeros(obs.shape[:-1])

  def toward_goal(obs, key):
    # obs = (position, goal): step along goal - position, as a pre-tanh action
    pos, goal = obs[..., :2], obs[..., 2:4]
    return jnp.arctanh(jnp.clip(goal - pos, -0.99, 0.99)), jnp.zeros(obs.shape[:-1])

  duel = jax.jit(lambda k: head_to_head(env, Oracle(), still, still, k, 8, 10))
  tie = duel(jax.random.PRNGKey(0))
  assert float(tie["win_rate"]) == pytest.approx(0.5, abs=1e-6)
  assert int(tie["num_labels"]) == 64
  better = jax.jit(lambda k: head_to_head(env, Oracle(), toward_goal, still, k, 8, 10))(
      jax.random.PRNGKey(0))
  # Reference: the oracle's P(a_i > b_j) = 1/2 (1 + sign(R_a_i - R_b_j)), averaged over all
  # 8 x 8 pairs; the returns come from plain rollouts from the same reset key.
  returns = {}
  for name, policy in (("a", toward_goal), ("b", still)):
    result = rollout(env, policy, jax.random.split(jax.random.PRNGKey(0))[0], 8, 10)
    returns[name] = np.asarray(jnp.sum(result.trajectory.reward, axis=0))
  expected = np.mean(0.5 * (1 + np.sign(returns["a"][:, None] - returns["b"][None, :])))
  assert float(better["win_rate"]) == pytest.approx(expected, abs=1e-6)
  assert expected > 0.6  # moving toward the goal wins most pairs, even from other starts
  assert float(better["return_a"]) > float(better["return_b"])
