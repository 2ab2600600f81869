"""The matrix-game teacher: preferences given by a payoff table over a finite set of outcomes.

Each trajectory ends in one of K outcomes (the env metric 'outcome', an index read at the
last valid step), and

  P(a > b) = T[o_a, o_b],   T[i, j] = P(outcome i preferred to outcome j),

with T + T^T = 1 (so T[i, i] = 1/2). SPO's game then is the symmetric zero-sum matrix game
with payoff A = T - 1/2, whose Minimax Winner (MW) p* maximises min_j sum_i p_i A[i, j]
(value 0): a linear program, solved by `spo_jax.minimax.minimax_winner`. This makes exact MW checks
possible: on the 'matrix_game' env (one step, action binned into outcomes) the time-averaged
SPO policy should approach p*.

Presets (outcomes 0, 1, 2):
  rps          rock, paper, scissors: 1 win, 0 loss, 1/2 tie. MW uniform (1/3, 1/3, 1/3).
  cycle3       T = [[.5, .9, .2], [.1, .5, .7], [.8, .3, .5]]: 0 > 1 > 2 > 0 with unequal
               margins. With A = [[0, a, -b], [-a, 0, c], [b, -c, 0]], a = .4, b = .3,
               c = .2, p^T A = 0 at p ∝ (c, b, a) (check: column 0 gives -a b + b a = 0,
               column 1 c a - a c = 0, column 2 -c b + b c = 0), so
               MW = (2/9, 3/9, 4/9): the outcome with the largest win (0 beats 1 at .9)
               is played least, because the outcome it beats is itself played little.
  transitive3  T = [[.5, .7, .9], [.3, .5, .7], [.1, .3, .5]]: 0 > 1 > 2, a Condorcet
               winner; MW = (1, 0, 0).

The number of outcomes the env produces must be K: the registered 'matrix_game' env has
3; `EnvSpec` does not carry it, so `PayoffTable.check_env(env)` compares it with an env's
`num_outcomes` where the env is at hand. An outcome index outside 0..K-1 is clipped into it.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax.errors import ConfigError
from spo_jax.minimax import check_preference_matrix, minimax_winner  # noqa: F401
from spo_jax.teachers.protocol import EnvSpec, Summary, Teacher, TeacherStep

TABLES: dict[str, tuple[tuple[float, ...], ...]] = {
    "rps": ((0.5, 0.0, 1.0), (1.0, 0.5, 0.0), (0.0, 1.0, 0.5)),  # rock, paper, scissors
    "cycle3": ((0.5, 0.9, 0.2), (0.1, 0.5, 0.7), (0.8, 0.3, 0.5)),
    "transitive3": ((0.5, 0.7, 0.9), (0.3, 0.5, 0.7), (0.1, 0.3, 0.5)),
}
MINIMAX_WINNERS: dict[str, tuple[float, ...]] = {
    "rps": (1 / 3, 1 / 3, 1 / 3),
    "cycle3": (2 / 9, 3 / 9, 4 / 9),
    "transitive3": (1.0, 0.0, 0.0),
}
OUTCOME_METRIC = "outcome"
# T + T^T = 1 must hold to this precision (tables typed with 3-4 decimals, float32 files).
_ANTISYMMETRY_ATOL = 1e-6


@dataclasses.dataclass(frozen=True)
class PayoffTable(Teacher):
  """P(a > b) = table[o_a, o_b], with o the 'outcome' metric at the last valid step.

  table: K rows of K floats (tuples, so the teacher stays hashable and static under jit).
  """

  table: tuple[tuple[float, ...], ...]

  @property
  def num_outcomes(self) -> int:
    return len(self.table)

  def init(self) -> Summary:
    return {"outcome": jnp.zeros((), jnp.int32)}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    del summary  # the last valid step decides
    outcome = jnp.round(jnp.asarray(step.metrics[OUTCOME_METRIC], jnp.float32))
    return {"outcome": jnp.clip(outcome, 0, self.num_outcomes - 1).astype(jnp.int32)}

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    return jnp.asarray(self.table, jnp.float32)[a["outcome"], b["outcome"]]

  def check_env(self, env) -> None:
    """Raise `ConfigError` if `env` says it has a number of outcomes other than K."""
    num = getattr(env, "num_outcomes", None)
    if num is not None and num != self.num_outcomes:
      raise ConfigError(
          f"config field 'teacher_table': the table has {self.num_outcomes} outcomes but the "
          f"env {type(env).__name__} produces {num}; use a {num} x {num} table or "
          f"MatrixGame(num_outcomes={self.num_outcomes})")


# -------------------------------------------------------------------------------------
# Tables: loading, checking, the Minimax Winner
# -------------------------------------------------------------------------------------

def _refuse(value: str, reason: str) -> ConfigError:
  return ConfigError(f"config field 'teacher_table' = {value!r}: {reason}")


def load_table(value: str) -> np.ndarray:
  """A preset name ('rps', 'cycle3', 'transitive3') or a .json (a list of rows), .npy or
  .csv file -> float64 array, not yet checked."""
  if value in TABLES:
    return np.asarray(TABLES[value], np.float64)
  ext = os.path.splitext(value)[1].lower()
  if ext not in (".json", ".npy", ".csv"):
    raise _refuse(value, f"is neither a preset ({', '.join(TABLES)}) nor a .json, .npy or "
                  ".csv file")
  if not os.path.isfile(value):
    raise _refuse(value, f"no such file; give a preset ({', '.join(TABLES)}) or the path of a "
                  ".json, .npy or .csv file holding a square matrix")
  try:
    if ext == ".json":
      with open(value) as file:
        data = json.load(file)
      table = np.asarray(data, np.float64)
    elif ext == ".npy":
      table = np.load(value, allow_pickle=False).astype(np.float64)
    else:
      table = np.loadtxt(value, delimiter=",", ndmin=2, dtype=np.float64)
  except json.JSONDecodeError as error:
    raise _refuse(value, f"is not valid JSON: line {error.lineno}, column {error.colno}: "
                  f"{error.msg}") from error
  except (ValueError, TypeError, OSError) as error:
    raise _refuse(value, f"cannot be read as a matrix of numbers ({error})") from error
  return table


def check_table(table, value: str = "") -> np.ndarray:
  """Refuse a table that is not a square matrix of probabilities with T + T^T = 1, naming
  the offending entry (i, j) and its value (`spo_jax.minimax.check_preference_matrix`)."""
  return check_preference_matrix(table, name=f"config field 'teacher_table' = {value!r}",
                                 atol=_ANTISYMMETRY_ATOL)


def matrix_game_env_kwargs(cfg) -> dict[str, int]:
  """The `matrix_game` env's constructor arguments for this teacher: as many actions as the
  payoff table named by `cfg.teacher_table` has outcomes."""
  value = cfg.teacher_table
  return {"num_outcomes": len(check_table(load_table(value), value))}


def build_matrix_game(cfg, spec: EnvSpec) -> PayoffTable:
  """The payoff table named by `cfg.teacher_table`, for an env that reports 'outcome'."""
  if OUTCOME_METRIC not in spec.metric_names:
    metrics = ", ".join(spec.metric_names) or "none"
    raise ConfigError(
        f"config field 'env' = {spec.name!r}: the matrix_game teacher reads each trajectory's "
        f"outcome from the env metric '{OUTCOME_METRIC}', which this env does not report (its "
        f"metrics: {metrics}); use env 'matrix_game', or an env whose State.metrics has "
        f"'{OUTCOME_METRIC}' (an index 0..K-1)")
  value = cfg.teacher_table
  table = check_table(load_table(value), value)
  return PayoffTable(tuple(tuple(float(x) for x in row) for row in table))
