"""Return-based teachers and the wrappers that compose with them (TEACHERS.md, B-Pref).

A *return-based* teacher keeps the trajectory's return in `summary["return"]` and compares
through it. Wrappers share their inner teacher's summary, so that `myopic` can redefine how
the return is accumulated for everything inside it, and `equal`/`skip` can read it:

  oracle          P = 1 if R_a > R_b, 0 if R_a < R_b, 1/2 on a tie
  bradley_terry   P = sigmoid(beta (R_a - R_b) / scale)
  mistake(T)      P = (1 - eps) P_T + eps (1 - P_T)           (any inner teacher T)
  myopic(T)       R = sum_t gamma^(T-1-t) r_t: recent steps weigh most (B-Pref; the `imitation`
                  library discounts the other way, from the start)
  equal(T)        P = 1/2 when |R_a - R_b| < margin, else P_T
  skip(T)         abstain when max(R_a, R_b) < threshold, else T

With sampled labels, `mistake` is the same as flipping each Bernoulli(P_T) label with
probability eps: Bernoulli((1 - eps) P + eps (1 - P)) has exactly that law.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from spo_jax.teachers.protocol import (
    Summary,
    Teacher,
    TeacherProtocol,
    TeacherStep,
    hook,
    teacher_abstain,
)


def is_return_based(teacher: Any) -> bool:
  """Whether `teacher` compares environment returns (the `return_based` hook)."""
  return bool(hook(teacher, "return_based"))


@dataclasses.dataclass(frozen=True)
class Oracle(Teacher):
  """'Maximum reward' teacher: P(a > b) = 1 if R_a > R_b, 0 if R_a < R_b, 1/2 on a tie,
  with R the environment return over valid steps. Its unique Copeland winner is the
  reward-optimal policy."""

  return_based = True

  def init(self) -> Summary:
    return {"return": jnp.zeros(())}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    return {**summary, "return": summary["return"] + step.reward}

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    return 0.5 * (1.0 + jnp.sign(a["return"] - b["return"]))


@dataclasses.dataclass(frozen=True)
class BradleyTerry(Oracle):
  """Stochastic teacher: P(a > b) = sigmoid(beta * (R_a - R_b) / scale).

  `scale` sets which return difference counts as large: with scale = 1 a difference of a few
  units of return is already near-deterministic, so for returns in the hundreds choose a
  scale of the order of the spread of returns (e.g. 100 for inverted_pendulum)."""

  beta: float = 1.0
  scale: float = 1.0

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    return jax.nn.sigmoid(self.beta * (a["return"] - b["return"]) / self.scale)


@dataclasses.dataclass(frozen=True)
class _Wrapper(Teacher):
  """Delegates everything to `inner`; a wrapper overrides only what it changes. Wrappers
  share the inner teacher's summary, so a chain has one summary, not one per layer."""

  inner: TeacherProtocol = dataclasses.field(default_factory=Oracle)

  @property
  def return_based(self) -> bool:
    return is_return_based(self.inner)

  def init(self) -> Summary:
    return self.inner.init()

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    return self.inner.update(summary, step)

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    return self.inner.compare(a, b, key)

  def abstain(self, a: Summary, b: Summary) -> jax.Array:
    return teacher_abstain(self.inner, a, b)


@dataclasses.dataclass(frozen=True)
class Mistake(_Wrapper):
  """Answers the wrong way with probability epsilon: P' = (1 - eps) P + eps (1 - P)."""

  epsilon: float = 0.1

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    p = self.inner.compare(a, b, key)
    return (1.0 - self.epsilon) * p + self.epsilon * (1.0 - p)


@dataclasses.dataclass(frozen=True)
class Myopic(_Wrapper):
  """Discounts the past: the return compared is R = sum_t gamma^(T-1-t) r_t, accumulated as
  R <- gamma R + r_t, so the last step weighs 1 and the first gamma^(T-1). The inner teacher
  must be return-based; everything inside it sees this return."""

  gamma: float = 0.99

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    new = self.inner.update(summary, step)
    return {**new, "return": self.gamma * summary["return"] + step.reward}


@dataclasses.dataclass(frozen=True)
class Equal(_Wrapper):
  """Cannot tell close returns apart: P = 1/2 when |R_a - R_b| < margin, else the inner P."""

  margin: float = 1.0

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    close = jnp.abs(a["return"] - b["return"]) < self.margin
    return jnp.where(close, 0.5, self.inner.compare(a, b, key))


@dataclasses.dataclass(frozen=True)
class Skip(_Wrapper):
  """Gives no label when both trajectories are poor: abstains when max(R_a, R_b) < threshold.
  Abstained pairs leave the win-rate average and are not counted as labels."""

  threshold: float = 0.0

  def abstain(self, a: Summary, b: Summary) -> jax.Array:
    poor = jnp.maximum(a["return"], b["return"]) < self.threshold
    return poor | teacher_abstain(self.inner, a, b)
