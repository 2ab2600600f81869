"""MuJoCo Playground's environments (`--env playground:CartpoleBalance`) on the Brax `Env`
interface the rollout uses (envs.py, `EnvAdapter`).

Playground (https://github.com/google-deepmind/mujoco_playground, pip package `playground`,
module `mujoco_playground`) is where Brax's README sends users for environments now that
`brax.envs` is frozen. Its envs are `MjxEnv`s: `reset(rng) -> State(data, obs, reward, done,
metrics, info)` and `step(state, action) -> State`, with MJX's `data` where Brax has
`pipeline_state`, no auto-reset (that is Playground's training wrapper, which is not used), and
actions in [-1, 1]^A as the package's are. `PlaygroundEnv` keeps Playground's whole `State` in
`State.pipeline_state` (its `info` carries Playground's step key and task state) and exposes
its observation, reward, done and metrics.

- Physics: MJX's pure-JAX implementation (`impl='jax'`), the one the rollout's `vmap`,
  `while_loop` and compaction were built and tested on. Playground's default is MuJoCo Warp,
  whose kernels compile separately from the XLA program (its first jitted reset of
  CartpoleBalance took 21 s here; not compared like for like with the JAX implementation).
- Observations: a flat array is used as is. Some envs (the locomotion suite) return a dict of
  arrays; then the key is chosen in the name, `playground:NAME:KEY` (e.g. `:state`), and a
  dict without a chosen key is refused in one line listing the keys.
- Names: the DM Control suite (`CartpoleBalance`, `CheetahRun`, ...; its models ship in the
  wheel). The locomotion and manipulation suites load robot models from MuJoCo Menagerie,
  which Playground clones from GitHub on first use; spo_jax never downloads at run time, so
  they are accepted only when Menagerie is already on disk where Playground looks for it
  (`menagerie_path()`), and refused in one line saying so otherwise.
- The episode limit is Playground's `episode_length` of the env's default config (the DM
  Control suite: 1000 steps, returns up to 1000). One env step per action: Playground's
  `action_repeat` is 1 for every DM Control env, and an env whose default repeats actions is
  refused rather than stepped differently from Playground's own training.

Playground is an optional extra (`pip install 'spo_jax[playground]'`), imported on first use.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State

from spo_jax._quiet import quiet_imports
from spo_jax.env_adapter import strong_leaves
from spo_jax.errors import ConfigError
from spo_jax.tiny_envs import PureJaxEnv

INSTALL_HINT = "pip install 'spo_jax[playground]' (or pip install playground)"
# The physics implementation every Playground env is built with (see the module docstring).
MJX_IMPL = "jax"
# MJX and Playground broadcast arrays of different ranks implicitly; they are traced under
# this setting so that a program run with `jax_numpy_rank_promotion='raise'` (the test suite)
# still checks the package's own code strictly.
_ALLOW_RANK_PROMOTION = functools.partial(jax.numpy_rank_promotion, "allow")


@functools.cache
def _import_playground() -> Any:
  """`mujoco_playground._src.registry` (the suites' names, default configs and `load`)."""
  try:
    with quiet_imports():  # Warp and absl print on import
      # the optional extra `playground`
      registry = importlib.import_module("mujoco_playground._src.registry")
  except ImportError as error:
    raise ConfigError(f"MuJoCo Playground environments need the playground package, which is "
                      f"not installed: {INSTALL_HINT}") from error
  return registry


def menagerie_path() -> Path:
  """Where Playground looks for MuJoCo Menagerie (the robot models of its locomotion and
  manipulation suites)."""
  from mujoco_playground._src import mjx_env
  return Path(str(mjx_env.MENAGERIE_PATH))


def menagerie_commit() -> str:
  """The Menagerie commit Playground checks out."""
  from mujoco_playground._src import mjx_env
  return str(getattr(mjx_env, "MENAGERIE_COMMIT_SHA", "its pinned commit"))


def suite_names() -> dict[str, tuple[str, ...]]:
  """Playground's env names by suite: 'dm_control_suite', 'locomotion', 'manipulation'."""
  registry = _import_playground()
  return {"dm_control_suite": tuple(registry.dm_control_suite.ALL_ENVS),
          "locomotion": tuple(registry.locomotion.ALL_ENVS),
          "manipulation": tuple(registry.manipulation.ALL_ENVS)}


def split_name(name: str) -> tuple[str, str | None]:
  """'NAME' -> (NAME, None); 'NAME:KEY' -> (NAME, KEY), KEY the dict observation's key."""
  env_name, sep, key = name.partition(":")
  return env_name, (key if sep else None)


def check_playground_name(name: str) -> None:
  """Raise `ConfigError` (one line) unless `name` ('NAME' or 'NAME:KEY') is a Playground env
  that can be built here: the install command when Playground is missing, the DM Control
  names when NAME is unknown, why not when its suite needs Menagerie and it is absent. Builds
  no env (the observation key is checked when the env is built)."""
  env_name, key = split_name(name)
  suites = suite_names()
  if key == "":
    raise ConfigError(f"config field 'env' = 'playground:{name}': empty observation key after "
                      "':'; write playground:NAME or playground:NAME:KEY")
  if env_name in suites["dm_control_suite"]:
    return
  if env_name in suites["locomotion"] + suites["manipulation"]:
    if menagerie_path().is_dir():
      return
    raise ConfigError(
        f"config field 'env' = 'playground:{name}' needs MuJoCo Menagerie's robot models, "
        f"which Playground downloads (git clone) on first use and spo_jax does not: clone "
        f"https://github.com/google-deepmind/mujoco_menagerie into {menagerie_path()} and "
        f"check out {menagerie_commit()} first, or use a DM Control env such as "
        "playground:CartpoleBalance")
  raise ConfigError(f"config field 'env' = 'playground:{name}' is not a Playground environment; "
                    f"available (DM Control suite): "
                    f"{', '.join('playground:' + n for n in suites['dm_control_suite'])}")


@functools.cache
def playground_episode_limit(name: str) -> int:
  """Playground's `episode_length` of `name`'s default config (DM Control: 1000)."""
  env_name, _ = split_name(name)
  return int(_import_playground().get_default_config(env_name).episode_length)


class PlaygroundEnv(PureJaxEnv):
  """A Playground env (by its Playground name) as a Brax `Env`: obs [O] float32 (the chosen key
  of a dict observation, flattened), reward and done [] float32, metrics Playground's scalar
  ones (e.g. CartpoleBalance's 'reward/upright'), `pipeline_state` Playground's whole `State`.

  Also what a MuJoCo renderer needs (video.py): `mj_model`, `dt` (seconds per env step) and
  `pose(pipeline_state) -> (qpos, qvel)`.
  """

  def __init__(self, name: str):
    check_playground_name(name)
    self.name = name
    env_name, self.obs_key = split_name(name)
    with quiet_imports(), _ALLOW_RANK_PROMOTION():
      self._env = _import_playground().load(env_name, config_overrides={"impl": MJX_IMPL})
    # The observation's shape from an abstract reset: Playground's `observation_size` runs
    # `reset` eagerly, one operation at a time (seconds for MJX), as Brax's does.
    with _ALLOW_RANK_PROMOTION():
      obs = jax.eval_shape(self._env.reset, jax.random.PRNGKey(0)).obs
    if not isinstance(obs, Mapping):
      if self.obs_key is not None:
        raise ConfigError(f"config field 'env' = 'playground:{name}': {env_name}'s observation "
                          f"is one array, not a dict; drop ':{self.obs_key}'")
      self._observation_size = math.prod(obs.shape)
    else:
      if self.obs_key is None or self.obs_key not in obs:
        which = "needs a chosen key" if self.obs_key is None else f"has no key {self.obs_key!r}"
        raise ConfigError(f"config field 'env' = 'playground:{name}': the observation is a dict "
                          f"and {which}; write playground:{env_name}:KEY with KEY one of "
                          f"{', '.join(sorted(obs))}")
      self._observation_size = math.prod(obs[self.obs_key].shape)
    self._action_size = int(self._env.action_size)
    self.episode_limit = playground_episode_limit(name)
    repeat = _import_playground().get_default_config(env_name).get("action_repeat", 1)
    if repeat != 1:  # Playground's training wrapper repeats actions; this adapter steps once
      raise ConfigError(f"config field 'env' = 'playground:{name}': action_repeat = {repeat} "
                        "in its default config is not supported (one env step per action)")

  @property
  def backend(self) -> str:
    return "playground"

  @property
  def mj_model(self) -> Any:
    """The env's `mujoco.MjModel` (for rendering)."""
    return self._env.mj_model

  @property
  def dt(self) -> float:
    """Seconds of simulated time per env step (Playground's `ctrl_dt`)."""
    return float(self._env.dt)

  @staticmethod
  def pose(pipeline_state: Any) -> tuple[jax.Array, jax.Array]:
    """(qpos [nq], qvel [nv]) of a step's pipeline state, what a frame is drawn from."""
    return pipeline_state.data.qpos, pipeline_state.data.qvel

  def _wrap(self, inner: Any) -> State:
    inner = strong_leaves(inner)
    obs = inner.obs if self.obs_key is None else inner.obs[self.obs_key]
    return State(pipeline_state=inner, obs=jnp.reshape(obs, (-1,)).astype(jnp.float32),
                 reward=jnp.reshape(inner.reward, ()).astype(jnp.float32),
                 done=jnp.reshape(inner.done, ()).astype(jnp.float32),
                 metrics={k: jnp.reshape(v, ()).astype(jnp.float32)
                          for k, v in inner.metrics.items() if jnp.size(v) == 1},
                 info={})

  def reset(self, rng: jax.Array) -> State:
    with _ALLOW_RANK_PROMOTION():
      return self._wrap(self._env.reset(rng))

  def step(self, state: State, action: jax.Array) -> State:
    with _ALLOW_RANK_PROMOTION():
      return self._wrap(self._env.step(state.pipeline_state, action))


def make_playground_env(name: str, backend: str | None = None, **kwargs) -> Env:
  """`PlaygroundEnv(name)`; `backend` (Brax's physics) and package-env `kwargs` do not apply."""
  del backend, kwargs
  return PlaygroundEnv(name)
