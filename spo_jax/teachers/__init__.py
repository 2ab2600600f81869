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

import re
from typing import Any

from spo_jax.config import ConfigError, check_float, check_int, fail
from spo_jax.teachers.protocol import (
  EnvSpec,
  Summary,
  Teacher,
  TeacherContractError,
  TeacherStep,
  env_spec,
  invalid_answer,
  random_steps,
  summarize,
  teacher_abstain,
  validate_teacher,
)
from spo_jax.teachers.returns import (
  BradleyTerry,
  Equal,
  Mistake,
  Myopic,
  Oracle,
  Skip,
  is_return_based,
)

BASE_TEACHERS = ("oracle", "bradley_terry", "intransitive", "constraint", "peak", "deadline",
                 "steady", "matrix_game", "learned")
WRAPPERS = ("mistake", "myopic", "equal", "skip")
# Wrappers that read or redefine the return need a return-based teacher inside them.
_NEEDS_RETURN = ("myopic", "equal", "skip")
_RETURN_BASED = ("oracle", "bradley_terry")

__all__ = [
    "BASE_TEACHERS", "BradleyTerry", "EnvSpec", "Equal", "Mistake", "Myopic", "Oracle", "Skip",
    "Summary", "Teacher", "TeacherContractError", "TeacherStep", "WRAPPERS",
    "check_teacher_config", "check_teacher_name", "env_spec", "invalid_answer",
    "is_return_based", "make_teacher", "parse_teacher", "random_steps", "summarize",
    "teacher_abstain", "validate_teacher",
]

_TOKEN = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$")


def _known() -> str:
  return (f"base teachers {', '.join(BASE_TEACHERS)}; wrappers {', '.join(WRAPPERS)}, "
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
    if name not in BASE_TEACHERS and name not in WRAPPERS:
      raise ConfigError(f"config field 'teacher' = {expression!r}: '{name}' is not a known "
                        f"teacher; known: {_known()} (or pass your own teacher object to "
                        "train(teacher=...))")
    chain.append(name)
    if name in BASE_TEACHERS:
      if inner is not None:
        raise ConfigError(f"config field 'teacher' = {expression!r}: '{name}' is a base teacher "
                          "and wraps nothing; only the wrappers "
                          f"{', '.join(WRAPPERS)} take a teacher in parentheses")
      break
    if inner is None or not inner.strip():
      chain.append("oracle")
      break
    rest = inner
  base = chain[-1]
  for i, name in enumerate(chain[:-1]):
    if name in _NEEDS_RETURN:
      inside = [n for n in chain[i + 1:] if n not in WRAPPERS]
      if base not in _RETURN_BASED:
        raise ConfigError(
            f"config field 'teacher' = {expression!r}: '{name}' reads the return, so it needs a "
            f"return-based teacher inside ({', '.join(_RETURN_BASED)}), not {inside[0]!r}")
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
  if chain[-1] == "learned" and cfg.teacher_fit_steps < 1:
    fail("teacher_fit_steps", cfg.teacher_fit_steps,
         "the 'learned' teacher must be fit: use at least 1 step (2000 is the default)")
  if chain[-1] == "learned" and not cfg.teacher_labels_file:
    fail("teacher_labels_file", cfg.teacher_labels_file,
         "the 'learned' teacher needs a labels file (.npz with features_a, features_b, labels)")


def _build_base(name: str, cfg, spec: EnvSpec) -> Any:
  if name == "oracle":
    return Oracle()
  if name == "bradley_terry":
    return BradleyTerry(beta=cfg.teacher_beta, scale=cfg.teacher_scale)
  if name == "intransitive":
    from spo_jax.teachers.raters import build_intransitive

    return build_intransitive(cfg, spec)
  if name in ("constraint", "peak", "deadline", "steady"):
    from spo_jax.teachers.nonmarkov import build_nonmarkov

    return build_nonmarkov(name, cfg, spec)
  if name == "matrix_game":
    from spo_jax.teachers.matrix_game import build_matrix_game

    return build_matrix_game(cfg, spec)
  if name == "learned":
    from spo_jax.teachers.learned import build_learned

    return build_learned(cfg, spec)
  raise ConfigError(f"unknown base teacher {name!r}; known: {_known()}")


def make_teacher(cfg, spec: EnvSpec | None = None) -> Any:
  """Build the teacher named by `cfg.teacher` with its `teacher_*` parameters.

  `spec` describes the environment (sizes, metric names, horizon) for teachers that read
  them (without it, `cfg.env` is built to find out); env-dependent parameters (a metric
  name, an observation index, the feature layout of a labels file) are checked here, before
  anything is compiled.
  """
  chain = parse_teacher(cfg.teacher)
  if spec is None:
    from spo_jax.envs import make_env

    spec = env_spec(make_env(cfg.env, cfg.backend), cfg.episode_length, cfg.env)
  teacher = _build_base(chain[-1], cfg, spec)
  for name in reversed(chain[:-1]):
    if name == "mistake":
      teacher = Mistake(teacher, cfg.teacher_epsilon)
    elif name == "myopic":
      teacher = Myopic(teacher, cfg.teacher_gamma)
    elif name == "equal":
      teacher = Equal(teacher, cfg.teacher_tie_margin)
    elif name == "skip":
      teacher = Skip(teacher, cfg.teacher_skip_threshold)
  return teacher
