"""The package's own tiny pure-JAX environments, for fast tests and examples: `point_reach`,
`balance` (a cart-pole) and the one-step `matrix_game` (exact Minimax-Winner checks).

They follow the Brax `Env` interface (envs.py describes it) and compile in well under a
second, where a Brax env takes 5-35 s. envs.py registers them by name in `ENVS`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

from spo_jax.errors import ConfigError


class PureJaxEnv(Env):
  """Environments written as plain JAX functions (the package's own, gymnax's through
  gymnax_env.py): sizes from `_observation_size` / `_action_size`, set on the class or in
  `__init__`; `backend` 'jax'."""

  _observation_size: int
  _action_size: int

  @property
  def observation_size(self) -> int:
    return self._observation_size

  @property
  def action_size(self) -> int:
    return self._action_size

  @property
  def backend(self) -> str:
    return "jax"


class PointReach(PureJaxEnv):
  """A point in the plane must reach a target.

  obs = [position (2), target (2)]; action in [-1, 1]^2 moves the point by 0.1 * action;
  reward = -||position - target||; the episode terminates when the point leaves [-2, 2]^2.
  Metrics: `distance`. A random policy scores about -40 over 32 steps; a good one about -10.
  """

  episode_limit = 200

  _observation_size, _action_size = 4, 2

  def reset(self, rng: jax.Array) -> State:
    k_pos, k_target = jax.random.split(rng)
    pos = jax.random.uniform(k_pos, (2,), minval=-1.0, maxval=1.0)
    target = jax.random.uniform(k_target, (2,), minval=-1.0, maxval=1.0)
    obs = jnp.concatenate([pos, target])
    zero = jnp.zeros(())
    return State(pipeline_state=None, obs=obs, reward=zero, done=zero,
                 metrics={"distance": jnp.linalg.norm(pos - target)}, info={})

  def step(self, state: State, action: jax.Array) -> State:
    pos, target = state.obs[:2], state.obs[2:]
    pos = pos + 0.1 * jnp.clip(action, -1.0, 1.0)
    distance = jnp.linalg.norm(pos - target)
    done = jnp.any(jnp.abs(pos) > 2.0).astype(jnp.float32)
    return state.replace(obs=jnp.concatenate([pos, target]), reward=-distance, done=done,
                         metrics={"distance": distance})


class Balance(PureJaxEnv):
  """Cart-pole balancing with a continuous force (the classic Barto-Sutton-Anderson dynamics).

  obs = [x, x_dot, theta, theta_dot]; action in [-1, 1] is a force of 10 * action newtons;
  reward 1 per step; the episode terminates when |theta| > 0.2 rad or |x| > 2.4 m, like
  Brax's `inverted_pendulum`, whose return it mirrors at a fraction of the compile time.
  Metrics: `angle`, `position`.
  """

  episode_limit = 1000
  _gravity, _cart_mass, _pole_mass, _half_length, _dt = 9.8, 1.0, 0.1, 0.5, 0.02

  _observation_size, _action_size = 4, 1

  def reset(self, rng: jax.Array) -> State:
    obs = jax.random.uniform(rng, (4,), minval=-0.05, maxval=0.05)
    zero = jnp.zeros(())
    return State(pipeline_state=None, obs=obs, reward=zero, done=zero,
                 metrics={"angle": obs[2], "position": obs[0]}, info={})

  def step(self, state: State, action: jax.Array) -> State:
    x, x_dot, theta, theta_dot = state.obs
    force = 10.0 * jnp.clip(action[0], -1.0, 1.0)
    total_mass = self._cart_mass + self._pole_mass
    pole_moment = self._pole_mass * self._half_length
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + pole_moment * theta_dot**2 * sin) / total_mass
    theta_acc = (self._gravity * sin - cos * temp) / (
        self._half_length * (4.0 / 3.0 - self._pole_mass * cos**2 / total_mass))
    x_acc = temp - pole_moment * theta_acc * cos / total_mass
    x_dot = x_dot + self._dt * x_acc
    x = x + self._dt * x_dot
    theta_dot = theta_dot + self._dt * theta_acc
    theta = theta + self._dt * theta_dot
    obs = jnp.stack([x, x_dot, theta, theta_dot])
    done = ((jnp.abs(theta) > 0.2) | (jnp.abs(x) > 2.4)).astype(jnp.float32)
    return state.replace(obs=obs, reward=jnp.ones(()), done=done,
                         metrics={"angle": theta, "position": x})


class MatrixGame(PureJaxEnv):
  """A one-step game with K discrete actions, for exact Minimax-Winner checks with the
  `matrix_game` teacher.

  obs = [1.0] (constant: there is no state); the action is one-hot [K] (`discrete_actions`:
  the policy is categorical over the K outcomes), outcome = argmax(action); the step ends the
  episode (done = 1). reward = 0: the game has no ground truth, only the teacher's payoff
  table, so evaluation returns are 0. Metrics: `outcome` (the action's index as a float; 0 at
  reset). A policy's mixed strategy is its action probabilities at the one observation.
  Training builds it with K = the payoff table's size (`train.build`).
  """

  episode_limit = 1
  discrete_actions = True

  def __init__(self, num_outcomes: int = 3):
    if isinstance(num_outcomes, bool) or not isinstance(num_outcomes, int) or num_outcomes < 2:
      raise ConfigError(f"MatrixGame(num_outcomes={num_outcomes!r}): the number of outcomes "
                        "must be an integer >= 2")
    self.num_outcomes = num_outcomes

  _observation_size = 1

  @property
  def action_size(self) -> int:
    return self.num_outcomes

  def reset(self, rng: jax.Array) -> State:
    del rng
    zero = jnp.zeros(())
    return State(pipeline_state=None, obs=jnp.ones((1,)), reward=zero, done=zero,
                 metrics={"outcome": zero}, info={})

  def step(self, state: State, action: jax.Array) -> State:
    outcome = jnp.argmax(action[:self.num_outcomes])
    return state.replace(reward=jnp.zeros(()), done=jnp.ones(()),
                         metrics={"outcome": outcome.astype(jnp.float32)})
