"""Environments: Brax's registry by name, a user's own `brax.envs.Env`, and tiny pure-JAX
environments that ship with the package for fast tests and examples (`point_reach`,
`balance`, and the one-step `matrix_game` for exact Minimax-Winner checks).

Every environment follows the Brax `Env` interface: `reset(key) -> State`,
`step(state, action) -> State`, `State(pipeline_state, obs, reward, done, metrics, info)`,
actions in [-1, 1]^action_size. An env with discrete actions says so with the class
attribute `discrete_actions = True`: it then receives a one-hot float vector [action_size]
(one entry per action), and the policy is categorical (networks.py). Episodes are not
auto-reset: the rollout runs each environment for one episode from reset and masks the steps
after termination itself.
"""

from __future__ import annotations

import inspect
import os
import weakref

import jax
import jax.numpy as jnp
from brax.envs.base import Env, PipelineEnv, State, Wrapper

from spo_jax._quiet import quiet_imports
from spo_jax.config import ConfigError

BRAX_ENV_NAMES = (
    "ant", "fast", "halfcheetah", "hopper", "humanoid", "humanoidstandup",
    "inverted_double_pendulum", "inverted_pendulum", "pusher", "reacher", "swimmer",
    "walker2d",
)
BRAX_BACKENDS = ("generalized", "positional", "spring", "mjx")
# Brax's locomotion and control tasks are conventionally run (and their returns reported) for
# episodes of 1000 steps; a longer horizon is refused so that returns stay comparable.
BRAX_EPISODE_LIMIT = 1000


class _PureJaxEnv(Env):
  """The package's own environments: sizes from class constants, plain-JAX 'physics'."""

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


class PointReach(_PureJaxEnv):
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


class Balance(_PureJaxEnv):
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


class MatrixGame(_PureJaxEnv):
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


PACKAGE_ENVS: dict[str, type[Env]] = {"point_reach": PointReach, "balance": Balance,
                                   "matrix_game": MatrixGame}


def known_env_names() -> list[str]:
  return sorted(PACKAGE_ENVS) + sorted(BRAX_ENV_NAMES)


def check_env_name(name: str) -> None:
  """Raise `ConfigError` listing the known names if `name` is not one."""
  if name not in PACKAGE_ENVS and name not in BRAX_ENV_NAMES:
    raise ConfigError(
        f"config field 'env' = {name!r} is not a known environment; known environments: "
        f"{', '.join(known_env_names())} (or pass your own brax Env instance to train(env=...))")


def max_episode_length(name_or_env: str | Env) -> int | None:
  """Longest horizon allowed for an environment, or None when it does not say."""
  if isinstance(name_or_env, str):
    if name_or_env in PACKAGE_ENVS:
      return PACKAGE_ENVS[name_or_env].episode_limit
    return BRAX_EPISODE_LIMIT
  return getattr(name_or_env, "episode_limit", None)


def make_env(env: str | Env, backend: str | None = None, **kwargs) -> Env:
  """Build an environment from a name, or pass a user's `Env` instance through.

  `kwargs` go to a package env's constructor (e.g. `num_outcomes` of `matrix_game`)."""
  if isinstance(env, Env):
    return env
  if not isinstance(env, str) or not hasattr(env, "lower"):
    raise ConfigError(f"env must be a name or a brax Env instance, got {type(env).__name__}")
  check_env_name(env)
  if env in PACKAGE_ENVS:
    return PACKAGE_ENVS[env](**kwargs)
  os.environ.setdefault("MUJOCO_GL", "egl")
  with quiet_imports():
    from brax import envs as brax_envs
    kwargs = {} if backend is None else {"backend": backend}
    return brax_envs.get_environment(env, **kwargs)


def check_env(env: Env) -> None:
  """Check a user's environment against the interface before anything is compiled."""
  for attribute in ("reset", "step", "observation_size", "action_size"):
    # Looked up, not evaluated: Brax's `observation_size` property runs a reset (see
    # `observation_size` below). Attributes forwarded by `__getattr__` need the evaluation.
    try:
      inspect.getattr_static(env, attribute)
      present = True
    except AttributeError:
      present = hasattr(env, attribute)
    if not present:
      raise ConfigError(
          f"environment {type(env).__name__} has no '{attribute}': it must implement the "
          "brax.envs.Env interface (reset, step, observation_size, action_size)")


# Observation sizes of Brax envs, computed once per env object (see `observation_size`).
_OBSERVATION_SIZES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def observation_size(env: Env) -> int:
  """`env.observation_size`, without running the environment when it is Brax's own property.

  Brax's `PipelineEnv.observation_size` (and `Wrapper`'s, which forwards to it) runs `reset`
  eagerly, one operation at a time: 9 s on the 2-core CPU for `inverted_pendulum`, paid by
  every start of training, evaluation or a test. The size of an abstract `jax.eval_shape` of
  `reset` is the same number and takes 0.2-0.6 s (docs/performance.md); it is remembered per
  env object. Other envs' `observation_size` is read as it is.
  """
  prop = getattr(type(env), "observation_size", None)
  if prop is not PipelineEnv.observation_size and prop is not Wrapper.observation_size:
    return env.observation_size
  try:
    return _OBSERVATION_SIZES[env]
  except (KeyError, TypeError):
    pass
  obs = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs
  if not hasattr(obs, "shape"):
    return env.observation_size  # dict observations: Brax's property returns their shapes
  size = int(obs.shape[-1])
  try:
    _OBSERVATION_SIZES[env] = size
  except TypeError:  # not weakly referenceable: computed again next time
    pass
  return size
