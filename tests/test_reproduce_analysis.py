"""spo_jax/reproduce/analysis.py: tidy tables, IQM and bootstrap intervals, on hand-made
data whose expected values are worked out in the comments."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest

from spo_jax.reproduce import analysis
from spo_jax.reproduce.plans import Run


def numpy_iqm(values) -> float:
  """Reference IQM: sort, drop floor(n/4) values at each end, average the rest.

  e.g. (1, 2, 3, 4, 100): drop 1 at each end -> mean(2, 3, 4) = 3.
  """
  x = np.sort(np.asarray(values, dtype=np.float64).ravel())
  cut = int(0.25 * len(x))
  return float(np.mean(x[cut:len(x) - cut]))


def test_iqm_matches_the_numpy_reference_and_the_interval_contains_it():
  assert numpy_iqm([1, 2, 3, 4, 100]) == 3.0
  assert analysis.iqm(np.array([[1.0], [2], [3], [4], [100]])) == 3.0
  rng = np.random.default_rng(1)
  for n in (4, 5, 8, 10):
    values = rng.normal(size=n) * 10
    point, lower, upper = analysis.iqm_with_ci(values, reps=500)
    assert point == pytest.approx(numpy_iqm(values), abs=1e-12)
    assert lower <= point <= upper
  # All seeds equal: no spread, the interval collapses onto the value.
  assert analysis.iqm_with_ci(np.full(5, 7.0), reps=200) == (7.0, 7.0, 7.0)
  # One seed: no interval at all.
  assert analysis.iqm_with_ci(np.array([2.5]), reps=200) == (2.5, 2.5, 2.5)


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_runs():
  """With 2 runs (a, b) each resample is (a, a), (a, b), (b, a) or (b, b): the IQM of a
  resample is its mean, so the resampled means lie in {a, (a+b)/2, b} with probabilities
  1/4, 1/2, 1/4, and the 95% percentile interval is [a, b]."""
  scores = np.array([[1.0], [3.0]])
  lower, upper = analysis.stratified_bootstrap(scores, analysis.batch_iqm, reps=4000)[:, 0]
  assert (lower, upper) == (1.0, 3.0)


def test_bootstrap_resamples_within_each_task():
  """Task 0 has one value repeated, so every resample of it is that value: its interval is
  the point; task 1 varies and so does its interval."""
  scores = np.array([[5.0, 0.0], [5.0, 10.0], [5.0, 20.0]])
  intervals = analysis.stratified_bootstrap(scores, lambda s: s.mean(axis=1), reps=2000)
  np.testing.assert_array_equal(intervals[:, 0], [5.0, 5.0])
  assert intervals[0, 1] < 10.0 < intervals[1, 1]


def test_batch_iqm_is_the_iqm_of_each_resample():
  # Resample 0: 1..8 -> drop 2 at each end -> mean(3, 4, 5, 6) = 4.5; resample 1: all 2.
  samples = np.stack([np.arange(1.0, 9.0).reshape(4, 2), np.full((4, 2), 2.0)])
  np.testing.assert_allclose(analysis.batch_iqm(samples), [[4.5], [2.0]])


def test_numpy_bootstrap_agrees_with_rliable_where_rliable_works():
  """Where rliable's own bootstrap runs (it needs an `arch` that works with the installed
  pandas), `iqm_with_ci` uses it; the NumPy fallback must give the same interval up to
  resampling noise. Both bootstraps are seeded: unseeded, two draws of 4000 resamples of 10
  scores differ in the upper bound by about 0.1 now and then, and the test failed by chance."""
  library, how = analysis.bootstrap_backend()
  if library is None:
    pytest.skip(how)
  assert analysis.ci_method() == "rliable.library.get_interval_estimates"
  scores = np.random.default_rng(3).normal(size=(10, 1))
  _, ci = library.get_interval_estimates({"x": scores}, lambda x: np.array([analysis.iqm(x)]),
                                         reps=4000, random_state=np.random.RandomState(0))
  ours = analysis.stratified_bootstrap(scores, analysis.batch_iqm, reps=4000)
  np.testing.assert_allclose(ours[:, 0], ci["x"][:, 0], atol=0.1)


def test_an_interval_depends_only_on_the_scores_and_the_seed():
  """rliable resamples with NumPy's global generator whatever `random_state` it is given, so
  regenerating docs/results.md moved every interval a little. `iqm_with_ci` seeds that
  generator for the call: the same scores give the same interval twice, a different seed
  another one, and the caller's global generator state is left as it was."""
  scores = np.random.default_rng(7).normal(size=10)
  np.random.seed(123)
  before = np.random.get_state()[1].copy()
  first = analysis.iqm_with_ci(scores, reps=500)
  assert analysis.iqm_with_ci(scores, reps=500) == first
  assert analysis.iqm_with_ci(scores, reps=500, seed=1)[1:] != first[1:]
  np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_curve_iqm_interpolates_onto_the_range_every_seed_covers():
  # Seed 0 is evaluated at x = 0, 10, 20 and seed 1 at x = 5, 15, 25: the common range is
  # [5, 20]. y = x for every seed, so the IQM curve is the grid itself.
  xs = [np.array([0.0, 10, 20]), np.array([5.0, 15, 25]), np.array([5.0, 20])]
  grid, mid, lower, upper = analysis.curve_iqm(xs, xs, points=4, reps=100)
  np.testing.assert_allclose(grid, [5, 10, 15, 20])
  np.testing.assert_allclose(mid, grid)
  np.testing.assert_allclose(lower, grid)
  np.testing.assert_allclose(upper, grid)


