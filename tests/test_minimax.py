"""The exact Minimax Winner and exploitability, on games whose answers are known by hand."""

import numpy as np
import pytest

from spo_jax.config import ConfigError
from spo_jax.minimax import check_preference_matrix, exploitability, minimax_winner

RPS = np.array([[0.5, 1.0, 0.0],
                [0.0, 0.5, 1.0],
                [1.0, 0.0, 0.5]])
# A non-uniform cycle: 0 beats 1 by a = 0.4, 1 beats 2 by c = 0.2, 2 beats 0 by b = 0.3
# (P = 1/2 + margin). With payoff A = P - 1/2 = [[0, a, -b], [-a, 0, c], [b, -c, 0]], the
# strategy pi = (c, b, a) / (a + b + c) makes every column sum zero:
#   column 0: pi_1 (-a) + pi_2 b = (-b a + a b) / s = 0
#   column 1: pi_0 a + pi_2 (-c) = (c a - a c) / s = 0
#   column 2: pi_0 (-b) + pi_1 c = (-c b + b c) / s = 0
# so the MW is (0.2, 0.3, 0.4) / 0.9 = (2/9, 1/3, 4/9): the outcome that beats the strong
# outcome 0 (outcome 2) gets the most weight.
CYCLE = np.array([[0.5, 0.9, 0.2],
                  [0.1, 0.5, 0.7],
                  [0.8, 0.3, 0.5]])
TRANSITIVE = np.array([[0.5, 0.8, 0.9],
                       [0.2, 0.5, 0.6],
                       [0.1, 0.4, 0.5]])


def test_rock_paper_scissors_gives_the_uniform_mix():
  np.testing.assert_allclose(minimax_winner(RPS), [1 / 3, 1 / 3, 1 / 3], atol=1e-8)
  # Pure rock is beaten by paper with probability 1: exploitability 1 - 1/2.
  assert exploitability(RPS, [1.0, 0.0, 0.0]) == pytest.approx(0.5)
  assert exploitability(RPS, [1 / 3, 1 / 3, 1 / 3]) == pytest.approx(0.0, abs=1e-12)


def test_non_uniform_cycle_matches_the_hand_solution():
  np.testing.assert_allclose(minimax_winner(CYCLE), [2 / 9, 1 / 3, 4 / 9], atol=1e-8)
  # The uniform mix is exploitable: P(0 beats uniform) = (0.5 + 0.9 + 0.2) / 3 = 0.533...,
  # P(1 beats it) = 1.3 / 3 = 0.433, P(2 beats it) = 1.6 / 3 = 0.533; max - 1/2 = 1/30.
  assert exploitability(CYCLE, [1 / 3, 1 / 3, 1 / 3]) == pytest.approx(1 / 30)


def test_transitive_table_gives_the_condorcet_winner():
  np.testing.assert_allclose(minimax_winner(TRANSITIVE), [1.0, 0.0, 0.0], atol=1e-8)
  assert exploitability(TRANSITIVE, [1.0, 0.0, 0.0]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("size", [2, 4, 7, 12])
def test_random_antisymmetric_tables_satisfy_the_equilibrium_conditions(size):
  rng = np.random.default_rng(size)
  upper = rng.uniform(size=(size, size))
  pref = np.triu(upper, 1) + np.tril(1.0 - upper.T, -1) + 0.5 * np.eye(size)
  pi = minimax_winner(pref)
  assert pi.shape == (size,) and np.all(pi >= 0) and pi.sum() == pytest.approx(1.0)
  # Equilibrium: no pure response beats pi with probability above 1/2 ...
  assert np.max(pref @ pi) <= 0.5 + 1e-7
  # ... and pi's own support does exactly 1/2 against it (complementary slackness).
  support = pi > 1e-6
  np.testing.assert_allclose((pref @ pi)[support], 0.5, atol=1e-6)
  assert exploitability(pref, pi) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("pref, words", [
    (np.ones((2, 3)) * 0.5, "square K x K matrix with K >= 2, got shape (2, 3)"),
    (np.array([[0.5, 1.2], [-0.2, 0.5]]), "entry (0, 1) = 1.2 lies outside [0, 1]"),
    (np.array([[0.5, 0.7], [0.7, 0.5]]), "entries (0, 1) = 0.7 and (1, 0) = 0.7 sum to 1.4"),
    (np.array([[0.4, 0.5], [0.5, 0.6]]), "diagonal entry (0, 0) = 0.4 must be 1/2"),
    (np.array([[0.5, np.nan], [0.5, 0.5]]), "entry (0, 1) = nan is not a finite number"),
])
def test_bad_tables_name_the_offending_entry(pref, words):
  with pytest.raises(ConfigError) as error:
    check_preference_matrix(pref)
  assert words in str(error.value)
