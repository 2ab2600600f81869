"""The environment contract: what the trainer calls on an env (`EnvAdapter`, its optional
hooks `ENV_HOOKS`), the check of an env object before anything is compiled (`check_env`),
and what may be read of it without running it (`observation_size`, `EnvSpec` by `env_spec`).

envs.py builds environments (registry, families, a user's class path) and re-exports these
names; this module knows nothing of names or registries, so a user's own `Env` object is
checked and described the same way as a registered one.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from brax.envs.base import Env, PipelineEnv, State, Wrapper

from spo_jax.errors import ProtocolError


class EnvAdapter(Protocol):
  """What the trainer calls on an environment: the Brax `Env` interface.

  Optional class attributes (declared in `ENV_HOOKS` with their defaults, read through
  `env_hook`): `discrete_actions: bool` (actions are one-hot [action_size], the policy is
  categorical) and `episode_limit: int | None` (the longest horizon allowed).
  """

  def reset(self, rng: jax.Array) -> State: ...

  def step(self, state: State, action: jax.Array) -> State: ...

  @property
  def observation_size(self) -> int: ...

  @property
  def action_size(self) -> int: ...


# The optional members of `EnvAdapter`, with the value an env that leaves them out gets.
ENV_HOOKS: dict[str, Any] = {"discrete_actions": False, "episode_limit": None}


def env_hook(env: Any, name: str) -> Any:
  """The optional `EnvAdapter` member `name` of `env` (an instance or a class), or its
  default from `ENV_HOOKS`. The one place optional env members are looked up."""
  return getattr(env, name, ENV_HOOKS[name])


class EnvSpec(NamedTuple):
  """What a teacher or reward source may need to know about the environment it works on."""

  name: str  # registry name, or the class name of a user's Env
  observation_size: int
  action_size: int
  metric_names: tuple[str, ...]  # keys of the env's State.metrics
  episode_length: int  # the horizon H of the run
  discrete_actions: bool = False  # actions are one-hot vectors [action_size] (matrix_game)


def check_env(env: Any) -> None:
  """Check an environment against `EnvAdapter` before anything is compiled; raise
  `ProtocolError` (one line) naming the first missing or ill-typed member."""
  name = type(env).__name__
  for attribute in ("reset", "step", "observation_size", "action_size"):
    # Looked up, not evaluated: Brax's `observation_size` property runs a reset (see
    # `observation_size` below). Attributes forwarded by `__getattr__` need the evaluation.
    try:
      inspect.getattr_static(env, attribute)
      present = True
    except AttributeError:
      present = hasattr(env, attribute)
    if not present:
      raise ProtocolError(
          f"environment {name} has no '{attribute}': it must implement the "
          "brax.envs.Env interface (reset, step, observation_size, action_size)")
  for method in ("reset", "step"):
    if not callable(getattr(env, method)):
      raise ProtocolError(f"environment {name}: '{method}' must be a method, got "
                          f"{type(getattr(env, method)).__name__}")
  size = env.action_size
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise ProtocolError(f"environment {name}: 'action_size' must be a positive int, got "
                        f"{size!r}")
  discrete = env_hook(env, "discrete_actions")
  if not isinstance(discrete, bool):
    raise ProtocolError(f"environment {name}: 'discrete_actions' must be a bool, got "
                        f"{discrete!r}")
  limit = env_hook(env, "episode_limit")
  if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
    raise ProtocolError(f"environment {name}: 'episode_limit' must be None or a positive int, "
                        f"got {limit!r}")


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


# Metric names of registry envs, by (name, class, sizes): tracing a Brax env's reset takes
# 10-20 s on a 2-core CPU, and training, the checks and every reload would pay it again.
_METRIC_NAMES: dict[tuple, tuple[str, ...]] = {}


def env_spec(env: Any, horizon: int, name: str = "") -> EnvSpec:
  """The `EnvSpec` of a Brax `Env`: sizes, and metric names from an abstract reset (traced,
  not compiled or run; remembered per registry `name`, a user's env without one is traced
  each time)."""
  obs_size = observation_size(env)
  key = (name, type(env).__name__, obs_size, env.action_size)
  metric_names = _METRIC_NAMES.get(key) if name else None
  if metric_names is None:
    metric_names = tuple(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).metrics)
    if name:
      _METRIC_NAMES[key] = metric_names
  return EnvSpec(name or type(env).__name__, obs_size, env.action_size,
                 metric_names, horizon, bool(env_hook(env, "discrete_actions")))


def strong_leaves(tree: Any) -> Any:
  """`tree` with every leaf an array of its own dtype, not weak-typed: a family's state that
  starts with Python scalars (gymnax's `time`, Playground's metrics) would otherwise change
  weak type between reset and step, which the rollout's `lax.cond` and `scan` refuse. Adapters
  (gymnax_env.py, playground_env.py) apply it to what they return."""
  return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)
