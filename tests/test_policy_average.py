"""The time-averaged policy (spo_jax/policy_average.py): the running mean, the exploitability
metric, and SPO on cycle3, whose average approaches the Minimax Winner while the last iterate
stays exploitable."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import minimax
from spo_jax import policy_average as averaging
from spo_jax.teachers.matrix_game import MINIMAX_WINNERS, TABLES


def test_running_average_by_hand():
  # Iterates (1, 0, 0), (0, 1, 0), (0, 0, 1): means (1, 0, 0), (1/2, 1/2, 0), (1/3, 1/3, 1/3).
  # The first update overwrites whatever the average held (count 1).
  update = jax.jit(averaging.running_average)
  average = jnp.asarray([0.7, 0.2, 0.1])
  expected = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]
  for count, (iterate, want) in enumerate(zip(np.eye(3), expected, strict=True), start=1):
    average = update(average, jnp.asarray(iterate, jnp.float32), jnp.asarray(count))
    np.testing.assert_allclose(average, want, rtol=1e-6, atol=1e-7)


def _brute_force_exploitability(table, policy):
  """The definition, one pure response at a time in plain Python: the probability that
  response k beats a draw i ~ policy is sum_i policy_i P[k, i]; a best response may be taken
  pure (the payoff is linear in the response), so exploitability = max over k, minus the 1/2
  that pi earns against itself."""
  size = len(policy)
  best = -float("inf")
  for k in range(size):
    wins = 0.0
    for i in range(size):
      wins += float(policy[i]) * float(table[k][i])
    best = max(best, wins)
  return best - 0.5


def test_exploitability_of_a_rock_heavy_mix_by_hand():
  # Rock-paper-scissors, P[i, j] = P(i beats j), pi = (rock 0.6, paper 0.3, scissors 0.1):
  #   rock     vs pi: 0.6 * 0.5 + 0.3 * 0   + 0.1 * 1   = 0.40
  #   paper    vs pi: 0.6 * 1   + 0.3 * 0.5 + 0.1 * 0   = 0.75   <- the best response
  #   scissors vs pi: 0.6 * 0   + 0.3 * 1   + 0.1 * 0.5 = 0.35
  # exploitability 0.75 - 0.5 = 0.25. The transposed table (P(pi beats k)) would give
  # 1 - 0.35 - 0.5 = 0.15, and a min instead of the max 0.35 - 0.5 < 0: both caught here.
  table, policy = np.asarray(TABLES["rps"]), np.asarray([0.6, 0.3, 0.1])
  assert _brute_force_exploitability(table, policy) == pytest.approx(0.25)
  assert minimax.exploitability(table, policy) == pytest.approx(0.25)
  got = jax.jit(averaging.exploitability)(jnp.asarray(table, jnp.float32),
                                          jnp.asarray(policy, jnp.float32))
  np.testing.assert_allclose(got, 0.25, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(TABLES) + ["random"])
def test_exploitability_matches_a_brute_force_best_response(name):
  """The JAX metric and spo_jax.minimax's, against the loop reference on random policies."""
  rng = np.random.default_rng(0)
  if name == "random":
    upper = rng.uniform(size=(5, 5))
    table = np.triu(upper, 1) + np.tril(1.0 - upper.T, -1) + 0.5 * np.eye(5)
  else:
    table = np.asarray(TABLES[name])
  exploit = jax.jit(averaging.exploitability)
  for policy in rng.dirichlet(np.ones(len(table)), size=8):
    expected = _brute_force_exploitability(table, policy)
    np.testing.assert_allclose(
        exploit(jnp.asarray(table, jnp.float32), jnp.asarray(policy, jnp.float32)),
        expected, atol=1e-6)
    assert minimax.exploitability(table, policy) == pytest.approx(expected, abs=1e-12)
  # 0 at the Minimax Winner; cycle3's pure outcome 0 is beaten by outcome 2 at 0.8: 0.3.
  mw = minimax.minimax_winner(table)
  assert abs(float(exploit(jnp.asarray(table, jnp.float32), jnp.asarray(mw, jnp.float32)))) < 1e-6
  if name == "cycle3":
    np.testing.assert_allclose(exploit(jnp.asarray(table), jnp.asarray([1.0, 0.0, 0.0])), 0.3,
                               rtol=1e-6)


def test_spo_average_approaches_the_minimax_winner_on_cycle3():
  """80 iterations of the matrix_game preset (cycle3, N = 64). The initial policy is nearly
  uniform, at L1 distance |1/3 - 2/9| + 0 + |1/3 - 4/9| = 0.222 from MW = (2/9, 1/3, 4/9),
  and exploitable by 1/30: against uniform, outcome 0 wins (0.5 + 0.9 + 0.2) / 3 = 0.533 and
  outcome 2 (0.8 + 0.3 + 0.5) / 3 = 0.533 (test_minimax.py). The average must end closer to
  MW, less exploitable than the last iterate, and below HALF the starting exploitability: a
  bound the start itself fails, so the test can tell training that did nothing.
  (Measured on a CPU: start 0.0341, average 0.0298 after 40 iterations, 0.0075 after 80.)"""
  config = spo_jax.preset("matrix_game").replace(max_iterations=80, eval_every=40,
                                                 num_timesteps=10**9)
  setup = spo_jax.build(config)
  np.testing.assert_allclose(setup.game.minimax_winner, MINIMAX_WINNERS["cycle3"], atol=1e-6)
  initial = setup.game_metrics(jax.jit(setup.fns.init)(jax.random.PRNGKey(config.seed)))
  start_distance = float(initial["eval/mw_distance_average"])
  start_exploit = float(initial["eval/exploitability_average"])
  np.testing.assert_allclose(start_distance, 2 / 9, atol=0.03)
  np.testing.assert_allclose(start_exploit, 1 / 30, atol=0.005)
  threshold = start_exploit / 2
  assert start_exploit > threshold + 0.01  # the bound below is one the start cannot meet
  rows = []
  result = spo_jax.train(config, progress_fn=lambda step, m: rows.append(m))
  assert [r["iteration"] for r in rows] == [40, 80]
  m = result.metrics
  assert m["eval/mw_distance_average"] < start_distance - 0.1
  assert m["eval/exploitability_average"] < m["eval/exploitability_last"]
  assert m["eval/exploitability_average"] < threshold


def test_average_is_checkpointed_and_resumes_exactly_over_seeds(tmp_path):
  """Two seeds (vmapped), reward_model or spo alike: 4 iterations straight, or 2 and then 2
  more after a resume, give the same average and metrics rows."""
  config = spo_jax.preset("matrix_game").replace(
      num_envs=8, num_seeds=2, max_iterations=4, eval_every=2, checkpoint_every=2,
      num_timesteps=10**9, policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
  straight = spo_jax.train(config, run_dir=tmp_path / "straight")
  spo_jax.train(config.replace(max_iterations=2), run_dir=tmp_path / "resumed")
  resumed = spo_jax.train(config, run_dir=tmp_path / "resumed", resume=True)
  names = [f"eval/prob_average_{k}" for k in range(3)] + [
      f"eval/prob_last_{k}" for k in range(3)] + ["eval/exploitability_average"]
  for a, b in zip(straight.metrics["per_seed"], resumed.metrics["per_seed"], strict=True):
    assert {k: a[k] for k in names} == {k: b[k] for k in names}
  rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").open()]
  assert [(r["iteration"], r["seed"]) for r in rows] == [(2, 0), (2, 1), (4, 0), (4, 1)]
  # Different seeds, different iterates.
  assert rows[2]["eval/prob_average_0"] != rows[3]["eval/prob_average_0"]
