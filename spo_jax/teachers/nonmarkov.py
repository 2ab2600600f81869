"""Non-Markovian teachers: they compare a trajectory-level property of a per-step quantity.

No per-step reward expresses these preferences: each depends on the order of the steps or
on the whole trajectory at once (an extremum, a first-passage time, a spread), so a reward
model r(s, a) summed over time cannot reproduce them, while SPO only needs the comparison.
With q_t the quantity at step t of the T valid steps:

  constraint  lexicographic: a trajectory that never has q_t > threshold beats one that does;
              between two of the same kind the higher return R = sum_t r_t wins (1/2 on a tie)
  peak        the higher max_t q_t wins (1/2 on a tie)
  deadline    tau = the first k in 1..D (steps taken) with q_{k-1} >= threshold, D the
              deadline; a smaller tau wins, one that reaches beats one that does not, and
              neither reaching is a tie
  steady      the lower variance (1/T) sum_t (q_t - mean q)^2 wins (1/2 within a relative
              tolerance); a trajectory of 0 or 1 steps has variance 0, so pick a quantity for
              which steadiness means something (e.g. a velocity), not one that rewards dying

The quantity (`teacher_quantity`) is 'reward', 'action_norm' (||a_t||_2), 'action:<i>'
(entry i of the action, in [-1, 1]), 'obs:<i>' (entry i of the observation after the step)
or a metric name of the env (its `State.metrics` after the step); 'abs:' in front takes the
absolute value. `parse_quantity` also serves the rater utilities of `raters.py`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from spo_jax.errors import ConfigError
from spo_jax.teachers.protocol import EnvSpec, Summary, Teacher, TeacherStep

NONMARKOV_TEACHERS = ("constraint", "peak", "deadline", "steady")
# `Deadline`'s summary["reached"] when the level was not reached (yet): larger than any
# number of steps taken, so "never" loses to any tau. Public so that code reading summaries
# (and tests building them) need not copy the value.
NEVER = 2**30


# -------------------------------------------------------------------------------------
# The per-step quantity
# -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Quantity:
  """One number per step, q_t, read from a `TeacherStep`.

  source: 'reward' (step.reward), 'action_norm' (||step.action||_2), 'action'
  (step.action[index], the env action in [-1, 1]), 'obs' (step.next_obs[index]) or 'metric'
  (step.metrics[name]); absolute: take |q_t|.
  """

  source: str
  name: str = ""
  index: int = 0
  absolute: bool = False

  def __call__(self, step: TeacherStep) -> jax.Array:
    if self.source == "reward":
      q = step.reward
    elif self.source == "action_norm":
      q = jnp.sqrt(jnp.sum(jnp.square(step.action)))
    elif self.source == "action":
      q = step.action[self.index]
    elif self.source == "obs":
      q = step.next_obs[self.index]
    else:
      q = step.metrics[self.name]
    q = jnp.asarray(q, jnp.float32)
    return jnp.abs(q) if self.absolute else q

  def __str__(self) -> str:
    text = {"obs": f"obs:{self.index}", "action": f"action:{self.index}",
            "metric": self.name}.get(self.source, self.source)
    return f"abs:{text}" if self.absolute else text


def allowed_quantities(spec: EnvSpec) -> str:
  """In words: the quantities `parse_quantity` accepts for this environment."""
  if spec.observation_size > 0:
    obs = f"'obs:<i>' with 0 <= i < {spec.observation_size}"
  else:
    obs = "no 'obs:<i>' (the observation size is unknown)"
  if spec.metric_names:
    metrics = f"a metric of '{spec.name}' ({', '.join(spec.metric_names)})"
  else:
    metrics = f"no metric name ('{spec.name}' reports no metrics)"
  action = (f"'action:<i>' with 0 <= i < {spec.action_size}" if spec.action_size > 0
            else "no 'action:<i>' (the action size is unknown)")
  return (f"'reward', 'action_norm', {action}, {obs}, or {metrics}; an 'abs:' prefix takes "
          "the absolute value, e.g. 'abs:reward'")


def parse_quantity(text: str, spec: EnvSpec, *, field: str = "teacher_quantity",
                   where: str = "") -> Quantity:
  """'abs:obs:2' -> Quantity('obs', index=2, absolute=True), checked against `spec`.

  The names 'reward' and 'action_norm' take precedence over a metric of the same name.
  Raises `ConfigError` naming `field` (and `where`, e.g. a file and entry), the value and
  what this environment allows.
  """

  def refuse(reason: str) -> ConfigError:
    return ConfigError(f"config field '{field}'{where}: {text!r} {reason}; allowed for env "
                       f"'{spec.name}': {allowed_quantities(spec)}")

  if not isinstance(text, str):
    raise refuse("is not a quantity name")
  body = text.strip()
  absolute = body.startswith("abs:")
  if absolute:
    body = body[len("abs:"):].strip()
  if body in ("reward", "action_norm"):
    return Quantity(body, absolute=absolute)
  for prefix, size, what in (("obs:", spec.observation_size, "an observation"),
                             ("action:", spec.action_size, "an action")):
    if body.startswith(prefix):
      digits = body[len(prefix):].strip()
      if not digits.isdigit():
        raise refuse(f"needs a non-negative integer index after '{prefix}'")
      index = int(digits)
      if index >= size:
        raise refuse(f"indexes entry {index} of {what} of size {size}")
      return Quantity(prefix[:-1], index=index, absolute=absolute)
  if body in spec.metric_names:
    return Quantity("metric", name=body, absolute=absolute)
  raise refuse("is neither 'reward', 'action_norm', 'action:<i>', 'obs:<i>' nor a metric this "
               "env reports")


def prefer_larger(x: jax.Array, y: jax.Array) -> jax.Array:
  """1 if x > y, 0 if x < y, 1/2 otherwise (a tie, or a nan on either side)."""
  return 0.5 + 0.5 * ((x > y).astype(jnp.float32) - (x < y).astype(jnp.float32))


# -------------------------------------------------------------------------------------
# The teachers
# -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Constraint(Teacher):
  """Lexicographic: first "never violate", then the return.

  violated = any_t q_t > threshold; R = sum_t r_t.
  P(a > b) = 1 if only b violated, 0 if only a violated, else 1 if R_a > R_b, 0 if
  R_a < R_b, 1/2 on a tie. The oracle cannot see a violation that costs no reward.
  """

  quantity: Quantity = Quantity("reward")
  threshold: float = 0.0

  def init(self) -> Summary:
    return {"violated": jnp.zeros((), bool), "return": jnp.zeros(())}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    return {"violated": summary["violated"] | (self.quantity(step) > self.threshold),
            "return": summary["return"] + step.reward}

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    by_return = prefer_larger(a["return"], b["return"])
    return jnp.where(a["violated"] == b["violated"], by_return,
                     jnp.where(b["violated"], 1.0, 0.0))


@dataclasses.dataclass(frozen=True)
class Peak(Teacher):
  """The higher peak wins: P(a > b) = 1 if max_t q^a_t > max_t q^b_t, 0 if <, 1/2 on a tie
  (an empty trajectory has peak -inf)."""

  quantity: Quantity = Quantity("reward")

  def init(self) -> Summary:
    return {"peak": jnp.full((), -jnp.inf)}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    return {"peak": jnp.maximum(summary["peak"], self.quantity(step))}

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    return prefer_larger(a["peak"], b["peak"])


@dataclasses.dataclass(frozen=True)
class Deadline(Teacher):
  """Reach a level in time, the earlier the better.

  tau = min{k in 1..deadline : q_{k-1} >= threshold} (k counts the steps taken, so the
  level read after the first step gives tau = 1), or never. P(a > b) = 1 if tau_a < tau_b,
  0 if tau_a > tau_b, 1/2 when equal; "never" is later than any k, so one that reaches
  beats one that does not and two that never reach tie.
  """

  quantity: Quantity = Quantity("reward")
  threshold: float = 0.0
  deadline: int = 1

  def init(self) -> Summary:
    # Steps are counted here rather than read from step.t, so the summary does not depend
    # on how a caller numbers the steps.
    return {"steps": jnp.zeros((), jnp.int32), "reached": jnp.full((), NEVER, jnp.int32)}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    steps = summary["steps"] + 1
    first = ((summary["reached"] == NEVER) & (self.quantity(step) >= self.threshold)
             & (steps <= self.deadline))
    return {"steps": steps, "reached": jnp.where(first, steps, summary["reached"])}

  @staticmethod
  def reached_in_time(summary: Summary) -> jax.Array:
    """Whether the level was reached within the deadline (same shape as summary["reached"],
    bool); where it was, summary["reached"] is tau, the steps it took."""
    return summary["reached"] < NEVER

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    return prefer_larger(b["reached"], a["reached"])


@dataclasses.dataclass(frozen=True)
class Steady(Teacher):
  """The steadier wins: the lower variance Var(q) = (1/T) sum_t (q_t - mean q)^2 over the T
  valid steps wins; variances within `rtol` of each other (|V_a - V_b| <= rtol max(V_a, V_b))
  tie at 1/2.

  The summary is Welford's running (count, mean, M2 = sum of squared deviations), not
  (count, sum, sum of squares): sum q^2 / T - mean^2 cancels catastrophically in float32
  when the mean is large against the spread (a speed of 5 +- 0.01 over 1000 steps).
  """

  quantity: Quantity = Quantity("reward")
  # Rounding differs with the order of the steps; a few hundred ulps of float32 is a tie.
  rtol: float = 1e-4

  def init(self) -> Summary:
    zero = jnp.zeros(())
    return {"count": zero, "mean": zero, "m2": zero}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    q = self.quantity(step)
    count = summary["count"] + 1.0
    delta = q - summary["mean"]
    mean = summary["mean"] + delta / count
    return {"count": count, "mean": mean, "m2": summary["m2"] + delta * (q - mean)}

  @staticmethod
  def variance(summary: Summary) -> jax.Array:
    return summary["m2"] / jnp.maximum(summary["count"], 1.0)

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    va, vb = self.variance(a), self.variance(b)
    tie = jnp.abs(va - vb) <= self.rtol * jnp.maximum(va, vb)
    return jnp.where(tie, 0.5, prefer_larger(vb, va))


# -------------------------------------------------------------------------------------
# The factory
# -------------------------------------------------------------------------------------

def build_nonmarkov(name: str, cfg, spec: EnvSpec) -> Teacher:
  """The non-Markovian teacher `name` with `cfg.teacher_quantity`, `cfg.teacher_threshold`
  and `cfg.teacher_deadline` (0 = the horizon `spec.episode_length`), checked against the
  env described by `spec`."""
  if name not in NONMARKOV_TEACHERS:
    raise ConfigError(f"unknown non-Markovian teacher {name!r}; known: "
                      f"{', '.join(NONMARKOV_TEACHERS)}")
  quantity = parse_quantity(cfg.teacher_quantity, spec)
  threshold = float(cfg.teacher_threshold)
  if name == "constraint":
    return Constraint(quantity, threshold)
  if name == "peak":
    return Peak(quantity)
  if name == "steady":
    return Steady(quantity)
  deadline = cfg.teacher_deadline or spec.episode_length
  if deadline < 1:
    raise ConfigError(f"config field 'teacher_deadline' = {cfg.teacher_deadline!r} is invalid: "
                      "0 means the horizon, but the horizon is unknown here; give the number "
                      "of steps (>= 1)")
  return Deadline(quantity, threshold, int(deadline))
