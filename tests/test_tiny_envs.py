"""spo_jax/tiny_envs.py: one step of each package env, worked by hand and checked under jit
against a NumPy reference (the rollouts that use them are in test_rollout.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax.errors import ConfigError
from spo_jax.tiny_envs import Balance, MatrixGame, PointReach


def test_point_reach_moves_a_tenth_of_the_clipped_action_and_ends_outside_the_square():
  """Point at (1.95, 0), target (0, 0). Action (0.3, -2): clipped to (0.3, -1), the point
  moves to (1.98, -0.1): distance sqrt(1.98^2 + 0.1^2) = 1.98252..., reward its negative,
  inside [-2, 2]^2. Action (1, 0) from there: x = 2.08 > 2, done."""
  env = PointReach()
  state = env.reset(jax.random.PRNGKey(0))
  state = state.replace(obs=jnp.asarray([1.95, 0.0, 0.0, 0.0]))
  step = jax.jit(env.step)
  state = step(state, jnp.asarray([0.3, -2.0]))
  np.testing.assert_allclose(state.obs, [1.98, -0.1, 0.0, 0.0], rtol=1e-6)
  np.testing.assert_allclose(state.reward, -np.hypot(1.98, 0.1), rtol=1e-6)
  np.testing.assert_allclose(state.metrics["distance"], np.hypot(1.98, 0.1), rtol=1e-6)
  assert float(state.done) == 0.0
  state = step(state, jnp.asarray([1.0, 0.0]))
  assert float(state.done) == 1.0


def test_point_reach_resets_inside_the_unit_square():
  obs = jax.vmap(lambda k: PointReach().reset(k).obs)(jax.random.split(jax.random.PRNGKey(1),
                                                                        256))
  assert obs.shape == (256, 4) and float(jnp.max(jnp.abs(obs))) <= 1.0


def _balance_step_numpy(obs, action):
  """The Barto-Sutton-Anderson cart-pole, semi-implicit Euler with dt = 0.02, in NumPy."""
  g, m_cart, m_pole, half, dt = 9.8, 1.0, 0.1, 0.5, 0.02
  x, x_dot, theta, theta_dot = obs
  force = 10.0 * np.clip(action, -1.0, 1.0)
  total = m_cart + m_pole
  temp = (force + m_pole * half * theta_dot**2 * np.sin(theta)) / total
  theta_acc = (g * np.sin(theta) - np.cos(theta) * temp) / (
      half * (4.0 / 3.0 - m_pole * np.cos(theta) ** 2 / total))
  x_acc = temp - m_pole * half * theta_acc * np.cos(theta) / total
  x_dot = x_dot + dt * x_acc
  x = x + dt * x_dot
  theta_dot = theta_dot + dt * theta_acc
  theta = theta + dt * theta_dot
  return np.asarray([x, x_dot, theta, theta_dot])


@pytest.mark.parametrize("obs, action", [
    ([0.0, 0.0, 0.05, 0.0], 0.0),  # a tilted pole falls further
    ([0.1, -0.2, -0.03, 0.4], 1.0),  # full force to the right
    ([2.0, 0.5, 0.1, -0.2], -3.0),  # an out-of-range action is clipped to -1
])
def test_balance_step_equals_the_numpy_reference(obs, action):
  env = Balance()
  state = env.reset(jax.random.PRNGKey(0)).replace(obs=jnp.asarray(obs, jnp.float32))
  out = jax.jit(env.step)(state, jnp.asarray([action], jnp.float32))
  np.testing.assert_allclose(out.obs, _balance_step_numpy(np.asarray(obs, np.float64), action),
                             rtol=1e-5, atol=1e-6)
  assert float(out.reward) == 1.0
  assert float(out.metrics["angle"]) == pytest.approx(float(out.obs[2]))


def test_balance_ends_past_the_angle_or_the_track():
  """|theta| > 0.2 rad or |x| > 2.4 m ends the episode; (0, 0, 0.19, 0) stays alive for one
  step of no force (theta grows by at most dt^2 * theta_acc ~ 0.006), (0, 0, 0.21, 0) not."""
  env = Balance()
  base = env.reset(jax.random.PRNGKey(0))
  step = jax.jit(env.step)
  for obs, done in (([0.0, 0.0, 0.19, 0.0], 0.0), ([0.0, 0.0, 0.21, 0.0], 1.0),
                    ([2.39, 2.0, 0.0, 0.0], 1.0), ([-2.0, 0.0, 0.0, 0.0], 0.0)):
    assert float(step(base.replace(obs=jnp.asarray(obs)), jnp.zeros(1)).done) == done, obs


def test_matrix_game_plays_the_argmax_and_ends_at_once():
  env = MatrixGame(4)
  assert (env.observation_size, env.action_size) == (1, 4)
  state = jax.jit(env.step)(env.reset(jax.random.PRNGKey(0)), jnp.asarray([0.0, 0, 1, 0]))
  assert float(state.metrics["outcome"]) == 2.0 and float(state.done) == 1.0
  assert float(state.reward) == 0.0
  with pytest.raises(ConfigError, match="must be an integer >= 2"):
    MatrixGame(1)
