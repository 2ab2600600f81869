"""gymnax's classic-control environments (`--env gymnax:CartPole-v1`) on the Brax `Env`
interface the rollout uses (envs.py, `EnvAdapter`).

gymnax (https://github.com/RobertTLange/gymnax) writes an environment as pure functions
`reset_env(key, params) -> (obs, state)` and `step_env(key, state, action, params) -> (obs,
state, reward, done, info)`, with an integer action for a `Discrete` space. `GymnaxEnv` keeps
gymnax's state in `State.pipeline_state` and the step key in `State.info["key"]` (split on
every step, so a stochastic env draws fresh noise each step), and calls `step_env`, not
`step`: gymnax's `step` resets a finished episode by itself, while the rollout runs one
episode from reset and masks the steps after `done` (docs/design.md, "Episodes").

Actions: a `Discrete(K)` env is a `discrete_actions` env (the policy is categorical and gives
a one-hot [K]; the adapter passes its argmax); a `Box` env takes the package's [-1, 1]^A,
mapped affinely onto [low, high]. The episode limit is gymnax's `max_steps_in_episode` of the
default parameters (CartPole-v1 500), which `validate` enforces.

gymnax is an optional extra (`pip install 'spo_jax[gymnax]'`), imported on first use.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

from spo_jax.env_adapter import strong_leaves
from spo_jax.errors import ConfigError
from spo_jax.tiny_envs import PureJaxEnv

# The classic-control envs the adapter supports (flat observations, a Discrete or 1-D Box
# action space); gymnax's other families (MinAtar, bsuite, misc) are not wired up.
GYMNAX_ENV_NAMES = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1",
                    "MountainCarContinuous-v0")
INSTALL_HINT = "pip install 'spo_jax[gymnax]' (or pip install gymnax)"


def _import_gymnax() -> Any:
  try:
    import gymnax  # the optional extra `gymnax`, imported on first use
  except ImportError as error:
    raise ConfigError(f"gymnax environments need the gymnax package, which is not installed: "
                      f"{INSTALL_HINT}") from error
  return gymnax


def check_gymnax_name(name: str) -> None:
  """Raise `ConfigError` (one line: the supported names, or the install command when gymnax
  is missing) unless `name` is a supported gymnax env."""
  if name not in GYMNAX_ENV_NAMES:
    raise ConfigError(f"config field 'env' = 'gymnax:{name}' is not a supported gymnax "
                      f"environment; available: "
                      f"{', '.join('gymnax:' + n for n in GYMNAX_ENV_NAMES)}")
  _import_gymnax()


class GymnaxEnv(PureJaxEnv):
  """A gymnax env (by its gymnax name) as a Brax `Env`: obs [O] float32, reward and done []
  float32, metrics {}, `pipeline_state` gymnax's env state, `info["key"]` the next step's key.
  Sizes and action bounds are host (NumPy) values: constants of the compiled step, not device
  arrays made at construction. (Importing gymnax itself starts JAX's backend, which is why
  `train` applies `--deterministic` before validating the env name.)
  """

  def __init__(self, name: str):
    check_gymnax_name(name)
    gymnax = _import_gymnax()
    self.name = name
    self._env, self._params = gymnax.make(name)
    space = self._env.action_space(self._params)
    self.discrete_actions = hasattr(space, "n")
    if self.discrete_actions:
      self._action_size = int(space.n)
    else:
      if len(space.shape) != 1:
        raise ConfigError(f"gymnax:{name}: action space of shape {space.shape} is not supported "
                          "(a Discrete or a 1-D Box is)")
      self._action_size = int(space.shape[0])
      self._low = np.broadcast_to(np.asarray(space.low, np.float32), space.shape)
      self._high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape)
    self._observation_size = math.prod(self._env.observation_space(self._params).shape)
    self.episode_limit = int(self._params.max_steps_in_episode)

  @property
  def backend(self) -> str:
    return "gymnax"

  def gymnax_action(self, action: jax.Array) -> jax.Array:
    """The package's action [A] -> gymnax's: argmax of the one-hot (int32 []) for a Discrete
    space, [-1, 1]^A rescaled to [low, high]^A for a Box."""
    if self.discrete_actions:
      return jnp.argmax(action).astype(jnp.int32)
    unit = (jnp.clip(action, -1.0, 1.0) + 1.0) / 2.0
    return self._low + unit * (self._high - self._low)

  def reset(self, rng: jax.Array) -> State:
    k_reset, k_next = jax.random.split(rng)
    obs, env_state = self._env.reset_env(k_reset, self._params)
    zero = jnp.zeros(())
    return State(pipeline_state=strong_leaves(env_state), obs=self._flat(obs), reward=zero,
                 done=zero, metrics={}, info={"key": k_next})

  def step(self, state: State, action: jax.Array) -> State:
    k_step, k_next = jax.random.split(state.info["key"])
    obs, env_state, reward, done, _ = self._env.step_env(
        k_step, state.pipeline_state, self.gymnax_action(action), self._params)
    return state.replace(pipeline_state=strong_leaves(env_state), obs=self._flat(obs),
                         reward=jnp.reshape(reward, ()).astype(jnp.float32),
                         done=jnp.reshape(done, ()).astype(jnp.float32),
                         info={"key": k_next})

  @staticmethod
  def _flat(obs: jax.Array) -> jax.Array:
    return jnp.reshape(obs, (-1,)).astype(jnp.float32)


@functools.cache
def gymnax_episode_limit(name: str) -> int:
  """gymnax's `max_steps_in_episode` of `name`'s default parameters (CartPole-v1: 500)."""
  return GymnaxEnv(name).episode_limit


def make_gymnax_env(name: str, backend: str | None = None, **kwargs) -> Env:
  """`GymnaxEnv(name)`; `backend` (Brax's physics) and package-env `kwargs` do not apply."""
  del backend, kwargs
  return GymnaxEnv(name)
