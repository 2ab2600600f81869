"""Teachers (preference functions): the protocol, the built-in zoo, and the factory.

A teacher is named by an expression: a base teacher inside any chain of wrappers,
e.g. 'oracle', 'bradley_terry', 'mistake(myopic(oracle))', 'skip(equal(bradley_terry))'.
A wrapper written without parentheses wraps the oracle ('mistake' = 'mistake(oracle)').
Parameters come from the `teacher_*` config fields. See docs/teachers.md.

Modules: `protocol` (the contract and its check), `returns` (return-based teachers and the
wrappers), `raters` (intransitive majority vote), `nonmarkov` (trajectory-level properties),
`matrix_game` (payoff tables over finite outcomes), `learned` (a fitted preference network).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from spo_jax.envs import make_env
from spo_jax.errors import ConfigError, check_float, check_int, fail
from spo_jax.registry import Registry

# protocol first: rollout (imported by learned below) reads TeacherStep from this package
# while it is still being imported.
from spo_jax.teachers.protocol import (
  TEACHER_HOOKS,
  EnvSpec,
  Summary,
  Teacher,
  TeacherContractError,
  TeacherProtocol,
  TeacherStep,
  ask,
  check_teacher_protocol,
  env_spec,
  hook,
  invalid_answer,
  random_steps,
  summarize,
  teacher_abstain,
  validate_teacher,
)

# isort: split
from spo_jax.teachers.learned import build_learned
from spo_jax.teachers.matrix_game import build_matrix_game, matrix_game_env_kwargs
from spo_jax.teachers.nonmarkov import build_nonmarkov
from spo_jax.teachers.raters import build_intransitive
from spo_jax.teachers.returns import (
  BradleyTerry,
  Equal,
  Mistake,
  Myopic,
  Oracle,
  Skip,
  is_return_based,
)


def _no_config_check(cfg: Any) -> None:
  del cfg


def _no_env_kwargs(cfg: Any) -> dict[str, Any]:
  del cfg
  return {}


class TeacherEntry(NamedTuple):
  """A base teacher in `TEACHERS`.

  build(cfg, spec) -> teacher: reads its `teacher_*` fields; `spec` (`EnvSpec`) describes
  the env; env-dependent parameters are checked here, before anything is compiled.
  return_based: it compares returns, so the wrappers that read the return may wrap it.
  check_config(cfg): config-only checks of the fields it needs (run by `validate`).
  env_kwargs(cfg) -> dict: constructor arguments a package env needs to match this teacher
  (e.g. `matrix_game`'s number of outcomes = the payoff table's size).
  """

  build: Callable[[Any, EnvSpec], TeacherProtocol]
  description: str
  return_based: bool = False
  check_config: Callable[[Any], None] = _no_config_check
  env_kwargs: Callable[[Any], dict[str, Any]] = _no_env_kwargs


class WrapperEntry(NamedTuple):
  """A wrapper in `WRAPPER_REGISTRY`: wrap(inner, cfg) -> teacher; `needs_return`: it reads
  or redefines the return, so the base inside must be return-based."""

  wrap: Callable[[TeacherProtocol, Any], TeacherProtocol]
  description: str
  needs_return: bool = False


def _check_learned(cfg) -> None:
  if cfg.teacher_fit_steps < 1:
    fail("teacher_fit_steps", cfg.teacher_fit_steps,
         "the 'learned' teacher must be fit: use at least 1 step (2000 is the default)")
  if not cfg.teacher_labels_file:
    fail("teacher_labels_file", cfg.teacher_labels_file,
         "the 'learned' teacher needs a labels file (.npz with features_a, features_b, labels)")


TEACHERS: Registry[TeacherEntry] = Registry("teacher", "teacher")
WRAPPER_REGISTRY: Registry[WrapperEntry] = Registry("teacher wrapper", "teacher")


def register_teacher(name: str, build: Callable[[Any, EnvSpec], TeacherProtocol], *,
                     description: str, return_based: bool = False,
                     check_config: Callable[[Any], None] = _no_config_check,
                     env_kwargs: Callable[[Any], dict[str, Any]] = _no_env_kwargs,
                     replace: bool = False) -> TeacherEntry:
  """Make `name` a base teacher for `Config.teacher` (and the CLI's --teacher)."""
  if name in WRAPPER_REGISTRY:
    raise ConfigError(f"teacher name {name!r} is already a wrapper")
  return TEACHERS.register(name, TeacherEntry(build, description, return_based, check_config,
                                              env_kwargs), replace=replace)


def register_wrapper(name: str, wrap: Callable[[TeacherProtocol, Any], TeacherProtocol], *,
                     description: str, needs_return: bool = False,
                     replace: bool = False) -> WrapperEntry:
  """Make `name` a wrapper usable in teacher expressions, e.g. 'name(oracle)'."""
  if name in TEACHERS:
    raise ConfigError(f"wrapper name {name!r} is already a base teacher")
  return WRAPPER_REGISTRY.register(name, WrapperEntry(wrap, description, needs_return),
                                   replace=replace)


register_teacher("oracle", lambda cfg, spec: Oracle(), return_based=True,
                 description="1 if R_a > R_b, 0 if R_a < R_b, 1/2 on a tie")
register_teacher("bradley_terry",
                 lambda cfg, spec: BradleyTerry(beta=cfg.teacher_beta, scale=cfg.teacher_scale),
                 return_based=True, description="sigmoid(beta (R_a - R_b) / scale)")
register_teacher("intransitive", build_intransitive,
                 description="majority vote of K raters with their own utilities")
for _name, _what in (("constraint", "never exceed a threshold, then the higher return"),
                     ("peak", "the higher peak of a quantity"),
                     ("deadline", "reach a level before a deadline, earlier is better"),
                     ("steady", "the steadier quantity (lower variance)")):
  register_teacher(_name, functools.partial(build_nonmarkov, _name), description=_what)
register_teacher("matrix_game", build_matrix_game, env_kwargs=matrix_game_env_kwargs,
                 description="payoff table over the outcomes of a one-step game")
register_teacher("learned", build_learned, check_config=_check_learned,
                 description="a preference network fit to a labels file")
register_wrapper("mistake", lambda inner, cfg: Mistake(inner, cfg.teacher_epsilon),
                 description="answers the wrong way with probability epsilon")
register_wrapper("myopic", lambda inner, cfg: Myopic(inner, cfg.teacher_gamma),
                 needs_return=True, description="discounted return, recent steps weigh most")
register_wrapper("equal", lambda inner, cfg: Equal(inner, cfg.teacher_tie_margin),
                 needs_return=True, description="a tie when the returns are within a margin")
register_wrapper("skip", lambda inner, cfg: Skip(inner, cfg.teacher_skip_threshold),
                 needs_return=True, description="abstains when both returns are low")

# The built-in names (registration order); the registries are the live lists.
BASE_TEACHERS = TEACHERS.names()
WRAPPERS = WRAPPER_REGISTRY.names()

__all__ = [
    "BASE_TEACHERS", "BradleyTerry", "EnvSpec", "Equal", "Mistake", "Myopic", "Oracle", "Skip",
    "Summary", "TEACHERS", "TEACHER_HOOKS", "Teacher", "TeacherContractError", "TeacherEntry",
    "TeacherProtocol", "TeacherStep", "WRAPPERS", "WRAPPER_REGISTRY", "WrapperEntry", "ask",
    "check_teacher_config", "check_teacher_name", "check_teacher_protocol", "env_spec", "hook",
    "invalid_answer", "is_return_based", "make_teacher", "parse_teacher", "random_steps",
    "register_teacher", "register_wrapper", "summarize", "teacher_abstain", "teacher_env_kwargs",
    "validate_teacher",
]

_TOKEN = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$")


def _known() -> str:
  return (f"base teachers {', '.join(TEACHERS.names())}; wrappers "
          f"{', '.join(WRAPPER_REGISTRY.names())}, "
          "written around a base, e.g. 'mistake(myopic(oracle))'")


def parse_teacher(expression: str) -> list[str]:
  """'mistake(myopic(oracle))' -> ['mistake', 'myopic', 'oracle'] (outermost first)."""
  if not isinstance(expression, str):
    raise ConfigError(f"config field 'teacher' = {expression!r} must be a teacher name; "
                      f"known: {_known()}")
  chain, rest = [], expression
  while True:
    match = _TOKEN.match(rest)
    if match is None:
      raise ConfigError(f"config field 'teacher' = {expression!r} is not a teacher expression; "
                        f"known: {_known()}")
    name, inner = match.group(1), match.group(2)
    if name not in TEACHERS and name not in WRAPPER_REGISTRY:
      raise ConfigError(f"config field 'teacher' = {expression!r}: '{name}' is not a known "
                        f"teacher; known: {_known()} (or pass your own teacher object to "
                        "train(teacher=...))")
    chain.append(name)
    if name in TEACHERS:
      if inner is not None:
        raise ConfigError(f"config field 'teacher' = {expression!r}: '{name}' is a base teacher "
                          "and wraps nothing; only the wrappers "
                          f"{', '.join(WRAPPER_REGISTRY.names())} take a teacher in parentheses")
      break
    if inner is None or not inner.strip():
      chain.append("oracle")
      break
    rest = inner
  base = chain[-1]
  for name in chain[:-1]:
    if WRAPPER_REGISTRY.get(name).needs_return and not TEACHERS.get(base).return_based:
      return_based = [n for n in TEACHERS.names() if TEACHERS.get(n).return_based]
      raise ConfigError(
          f"config field 'teacher' = {expression!r}: '{name}' reads the return, so it needs a "
          f"return-based teacher inside ({', '.join(return_based)}), not {base!r}")
  return chain


def check_teacher_name(expression: str) -> None:
  parse_teacher(expression)


def check_teacher_config(cfg) -> None:
  """Config-only checks of the teacher expression and every teacher parameter."""
  chain = parse_teacher(cfg.teacher)
  inf = float("inf")
  check_float(cfg, "teacher_beta", 0.0, inf, low_open=True, high_open=True)
  check_float(cfg, "teacher_scale", 0.0, inf, low_open=True, high_open=True)
  check_float(cfg, "teacher_epsilon", 0.0, 0.5)
  check_float(cfg, "teacher_gamma", 0.0, 1.0, low_open=True)
  check_float(cfg, "teacher_tie_margin", 0.0, inf, high_open=True)
  check_float(cfg, "teacher_skip_threshold", -inf, inf, low_open=True, high_open=True)
  check_int(cfg, "teacher_num_raters", 3)
  if cfg.teacher_num_raters % 2 == 0:
    fail("teacher_num_raters", cfg.teacher_num_raters,
         "a majority vote needs an odd number of raters (3, 5, 7, ...)")
  check_float(cfg, "teacher_threshold", -inf, inf, low_open=True, high_open=True)
  check_int(cfg, "teacher_deadline", 0)
  check_int(cfg, "teacher_fit_steps", 0)
  for field in ("teacher_raters", "teacher_quantity", "teacher_table", "teacher_labels_file"):
    if not isinstance(getattr(cfg, field), str):
      fail(field, getattr(cfg, field), "must be a string")
  TEACHERS.get(chain[-1]).check_config(cfg)


def make_teacher(cfg, spec: EnvSpec | None = None) -> TeacherProtocol:
  """Build the teacher named by `cfg.teacher` with its `teacher_*` parameters.

  `spec` describes the environment (sizes, metric names, horizon) for teachers that read
  them (without it, `cfg.env` is built to find out); env-dependent parameters (a metric
  name, an observation index, the feature layout of a labels file) are checked here, before
  anything is compiled.
  """
  chain = parse_teacher(cfg.teacher)
  if spec is None:
    spec = env_spec(make_env(cfg.env, cfg.backend), cfg.episode_length, cfg.env)
  teacher = TEACHERS.get(chain[-1]).build(cfg, spec)
  for name in reversed(chain[:-1]):
    teacher = WRAPPER_REGISTRY.get(name).wrap(teacher, cfg)
  check_teacher_protocol(teacher)
  return teacher


def teacher_env_kwargs(cfg) -> dict[str, Any]:
  """Constructor arguments the package env needs to match `cfg.teacher` (e.g. matrix_game's
  number of outcomes); {} for most teachers."""
  return TEACHERS.get(parse_teacher(cfg.teacher)[-1]).env_kwargs(cfg)