def test_curve_iqm_of_one_seed_has_no_band():
  grid, mid, lower, upper = analysis.curve_iqm([np.array([0.0, 2.0])],
                                               [np.array([1.0, 3.0])], points=3)
  np.testing.assert_allclose(grid, [0, 1, 2])
  np.testing.assert_allclose(mid, [1, 2, 3])
  assert lower is mid and upper is mid


def test_summarize_groups_by_setting_level_method_and_measure():
  """IQM of (1, 2, 3, 4): drop one at each end -> 2.5; of (10, 30): both kept -> 20.
  Rows of other questions are ignored; a missing level comes back as None."""
  def rows(question, setting, level, method, measure, values):
    return [{"question": question, "setting": setting, "level": level, "method": method,
             "measure": measure, "seed": seed, "value": v} for seed, v in enumerate(values)]

  finals = pd.DataFrame(rows("q3", "mistake", 0.2, "spo", "final_eval_return", [4, 1, 3, 2])
                        + rows("q3", "bradley_terry", 1.0, "rm", "final_eval_return", [30, 10])
                        + rows("q2", "oracle", None, "spo", "final_eval_return", [99, 99]))
  stats = analysis.summarize(finals, "q3", reps=200)
  assert [(r["setting"], r["level"], r["method"], r["iqm"], r["seeds"]) for r in stats] == [
      ("mistake", 0.2, "spo", 2.5, 4), ("bradley_terry", 1.0, "rm", 20.0, 2)]
  assert all(r["lower"] <= r["iqm"] <= r["upper"] for r in stats)
  [oracle] = analysis.summarize(finals, "q2", reps=200)
  assert oracle["level"] is None and oracle["iqm"] == 99.0
  assert analysis.summarize(pd.DataFrame(), "q1", reps=200) == []


def _write_run(run_dir, metrics, final):
  run_dir.mkdir(parents=True)
  (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
  if final is not None:
    (run_dir / "final.json").write_text(json.dumps(final))


def test_collect_reads_finished_runs_and_keeps_the_last_row_of_a_resume(tmp_path):
  """Seed 0's iteration 2 was logged twice (a resume re-logs it): the later row (reward 5)
  is kept. A run without final.json is not collected; Q1's head-to-head becomes a row per
  seed of the setting 'head_to_head'."""
  config = types.SimpleNamespace(env="point_reach")
  done = Run("q1", "control-spo", "spo", "control", None, config, True)
  unfinished = Run("q1", "control-rm", "rm", "control", None, config, True)
  _write_run(tmp_path / "q1" / "control-spo", [
      {"seed": 0, "iteration": 1, "eval/episode_reward": 1.0},
      {"seed": 1, "iteration": 1, "eval/episode_reward": 3.0},
      {"seed": 0, "iteration": 2, "eval/episode_reward": 2.0},
      {"seed": 0, "iteration": 2, "eval/episode_reward": 5.0}],
      {"seeds": [0, 1], "measures": {"final_eval_return": [5.0, 3.0]}})
  _write_run(tmp_path / "q1" / "control-rm", [{"seed": 0, "iteration": 1}], None)
  (tmp_path / "q1" / "head_to_head.json").write_text(json.dumps(
      {"seeds": [0, 1], "win_rate_spo_vs_rm": [0.75, 0.25]}))

  results, finals = analysis.collect([done, unfinished], tmp_path)
  assert results[["seed", "iteration", "eval/episode_reward"]].values.tolist() == [
      [0, 1, 1.0], [0, 2, 5.0], [1, 1, 3.0]]
  assert set(results["run"]) == {"control-spo"} and set(results["env"]) == {"point_reach"}
  assert finals[["setting", "seed", "measure", "value"]].values.tolist() == [
      ["control", 0, "final_eval_return", 5.0], ["control", 1, "final_eval_return", 3.0],
      ["head_to_head", 0, "win_rate_vs_rm", 0.75], ["head_to_head", 1, "win_rate_vs_rm", 0.25]]


def test_exact_minimax_winner_of_a_preset_and_of_an_unreadable_table(tmp_path):
  # Rock-paper-scissors: the uniform mix is the only Minimax Winner.
  np.testing.assert_allclose(analysis.exact_minimax_winner("rps"), [1 / 3] * 3, atol=1e-6)
  assert analysis.exact_minimax_winner(str(tmp_path / "missing.json")) is None
