"""Environments: Brax's registry by name, a user's own `brax.envs.Env`, and tiny pure-JAX
environments that ship with the package for fast tests and examples (`point_reach`,
`balance`, and the one-step `matrix_game` for exact Minimax-Winner checks; their classes are
in tiny_envs.py, registered here).

Every environment follows the Brax `Env` interface: `reset(key) -> State`,
`step(state, action) -> State`, `State(pipeline_state, obs, reward, done, metrics, info)`,
actions in [-1, 1]^action_size. An env with discrete actions says so with the class
attribute `discrete_actions = True`: it then receives a one-hot float vector [action_size]
(one entry per action), and the policy is categorical (networks.py). Episodes are not
auto-reset: the rollout runs each environment for one episode from reset and masks the steps
after termination itself.

What the trainer needs of an environment is `EnvAdapter` (the Brax interface plus the two
optional class attributes in `ENV_HOOKS`), checked by `check_env` before anything is
compiled; what teachers and reward sources may read of it is `EnvSpec` (`env_spec`); these
live in env_adapter.py and are re-exported here. Named environments come from one registry,
`ENVS` (package envs and Brax's names), read by config validation, `spo-train --help` and
`make_env`; a new one is `ENVS.register(name, EnvEntry(...))` (docs/design.md, "Adding a
plug-in"). Families of envs are written `FAMILY:NAME` and resolved by `ENV_FAMILIES` through
`env_entry`: `brax:hopper` (the same env as the bare `hopper`: `canonical_env_name`) and
`gymnax:CartPole-v1` (gymnax_env.py, the optional extra `spo_jax[gymnax]`) and
`playground:CartpoleBalance` (playground_env.py, the extra `spo_jax[playground]`). docs/envs.md
describes the families and what a new one must supply.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from brax import envs as brax_envs
from brax.envs.base import Env

from spo_jax import gymnax_env, playground_env
from spo_jax._quiet import quiet_imports

# The env contract and what is read of an env live in env_adapter.py; re-exported here, where
# they used to live.
from spo_jax.env_adapter import (  # noqa: F401  (re-exported)
    ENV_HOOKS,
    EnvAdapter,
    EnvSpec,
    check_env,
    env_hook,
    env_spec,
    observation_size,
)
from spo_jax.errors import ConfigError
from spo_jax.registry import Registry
from spo_jax.tiny_envs import Balance, MatrixGame, PointReach

BRAX_ENV_NAMES = (
    "ant", "fast", "halfcheetah", "hopper", "humanoid", "humanoidstandup",
    "inverted_double_pendulum", "inverted_pendulum", "pusher", "reacher", "swimmer",
    "walker2d",
)
BRAX_BACKENDS = ("generalized", "positional", "spring", "mjx")
# Brax's locomotion and control tasks are conventionally run (and their returns reported) for
# episodes of 1000 steps; a longer horizon is refused so that returns stay comparable.
BRAX_EPISODE_LIMIT = 1000


def _no_config_check(cfg: Any) -> None:
  del cfg


class EnvEntry(NamedTuple):
  """A named environment in `ENVS`.

  make(backend, **kwargs) -> Env: builds it (`backend` is the config's Brax backend, None
  for the default; `kwargs` are a package env's constructor arguments).
  episode_limit: the longest horizon `validate` accepts (None: no limit).
  family: 'package' (pure JAX, ships here) or 'brax' (Brax's registry); a new family is a
  new value here and a `make` that builds it.
  check_config(cfg): checks of config fields this env constrains (default: none).
  """

  make: Callable[..., Env]
  description: str
  episode_limit: int | None = None
  family: str = "package"
  check_config: Callable[[Any], None] = _no_config_check


ENVS: Registry[EnvEntry] = Registry("environment", "env")


class EnvFamily(NamedTuple):
  """A family of environments written 'FAMILY:NAME' (`gymnax:CartPole-v1`), for packages
  whose names are not Python identifiers or are too many to register one by one.

  entry(NAME) -> EnvEntry: the named env's entry; raises `ConfigError` (one line) for an
  unknown NAME (listing the available ones) or when the family's package is not installed
  (naming the pip command). Called by `env_entry`, so validation, `make_env` and the episode
  limit all go through it.
  """

  entry: Callable[[str], EnvEntry]
  description: str
  # The family's envs are also registered in `ENVS` under their bare names (Brax's): FAMILY:NAME
  # is NAME, and presets and benchmark settings keyed by NAME apply (`canonical_env_name`).
  bare_names: bool = False


ENV_FAMILIES: Registry[EnvFamily] = Registry("environment family", "env")


def _brax_family_entry(name: str) -> EnvEntry:
  if name not in BRAX_ENV_NAMES:
    raise ConfigError(f"config field 'env' = 'brax:{name}' is not one of Brax's environments; "
                      f"available: {', '.join('brax:' + n for n in BRAX_ENV_NAMES)}")
  return ENVS.get(name)


ENV_FAMILIES.register("brax", EnvFamily(
    _brax_family_entry, "Brax's registry (brax.envs), the same envs as the bare names: "
    "brax:hopper is hopper, with hopper's preset", bare_names=True))


def _gymnax_entry(name: str) -> EnvEntry:
  gymnax_env.check_gymnax_name(name)
  return EnvEntry(functools.partial(gymnax_env.make_gymnax_env, name), f"gymnax's '{name}'",
                  gymnax_env.gymnax_episode_limit(name), "gymnax")


ENV_FAMILIES.register("gymnax", EnvFamily(
    _gymnax_entry, "gymnax's classic control with discrete or continuous actions: "
    "gymnax:CartPole-v1, gymnax:Acrobot-v1, gymnax:MountainCar-v0, gymnax:Pendulum-v1, "
    "gymnax:MountainCarContinuous-v0 (pip install 'spo_jax[gymnax]')"))


def _playground_entry(name: str) -> EnvEntry:
  playground_env.check_playground_name(name)
  return EnvEntry(functools.partial(playground_env.make_playground_env, name),
                  f"MuJoCo Playground's '{name}'", playground_env.playground_episode_limit(name),
                  "playground")


ENV_FAMILIES.register("playground", EnvFamily(
    _playground_entry, "MuJoCo Playground's DM Control suite on MJX: playground:CartpoleBalance, "
    "playground:CheetahRun, ...; a dict observation's key as playground:NAME:KEY "
    "(pip install 'spo_jax[playground]')"))


def env_entry(name: str) -> EnvEntry:
  """The `EnvEntry` of a registry name (`hopper`) or of a family name (`gymnax:CartPole-v1`);
  `ConfigError` (one line) for an unknown name or family."""
  family, sep, inner = name.partition(":")
  if not sep:
    check_env_name(name)
    return ENVS.get(name)
  known = (f"known families: {', '.join(ENV_FAMILIES.names())} (written FAMILY:NAME, e.g. "
           "brax:hopper or gymnax:CartPole-v1), and the bare names of the package's and Brax's "
           "envs")
  if family not in ENV_FAMILIES:
    raise ConfigError(f"config field 'env' = {name!r} names an unknown environment family "
                      f"'{family}'; {known}")
  return ENV_FAMILIES.get(family).entry(inner)


def require_family(name: str, families: tuple[str, ...], tool: str) -> str:
  """`canonical_env_name(name)`, unless `name` is 'FAMILY:NAME' of a family `tool` (a command)
  cannot run: then `ConfigError`, one line naming the family and what the tool runs. Bare
  names pass through to the tool's own checks. Imports no family's package, compiles nothing.
  `families`: 'package' (the package's envs, bare names), 'brax', 'gymnax', ..."""
  canonical = canonical_env_name(name)
  family, sep, _ = canonical.partition(":")
  if not sep or family in families:
    return canonical
  which = {"package": "the package's own envs", "brax": "Brax's (NAME or brax:NAME)"}
  runs = " and ".join(which.get(f, f"the {f} family") for f in families)
  raise ConfigError(f"{tool} does not run {name!r} (the '{family}' family): it runs {runs} "
                    "only; train it with spo-train and evaluate it with spo-eval")


def canonical_env_name(name: str) -> str:
  """The name a registry env is known by: 'brax:hopper' -> 'hopper' (an env of a `bare_names`
  family; presets, benchmark settings and the package's checks are keyed by it). Other names
  are returned unchanged, unknown ones included (they are refused where validated)."""
  family, sep, inner = name.partition(":") if isinstance(name, str) else ("", "", "")
  if (sep and family in ENV_FAMILIES and ENV_FAMILIES.get(family).bare_names
      and inner in ENVS and ENVS.get(inner).family == family):
    return inner
  return name  # 'brax:point_reach' too: refused by the family, not read as 'point_reach'



def _package_env(cls: type[Env], backend: str | None = None, **kwargs) -> Env:
  del backend  # pure-JAX envs have no physics backend
  return cls(**kwargs)


def _brax_env(name: str, backend: str | None = None, **kwargs) -> Env:
  del kwargs
  with quiet_imports():  # building a MuJoCo model warns (e.g. Brax's 'settotalmass')
    return brax_envs.get_environment(name, **({} if backend is None else {"backend": backend}))


def register_package_env(name: str, cls: type[Env], description: str) -> None:
  """Register a pure-JAX env class (its `episode_limit` class attribute is the limit)."""
  ENVS.register(name, EnvEntry(functools.partial(_package_env, cls), description,
                               env_hook(cls, "episode_limit"), "package"))


register_package_env("point_reach", PointReach, "a point in the plane reaches a target")
register_package_env("balance", Balance, "cart-pole balancing with a continuous force")
register_package_env("matrix_game", MatrixGame,
                     "one-step game over K outcomes, for exact Minimax-Winner checks")
for _name in BRAX_ENV_NAMES:
  ENVS.register(_name, EnvEntry(functools.partial(_brax_env, _name), f"Brax's '{_name}'",
                                BRAX_EPISODE_LIMIT, "brax"))

# The package's own env classes by name (a view of `ENVS`' 'package' family at import time).
PACKAGE_ENVS: dict[str, type[Env]] = {"point_reach": PointReach, "balance": Balance,
                                      "matrix_game": MatrixGame}


def known_env_names() -> list[str]:
  """Registered env names: the package family first, then the others, each sorted."""
  names = ENVS.names()
  package = sorted(n for n in names if ENVS.get(n).family == "package")
  return package + sorted(n for n in names if ENVS.get(n).family != "package")


def check_env_name(name: str) -> None:
  """Raise `ConfigError` listing the known names if `name` is not one (a 'FAMILY:NAME' is
  checked by its family, `env_entry`)."""
  if isinstance(name, str) and ":" in name:
    env_entry(name)
    return
  if name not in ENVS:
    raise ConfigError(
        f"config field 'env' = {name!r} is not a known environment; known environments: "
        f"{', '.join(known_env_names())}, or FAMILY:NAME such as gymnax:CartPole-v1 (or pass "
        "your own brax Env instance: train(config, env=MyEnv()) takes any name for it)")


def class_path(env: Any) -> str:
  """'module:qualname' of `env`'s class: how a run directory names a user's own env
  (policy.json's `user_env_class`) so that the reader knows which object to pass back."""
  cls = type(env)
  return f"{cls.__module__}:{cls.__qualname__}"


def from_class_path(path: str, flag: str = "--env-class") -> Env:
  """The env `MODULE:QUALNAME()` (built with no arguments): how a command line gets back a
  user's own env that `class_path` recorded. Raises `ConfigError` (one line, naming `flag`)
  when the module does not import, the class is missing or building it fails."""
  module_name, _, qualname = path.partition(":")
  if not module_name or not qualname:
    raise ConfigError(f"{flag} {path!r} must read MODULE:CLASS, e.g. my_envs:MyEnv")
  try:
    target: Any = importlib.import_module(module_name)
  except ImportError as error:
    raise ConfigError(f"{flag} {path!r}: cannot import module '{module_name}' "
                      f"({_one_line(error)}); put its folder on PYTHONPATH") from error
  for part in qualname.split("."):
    if not hasattr(target, part):
      raise ConfigError(f"{flag} {path!r}: module '{module_name}' has no '{qualname}'")
    target = getattr(target, part)
  try:
    env = target()
  except Exception as error:  # noqa: BLE001 (a user's constructor may raise anything)
    raise ConfigError(f"{flag} {path!r}: building {qualname}() with no arguments failed "
                      f"({type(error).__name__}: {_one_line(error)})") from error
  if not isinstance(env, Env):
    raise ConfigError(f"{flag} {path!r} built a {type(env).__name__}, not a brax.envs.Env")
  return env


def _one_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def max_episode_length(name_or_env: str | Env) -> int | None:
  """Longest horizon allowed for an environment, or None when it does not say."""
  if isinstance(name_or_env, str):
    return env_entry(name_or_env).episode_limit
  return env_hook(name_or_env, "episode_limit")


def make_env(env: str | Env, backend: str | None = None, **kwargs) -> Env:
  """Build an environment from a registered name, or pass a user's `Env` instance through.

  `kwargs` go to a package env's constructor (e.g. `num_outcomes` of `matrix_game`)."""
  if isinstance(env, Env):
    return env
  if not isinstance(env, str) or not hasattr(env, "lower"):
    raise ConfigError(f"env must be a name or a brax Env instance, got {type(env).__name__}")
  return env_entry(env).make(backend, **kwargs)
