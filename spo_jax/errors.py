"""Errors and the field checks that raise them: the ground floor every module may import.

Nothing here imports JAX or another spo_jax module, so config, envs, teachers and reward
sources can all raise the same `ConfigError` without importing each other (`config`
re-exports these names for code written against it).
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
  """A configuration value is invalid. The message names the field and the fix."""


class ProtocolError(ConfigError):
  """An object given as a teacher, reward source or environment lacks a member its protocol
  requires, or has it with the wrong type. One line naming the object and the member; raised
  before anything is compiled."""


class TeacherContractError(ValueError):
  """A teacher breaks the protocol; the message names the rule and the offending pair."""


def fail(field: str, value: Any, allowed: str) -> None:
  """Raise `ConfigError` for config field `field` = `value`, saying what is `allowed`."""
  raise ConfigError(f"config field '{field}' = {value!r} is invalid: {allowed}.")


def check_int(cfg: Any, field: str, low: int, high: int | None = None) -> None:
  """`cfg.field` must be an int (not a bool) in [low, high] (high None: no upper bound)."""
  value = getattr(cfg, field)
  if isinstance(value, bool) or not isinstance(value, int):
    fail(field, value, f"must be an integer >= {low}")
  if value < low or (high is not None and value > high):
    bound = f"between {low} and {high}" if high is not None else f">= {low}"
    fail(field, value, f"must be an integer {bound}")


def check_float(cfg: Any, field: str, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> None:
  """`cfg.field` must be a number (not a bool, not nan) in the interval given."""
  value = getattr(cfg, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    fail(field, value, "must be a number")
  ok_low = value > low if low_open else value >= low
  ok_high = value < high if high_open else value <= high
  if not (ok_low and ok_high) or value != value:
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    fail(field, value, f"must lie in {lo}{low}, {high}{hi}")


def check_choice(cfg: Any, field: str, choices: tuple[str, ...]) -> None:
  """`cfg.field` must be one of `choices`."""
  value = getattr(cfg, field)
  if value not in choices:
    fail(field, value, f"must be one of {list(choices)}")
