"""The Minimax Winner of a finite preference matrix, and the exploitability of a mixed policy.

With P[i, j] = P(outcome i preferred to outcome j) and P + P^T = 1, the game with payoff
A = P - 1/2 is symmetric and zero-sum (A = -A^T), so its value is 0. A Minimax Winner (MW,
also called the von Neumann winner) is a mixed strategy pi with

    min_j sum_i pi_i A[i, j] >= 0,   i.e.   P(j beats pi) <= 1/2 for every pure j.

It is found by the linear program  max v  s.t.  A^T pi >= v 1,  1^T pi = 1,  pi >= 0
(Swamy et al. 2024, Sec. 3; Kreweras 1965; Fishburn 1984). The exploitability of pi is how
much the best pure response beats it:  max_j P(j beats pi) - 1/2 = max_j (P pi)_j - 1/2,
which is 0 exactly at a Minimax Winner and at most 1/2.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from spo_jax.errors import ConfigError


def check_preference_matrix(pref, *, name: str = "preference matrix",
                            atol: float = 1e-6) -> np.ndarray:
  """Return `pref` as a float64 array after checking it is a square K x K matrix (K >= 2) of
  probabilities with P + P^T = 1; raise `ConfigError` naming the first offending entry."""
  pref = np.asarray(pref, dtype=np.float64)
  if pref.ndim != 2 or pref.shape[0] != pref.shape[1] or pref.shape[0] < 2:
    raise ConfigError(f"{name}: must be a square K x K matrix with K >= 2, got shape "
                      f"{pref.shape}")
  bad = ~np.isfinite(pref)
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise ConfigError(f"{name}: entry ({i}, {j}) = {pref[i, j]} is not a finite number")
  bad = (pref < -atol) | (pref > 1 + atol)
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise ConfigError(f"{name}: entry ({i}, {j}) = {pref[i, j]:g} lies outside [0, 1]; "
                      "P[i, j] is the probability that i is preferred to j")
  bad = np.abs(pref + pref.T - 1.0) > atol
  if bad.any():
    i, j = np.argwhere(bad)[0]
    if i == j:
      raise ConfigError(f"{name}: diagonal entry ({i}, {i}) = {pref[i, i]:g} must be 1/2 "
                        "(a tie with itself)")
    raise ConfigError(
        f"{name}: entries ({i}, {j}) = {pref[i, j]:g} and ({j}, {i}) = {pref[j, i]:g} sum to "
        f"{pref[i, j] + pref[j, i]:g}; P[i, j] + P[j, i] must be 1 (antisymmetry)")
  return pref


def minimax_winner(pref) -> np.ndarray:
  """A Minimax Winner pi [K] of the preference matrix `pref` [K, K] (solved by `linprog`).

  Variables x = (pi_1..pi_K, v); minimize -v subject to v - sum_i pi_i A[i, j] <= 0 for all j,
  sum_i pi_i = 1, pi >= 0. When the MW is not unique, one of them is returned.
  """
  pref = check_preference_matrix(pref)
  size = pref.shape[0]
  payoff = pref - 0.5
  cost = np.zeros(size + 1)
  cost[-1] = -1.0
  a_ub = np.concatenate([-payoff.T, np.ones((size, 1))], axis=1)
  a_eq = np.concatenate([np.ones((1, size)), np.zeros((1, 1))], axis=1)
  bounds = [(0.0, None)] * size + [(None, None)]
  result = linprog(cost, A_ub=a_ub, b_ub=np.zeros(size), A_eq=a_eq, b_eq=[1.0], bounds=bounds,
                   method="highs")
  if not result.success:  # pragma: no cover - the LP is always feasible and bounded
    raise RuntimeError(f"linprog failed: {result.message}")
  pi = np.clip(result.x[:size], 0.0, None)
  return pi / pi.sum()


def exploitability(pref, policy) -> float:
  """max_j P(j beats policy) - 1/2 = max_j sum_i policy_i P[j, i] - 1/2, in [0, 1/2] for a
  valid preference matrix; 0 exactly at a Minimax Winner."""
  pref = check_preference_matrix(pref)
  policy = np.asarray(policy, dtype=np.float64)
  if policy.shape != (pref.shape[0],) or np.any(policy < -1e-9) or abs(policy.sum() - 1) > 1e-6:
    raise ValueError(f"policy must be a probability vector of length {pref.shape[0]}, "
                     f"got {policy}")
  return float(np.max(pref @ policy) - 0.5)
