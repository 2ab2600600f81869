"""The intransitive teacher: a majority vote of K raters who weigh the same terms differently.

Rater k scores a trajectory by a linear utility of per-step quantities summed over its T
valid steps, U_k(xi) = sum_m W[k, m] S_m(xi) with S_m(xi) = sum_t q_{m,t}, and

  votes(a, b) = sum_k [U_k(a) > U_k(b)] + 1/2 [U_k(a) = U_k(b)]
  P(a > b)    = 1 if votes > K/2, 0 if votes < K/2, 1/2 if votes = K/2.

Each rater alone is transitive, but the majority need not be (Condorcet's paradox): no
reward explains it, and the Minimax Winner can be a mixture.

Presets (`teacher_raters = ''`) use three criteria per environment, built from the env's own
reward terms in `State.metrics` (speed, survival, effort for locomotion), each in a unit
where higher is better: c_m = q_m / scale_m. Rater k of K weighs criterion m (m = 0, 1, 2) by

  w_k(m) = 1 + cos(2 pi m / 3 - 2 pi k / K - pi / 6) / sqrt(3),

which for K = 3 gives the cyclic permutations of (3/2, 1, 1/2):
  rater 0: (3/2, 1, 1/2)   rater 1: (1/2, 3/2, 1)   rater 2: (1, 1/2, 3/2).
For larger K (any odd K; extra raters are derived, never refused) the raters' emphases are
spread evenly around the same circle, rater 0 keeping (3/2, 1, 1/2); the majority can still
cycle (a random search over triples of criteria vectors finds cycles for K = 5, 7, 9).
Every weight is positive (>= 1 - 1/sqrt(3) = 0.42), so all raters agree on which direction
is better for each criterion and differ only in emphasis; the weights average to exactly 1
over the raters, so the mean utility is the sum of the criteria (for ant, hopper, walker2d and
humanoid that sum is the env's own return: their criteria are all of its reward terms).

Why cycles arise: with 3 criteria and K = 3 the weight matrix W is invertible, so some
three trajectories give the raters any utilities at all, in particular the Condorcet
profile where rater 0 ranks (x, y, z), rater 1 (y, z, x) and rater 2 (z, x, y); each pair
is then won 2 to 1 and the majority cycles x > y > z > x. Trajectories that each excel at
one criterion (x fast, y enduring, z frugal) do it: with criteria x = (1, 0, 0), y = (0, 1,
0), z = (0, 0, 1) the utilities are rater 0: (3/2, 1, 1/2), rater 1: (1/2, 3/2, 1), rater
2: (1, 1/2, 3/2). Two criteria would not be enough: with positive weights on two criteria
the raters who prefer a to b form a contiguous range of emphasis, so the median rater
decides every pair and the majority is transitive; hence the third criterion even for
environments with fewer reward terms (halfcheetah's posture, point_reach's wall margin).

Raters who disagree on direction (`teacher_raters = 'spatial'`): on an env that moves in the
plane (`SPATIAL_PLANES`: point_reach, whose point moves by 0.1 * action), rater k of K wants
the agent to travel as far as possible in the direction at angle 2 pi k / K,

  U_k(xi) = cos(2 pi k / K) sum_t a_t,x + sin(2 pi k / K) sum_t a_t,y

(the sums of the actions are the distance travelled along each axis, over 0.1, while the
episode runs). The weights sum to zero over the raters, so the average rater is indifferent
and no reward explains the majority. For K = 3 the directions are 120 degrees apart, and a
beats b exactly when the difference d = S(a) - S(b) lies in one of three 60-degree sectors
(30-90, 150-210 and 270-330 degrees), where two of the three raters gain; three trajectories
whose differences point into those three sectors in turn cycle. Unlike the presets above,
these raters keep disagreeing when every episode lasts to the horizon. Every single
trajectory is beaten by those that travel 60 degrees around it, so the Minimax Winner is a
mixture over directions; a policy that always travels one way is exploitable.

A utility file (`teacher_raters = 'raters.json'`) sets W directly:
  {"metrics": ["reward_forward", "reward_ctrl", "abs:obs:1"], "weights": [[...], ...]}
with K = teacher_num_raters rows of len(metrics) weights; a metric is any quantity of
`nonmarkov.parse_quantity` ('reward', 'action_norm', 'action:<i>', 'obs:<i>', an env metric,
'abs:...').
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp

from spo_jax.errors import ConfigError, fail
from spo_jax.teachers.nonmarkov import (
    Quantity,
    parse_quantity,
    prefer_larger,
)
from spo_jax.teachers.protocol import EnvSpec, Summary, Teacher, TeacherStep


class Criterion(NamedTuple):
  """One preset criterion: c_t = quantity_t / scale (scale < 0 turns a cost into a merit)."""

  label: str  # what a rater who emphasises it cares about
  quantity: str  # a `parse_quantity` name
  scale: float  # per-step unit; 1 keeps an env reward term in the env's own units


# Locomotion criteria are the env's reward terms as they enter its reward (scale 1), so the
# sum of the criteria is the env's return. ant's `reward_contact` is left out: Brax computes
# its contact cost as a constant 0. Criteria that are not reward terms get a scale that
# makes one step's value O(1): an angle over the angle at which the episode ends, a position
# over the wall.
PRESETS: dict[str, tuple[Criterion, Criterion, Criterion]] = {
    "ant": (Criterion("speed", "reward_forward", 1.0),
            Criterion("survival", "reward_survive", 1.0),
            Criterion("effort", "reward_ctrl", 1.0)),
    "halfcheetah": (Criterion("speed", "reward_run", 1.0),
                    Criterion("effort", "reward_ctrl", 1.0),
                    # obs[1] is the torso pitch (rooty) in radians: a rater who minds the
                    # well-known exploit of running on the back.
                    Criterion("posture", "abs:obs:1", -1.0)),
    "hopper": (Criterion("speed", "reward_forward", 1.0),
               Criterion("survival", "reward_healthy", 1.0),
               Criterion("effort", "reward_ctrl", 1.0)),
    "walker2d": (Criterion("speed", "reward_forward", 1.0),
                 Criterion("survival", "reward_healthy", 1.0),
                 Criterion("effort", "reward_ctrl", 1.0)),
    "humanoid": (Criterion("speed", "reward_linvel", 1.0),
                 Criterion("survival", "reward_alive", 1.0),
                 Criterion("effort", "reward_quadctrl", 1.0)),
    # Brax's inverted_pendulum reports no metrics: reward is 1 per step alive, obs[1] is the
    # hinge angle, and the episode ends at |angle| > 0.2.
    "inverted_pendulum": (Criterion("survival", "reward", 1.0),
                          Criterion("effort", "action_norm", -1.0),
                          Criterion("upright", "abs:obs:1", -0.2)),
    # The package's cart-pole: ends at |angle| > 0.2 or |position| > 2.4.
    "balance": (Criterion("survival", "reward", 1.0),
                Criterion("upright", "abs:angle", -0.2),
                Criterion("centred", "abs:position", -2.4)),
    # reward = -distance; the episode ends when the point leaves [-2, 2]^2.
    "point_reach": (Criterion("closeness", "distance", -1.0),
                    Criterion("effort", "action_norm", -1.0),
                    Criterion("wall margin", "abs:obs:0", -2.0)),
}


# Envs that move in a plane, for `teacher_raters = 'spatial'`: the two per-step quantities
# (x, y) of the motion whose sums over the episode the raters weigh. point_reach moves by
# 0.1 * action, so the sums of the actions are the distance travelled along each axis (not
# the position, whose sums are dominated by the random start: against them a policy that
# travels steadily in one direction beats a random one in at most 53% of pairs;
# scripts/spatial_raters_check.py).
SPATIAL_PLANES: dict[str, tuple[str, str]] = {"point_reach": ("action:0", "action:1")}


def spatial_weights(num_raters: int) -> list[list[float]]:
  """[K, 2]: rater k's direction (cos 2 pi k/K, sin 2 pi k/K) in the plane; rounded so that
  K = 3 gives exactly (1, 0), (-1/2, 0.866...), (-1/2, -0.866...)."""
  return [[round(math.cos(2 * math.pi * k / num_raters), 12),
           round(math.sin(2 * math.pi * k / num_raters), 12)] for k in range(num_raters)]


def preset_weights(num_raters: int, num_criteria: int = 3) -> list[list[float]]:
  """[K, 3] emphasis of rater k on criterion m: 1 + cos(2 pi m/3 - 2 pi k/K - pi/6)/sqrt(3).

  K = 3 gives the cyclic permutations of (3/2, 1, 1/2); see the module docstring.
  """
  # Rounded so that K = 3 gives exactly 3/2, 1 and 1/2 rather than 0.49999999999999994.
  return [[round(1.0 + math.cos(2 * math.pi * (m / num_criteria - k / num_raters) - math.pi / 6)
                 / math.sqrt(3.0), 12) for m in range(num_criteria)] for k in range(num_raters)]


@dataclasses.dataclass(frozen=True)
class MajorityOfRaters(Teacher):
  """Majority vote of K = len(weights) raters with utilities U = W S (see the module).

  quantities: the M per-step quantities summed into S [M]; weights: W as K rows of M
  floats (tuples, so the teacher stays hashable and static under jit).
  """

  quantities: tuple[Quantity, ...]
  weights: tuple[tuple[float, ...], ...]

  @property
  def num_raters(self) -> int:
    return len(self.weights)

  def init(self) -> Summary:
    return {"sums": jnp.zeros((len(self.quantities),))}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    q = jnp.stack([quantity(step) for quantity in self.quantities])
    return {"sums": summary["sums"] + q}

  def utilities(self, summary: Summary) -> jax.Array:
    """[K]: U_k = sum_m W[k, m] S_m."""
    return jnp.asarray(self.weights, jnp.float32) @ summary["sums"]

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    votes = jnp.sum(prefer_larger(self.utilities(a), self.utilities(b)))
    half = 0.5 * self.num_raters
    return jnp.where(votes > half, 1.0, jnp.where(votes < half, 0.0, 0.5))


# -------------------------------------------------------------------------------------
# The factory
# -------------------------------------------------------------------------------------

def _from_preset(cfg, spec: EnvSpec) -> tuple[tuple[Quantity, ...], list[list[float]]]:
  if spec.name not in PRESETS:
    fail("teacher_raters", cfg.teacher_raters,
         f"there is no rater preset for env '{spec.name}' (presets: "
         f"{', '.join(sorted(PRESETS))}); give a JSON file "
         '{"metrics": [names], "weights": [[K x M]]}')
  criteria = PRESETS[spec.name]
  where = f" (the '{spec.name}' preset)"
  quantities = tuple(parse_quantity(c.quantity, spec, field="teacher_raters", where=where)
                     for c in criteria)
  emphasis = preset_weights(cfg.teacher_num_raters, len(criteria))
  weights = [[w / c.scale for w, c in zip(row, criteria, strict=True)] for row in emphasis]
  return quantities, weights


def _spatial(cfg, spec: EnvSpec) -> tuple[tuple[Quantity, ...], list[list[float]]]:
  if spec.name not in SPATIAL_PLANES:
    fail("teacher_raters", cfg.teacher_raters,
         f"the 'spatial' raters need motion in the plane, which env '{spec.name}' does "
         f"not name (envs with it: {', '.join(sorted(SPATIAL_PLANES))}); give '' for the "
         "env's preset raters or a JSON file")
  where = f" (the 'spatial' raters of '{spec.name}')"
  quantities = tuple(parse_quantity(name, spec, field="teacher_raters", where=where)
                     for name in SPATIAL_PLANES[spec.name])
  return quantities, spatial_weights(cfg.teacher_num_raters)


def _number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def load_raters(path: str, num_raters: int) -> tuple[list[str], list[list[float]]]:
  """Read a utility file {"metrics": [M names], "weights": [K rows of M numbers]}.

  Raises `ConfigError` naming `teacher_raters`, the file and the line (syntax) or the
  field (content) at fault.
  """

  def refuse(reason: str) -> ConfigError:
    return ConfigError(f"config field 'teacher_raters' = {path!r}: {reason}")

  if not os.path.isfile(path):
    raise refuse("no such file; give '' for the env's preset raters or a JSON file "
                 '{"metrics": [names], "weights": [[K x M]]}')
  try:
    with open(path) as file:
      data = json.load(file)
  except json.JSONDecodeError as error:
    raise refuse(f"is not valid JSON: line {error.lineno}, column {error.colno}: "
                 f"{error.msg}") from error
  except (OSError, UnicodeDecodeError) as error:
    raise refuse(f"cannot be read ({error})") from error
  if not isinstance(data, dict):
    raise refuse('must hold a JSON object {"metrics": [...], "weights": [[...]]}, got '
                 f"a {type(data).__name__}")
  unknown = sorted(set(data) - {"metrics", "weights"})
  if unknown:
    raise refuse(f"unknown field(s) {unknown}; the fields are 'metrics' and 'weights'")
  for name in ("metrics", "weights"):
    if name not in data:
      raise refuse(f"field '{name}' is missing")
  metrics = data["metrics"]
  if (not isinstance(metrics, list) or not metrics
      or not all(isinstance(m, str) for m in metrics)):
    raise refuse(f"field 'metrics' must be a non-empty list of names, got {metrics!r}")
  weights = data["weights"]
  shape = (f"K x M = {num_raters} x {len(metrics)} (K = teacher_num_raters, M = "
           "len(metrics))")
  if not isinstance(weights, list) or len(weights) != num_raters:
    rows = f"{len(weights)} rows" if isinstance(weights, list) else repr(weights)
    raise refuse(f"field 'weights' must be {shape}, got {rows}")
  for k, row in enumerate(weights):
    if not isinstance(row, list) or len(row) != len(metrics):
      got = f"{len(row)} entries" if isinstance(row, list) else repr(row)
      raise refuse(f"field 'weights[{k}]' must have {len(metrics)} entries (weights is "
                   f"{shape}), got {got}")
    for m, value in enumerate(row):
      if not _number(value):
        raise refuse(f"field 'weights[{k}][{m}]' = {value!r} is not a finite number")
  return metrics, [[float(v) for v in row] for row in weights]


def _from_file(cfg, spec: EnvSpec) -> tuple[tuple[Quantity, ...], list[list[float]]]:
  path = cfg.teacher_raters
  names, weights = load_raters(path, cfg.teacher_num_raters)
  quantities = tuple(
      parse_quantity(name, spec, field="teacher_raters", where=f" (file {path}, metrics[{i}])")
      for i, name in enumerate(names))
  return quantities, weights


def build_intransitive(cfg, spec: EnvSpec) -> MajorityOfRaters:
  """K = `cfg.teacher_num_raters` raters from the env's preset (`cfg.teacher_raters` = ''),
  the raters who disagree on direction ('spatial') or a utility file, every name checked
  against the env described by `spec`."""
  num = cfg.teacher_num_raters
  if isinstance(num, bool) or not isinstance(num, int) or num < 1 or num % 2 == 0:
    fail("teacher_num_raters", num, "a majority vote needs an odd number of raters (3, 5, ...)")
  if cfg.teacher_raters == "spatial":
    quantities, weights = _spatial(cfg, spec)
  elif cfg.teacher_raters:
    quantities, weights = _from_file(cfg, spec)
  else:
    quantities, weights = _from_preset(cfg, spec)
  return MajorityOfRaters(quantities, tuple(tuple(row) for row in weights))
