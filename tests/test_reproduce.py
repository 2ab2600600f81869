"""scripts/reproduce.py: a tiny end-to-end run, the statistics against NumPy, bad input.

Only `test_tiny_run_writes_tables_figures_and_skips_when_done` trains (one compiled run on
the package's point_reach env); the statistics and figures of the other questions are
checked on synthetic data.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.py"


def _load():
  spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules["reproduce"] = module
  spec.loader.exec_module(module)
  return module


reproduce = _load()


def numpy_iqm(values) -> float:
  """Reference IQM: sort, drop floor(n/4) values at each end, average the rest.

  e.g. (1, 2, 3, 4, 100): drop 1 at each end -> mean(2, 3, 4) = 3.
  """
  x = np.sort(np.asarray(values, dtype=np.float64).ravel())
  cut = int(0.25 * len(x))
  return float(np.mean(x[cut:len(x) - cut]))


def run_script(*args, timeout=900):
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                        timeout=timeout)


def test_iqm_matches_the_numpy_reference_and_the_interval_contains_it():
  assert numpy_iqm([1, 2, 3, 4, 100]) == 3.0
  rng = np.random.default_rng(1)
  for n in (4, 5, 8, 10):
    values = rng.normal(size=n) * 10
    point, lower, upper = reproduce.iqm_with_ci(values, reps=500)
    assert point == pytest.approx(numpy_iqm(values), abs=1e-12)
    assert lower <= point <= upper
  # All seeds equal: no spread, the interval collapses onto the value.
  assert reproduce.iqm_with_ci(np.full(5, 7.0), reps=200) == (7.0, 7.0, 7.0)


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_runs():
  """With 2 runs (a, b) each resample is (a, a), (a, b), (b, a) or (b, b): the IQM of a
  resample is its mean, so the resampled means lie in {a, (a+b)/2, b} with probabilities
  1/4, 1/2, 1/4, and the 95% percentile interval is [a, b]."""
  scores = np.array([[1.0], [3.0]])
  lower, upper = reproduce.stratified_bootstrap(scores, reproduce._batch_iqm, reps=4000)[:, 0]
  assert (lower, upper) == (1.0, 3.0)


def test_numpy_bootstrap_agrees_with_rliable_where_rliable_works():
  """Where rliable's own bootstrap runs (it needs an `arch` that works with the installed
  pandas), the script uses it; the NumPy fallback must give the same interval up to
  resampling noise."""
  library, how = reproduce._rliable_library()
  if library is None:
    pytest.skip(how)
  scores = np.random.default_rng(3).normal(size=(10, 1))
  _, ci = library.get_interval_estimates({"x": scores}, lambda x: np.array([reproduce.iqm(x)]),
                                         reps=4000)
  ours = reproduce.stratified_bootstrap(scores, reproduce._batch_iqm, reps=4000)
  np.testing.assert_allclose(ours[:, 0], ci["x"][:, 0], atol=0.1)


def test_curve_iqm_interpolates_onto_the_range_every_seed_covers():
  # Seed 0 is evaluated at x = 0, 10, 20 and seed 1 at x = 5, 15, 25: the common range is
  # [5, 20]. y = x for every seed, so the IQM curve is the grid itself.
  xs = [np.array([0.0, 10, 20]), np.array([5.0, 15, 25]), np.array([5.0, 20])]
  grid, mid, lower, upper = reproduce.curve_iqm(xs, xs, points=4, reps=100)
  np.testing.assert_allclose(grid, [5, 10, 15, 20])
  np.testing.assert_allclose(mid, grid)
  np.testing.assert_allclose(lower, grid)
  np.testing.assert_allclose(upper, grid)


def test_teacher_properties_read_each_teachers_summary():
  """Per-episode measures from hand-made summaries of 3 episodes."""
  import jax.numpy as jnp

  from spo_jax.teachers import nonmarkov
  from spo_jax.teachers.raters import MajorityOfRaters

  returns = jnp.array([10.0, 20.0, 30.0])
  q = nonmarkov.Quantity("reward")
  constraint = reproduce.teacher_properties(
      nonmarkov.Constraint(q, 0.5), {"violated": jnp.array([True, False, False]),
                                     "return": returns}, returns)
  np.testing.assert_allclose(constraint["satisfied"], [0, 1, 1])
  np.testing.assert_allclose(constraint["return"], returns)
  # Deadline 5: episode 0 reached the level after 3 steps, episode 1 never (-> 5 + 1 = 6).
  never = nonmarkov._NEVER
  deadline = reproduce.teacher_properties(
      nonmarkov.Deadline(q, 0.0, 5), {"steps": jnp.array([9, 9, 1]),
                                      "reached": jnp.array([3, never, 1])}, returns)
  np.testing.assert_allclose(deadline["reached"], [1, 0, 1])
  np.testing.assert_allclose(deadline["steps_to_reach"], [3, 6, 1])
  # Two raters over two criteria: U = W S, S = (1, 2), (3, 0), (0, 0).
  raters = MajorityOfRaters((q, q), ((1.0, 0.0), (0.5, 2.0)))
  sums = jnp.array([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
  props = reproduce.teacher_properties(raters, {"sums": sums}, returns)
  np.testing.assert_allclose(props["rater_0"], [1.0, 3.0, 0.0])
  np.testing.assert_allclose(props["rater_1"], [4.5, 1.5, 0.0])


def _synthetic_finals(rng) -> pd.DataFrame:
  rows = []

  def add(question, setting, method, measure, values, level=None):
    for seed, value in enumerate(values):
      rows.append({"question": question, "run": f"{setting}-{method}", "method": method,
                   "setting": setting, "level": level, "env": "x", "seed": seed,
                   "measure": measure, "value": float(value)})

  for method in ("spo", "rm"):
    for k in range(3):
      add("q1", "control", method, f"rater_{k}", rng.normal(size=5))
    add("q1", "matrix_game", method, "exploitability_last", rng.uniform(size=5) * 0.3)
    for beta in (0.3, 1.0, 3.0):
      add("q3", "bradley_terry", method, "final_eval_return", rng.normal(size=5), beta)
    for eps in (0.0, 0.2):
      add("q3", "mistake", method, "final_eval_return", rng.normal(size=5), eps)
    for teacher, prop in (("constraint", "satisfied"), ("deadline", "reached")):
      add("q4", teacher, method, prop, rng.uniform(size=5))
      add("q4", teacher, method, "return", rng.normal(size=5))
  add("q1", "head_to_head", "spo", "win_rate_vs_rm", rng.uniform(size=5))
  return pd.DataFrame(rows)


def _synthetic_results() -> pd.DataFrame:
  rows = []
  for method in ("spo", "rm"):
    for seed in range(5):
      for it in range(1, 11):
        rows.append({"question": "q1", "run": f"matrix-{method}", "method": method,
                     "setting": "matrix_game", "level": None, "env": "matrix_game",
                     "seed": seed, "iteration": it, "step": 64 * it,
                     "eval/exploitability_last": 0.3 / it + 0.01 * seed,
                     "eval/exploitability_average": 0.2 / it})
  return pd.DataFrame(rows)


def test_summaries_and_figures_of_every_question_on_synthetic_data(tmp_path):
  finals = _synthetic_finals(np.random.default_rng(0))
  results = _synthetic_results()
  for question, figure in (("q1", "q1_exploitability.png"), ("q3", "q3_noise.png"),
                           ("q4", "q4_nonmarkov.png")):
    (tmp_path / question).mkdir()
    stats = reproduce.summarize(finals, question, reps=200)
    part = finals[finals["question"] == question]
    assert len(stats) == len(part.groupby(["setting", "level", "method", "measure"],
                                          dropna=False))
    for row in stats:
      group = part[(part["setting"] == row["setting"]) & (part["method"] == row["method"])
                   & (part["measure"] == row["measure"])]
      if row["level"] is not None:
        group = group[group["level"] == row["level"]]
      assert row["seeds"] == 5
      assert row["iqm"] == pytest.approx(numpy_iqm(group["value"]), abs=1e-12)
      assert row["lower"] <= row["iqm"] <= row["upper"]
    paths = reproduce.figures(question, results, stats, tmp_path)
    assert tmp_path / question / figure in paths
    assert all(p.stat().st_size > 1000 for p in paths)
    table = reproduce.markdown_table(stats)
    assert "| 5 |" in table and "95% CI" in table
  assert (tmp_path / "q1" / "q1_control.png").exists()


def test_every_gpu_config_is_valid_and_within_the_promised_budget():
  """The locomotion plan cannot run here; its configs must still pass `validate` (no env is
  built: that is the dry run's job, below, for one of them)."""
  from spo_jax.config import validate

  runs = [r for q in reproduce.QUESTIONS for r in reproduce.plan_runs(q, "gpu", 10)]
  brax = [r for r in runs if r.config.env != "matrix_game"]
  assert {r.config.env for r in brax} == {"ant", "halfcheetah", "hopper", "walker2d",
                                          "humanoid"}
  for run in runs:
    validate(run.config)
    assert run.config.num_seeds == 10
  assert all(10_000_000 <= r.config.num_timesteps <= 50_000_000 for r in brax)
  assert {r.method for r in runs if r.question == "q2"} == {"spo", "rm", "ppo"}


def test_dry_run_validates_and_prints_the_plan_without_running(tmp_path):
  """The tiny plan (package envs: no Brax reset to trace); `--scale gpu --dry-run` does
  the same for the locomotion envs, at 10-20 s per env."""
  out_dir = tmp_path / "out"
  out = run_script("--question", "all", "--tiny", "--dry-run", "--out", str(out_dir))
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  # q1: 2 matrix + 2 control; q2: 3; q3: (1 beta + 2 epsilons) x 2; q4: 2 teachers x 2:
  # 4 + 3 + 6 + 4 = 17.
  assert "17 runs" in lines[-1] and "every config validated" in lines[-1], out.stdout
  row = next(line for line in lines if line.startswith("q4/deadline-rm"))
  # 3 seeds x at most min(200 steps, 3 iterations x 6 envs x 12 steps = 216) = 600 steps.
  assert row.split()[1:3] == ["point_reach", "reward_model"] and row.endswith(" 600")
  assert not out_dir.exists()


def test_tiny_run_writes_tables_figures_and_skips_when_done(tmp_path):
  """One compiled run (SPO, 3 seeds vmapped, point_reach, 3 iterations), then the same
  command again: nothing is retrained, the tables are rebuilt."""
  out_dir = tmp_path / "out"
  args = ["--question", "q2", "--tiny", "--methods", "spo", "--out", str(out_dir),
          "--reps", "500", "--docs", str(tmp_path / "docs" / "results")]
  first = run_script(*args)
  assert first.returncode == 0, first.stderr
  q2 = out_dir / "q2"
  results = pd.read_csv(q2 / "results.csv")
  assert set(results["seed"]) == {0, 1, 2}
  assert {"step", "iteration", "eval/episode_reward", "train/total_queries"} <= set(results)
  finals = pd.read_csv(q2 / "finals.csv")
  returns = finals[finals["measure"] == "final_eval_return"].sort_values("seed")["value"]
  assert len(returns) == 3
  # The final return of each seed is its last evaluation in metrics.jsonl.
  rows = [json.loads(line) for line in (q2 / "oracle-spo" / "metrics.jsonl").open()]
  last = {r["seed"]: r["eval/episode_reward"] for r in rows}
  np.testing.assert_allclose(returns, [last[s] for s in (0, 1, 2)], rtol=1e-6)
  summary = (out_dir / "summary.md").read_text()
  expected = f"| oracle | SPO | final return (eval) | {numpy_iqm(returns):.3f} |"
  assert expected in summary, summary
  assert (q2 / "q2_sample_efficiency.png").stat().st_size > 1000
  docs = (tmp_path / "docs" / "results.md").read_text()
  assert "<!-- generated:q2 start -->" in docs and expected in docs
  assert (tmp_path / "docs" / "results" / "q2_sample_efficiency.png").exists()

  again = run_script(*args)
  assert again.returncode == 0, again.stderr
  assert "finished before, skipped" in again.stdout
  assert expected in (out_dir / "summary.md").read_text()


def _bad_table(tmp_path, rows) -> str:
  path = tmp_path / "table.json"
  path.write_text(json.dumps(rows))
  return str(path)


@pytest.mark.parametrize("args, words", [
    (["--question", "q5"], "unknown question 'q5'; valid: q1, q2, q3, q4, all"),
    (["--scale", "tpu"], "unknown scale 'tpu'; valid: cpu, gpu"),
    (["--env", "cheetah"], "unknown env 'cheetah' for --scale cpu; valid: balance, "
                           "inverted_pendulum"),
    (["--question", "q4", "--teachers", "constraint,oracle"],
     "unknown Q4 teacher 'oracle'; valid: constraint, deadline, peak, steady"),
    (["--methods", "dpo"], "unknown method 'dpo'; valid: spo, rm, ppo"),
    (["--seeds", "0"], "--seeds 0 is invalid"),
    (["--seeds", "five"], "invalid int value"),
    (["--question", "q1", "--tiny", "--table", "TABLE:[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]"],
     "square"),
    (["--question", "q1", "--tiny", "--table", "TABLE:[[0.5, 1.5], [-0.5, 0.5]]"],
     "outside [0, 1]"),
    (["--question", "q1", "--tiny", "--table", "TABLE:[[0.5, 0.9], [0.3, 0.5]]"],
     "antisymmetry"),
])
def test_bad_input_is_refused_in_one_line_before_anything_runs(args, words, tmp_path, capsys):
  args = [_bad_table(tmp_path, json.loads(a[len("TABLE:"):])) if a.startswith("TABLE:") else a
          for a in args]
  out_dir = tmp_path / "out"
  code = reproduce.main([*args, "--out", str(out_dir)])
  err = capsys.readouterr().err
  assert code == 2
  assert len(err.strip().splitlines()) == 1, err
  assert words in err, err
  assert not out_dir.exists()


def test_bad_input_exits_2_from_the_command_line(tmp_path):
  out = run_script("--question", "q9", "--out", str(tmp_path / "out"), timeout=300)
  assert out.returncode == 2
  assert out.stderr.strip() == ("reproduce.py: error: unknown question 'q9'; valid: q1, q2, "
                                "q3, q4, all")
  assert out.stdout == ""


def test_a_point_another_process_is_training_is_refused_not_restarted(tmp_path):
  """Two reproduce.py's over one --out: the second finds a point's run held by the first. It
  must neither resume it nor fall back to --overwrite (which would delete the first's run
  under it): RunDirBusy goes up (main prints it in one line, exit 2) and nothing changes."""
  import types

  import spo_jax
  from spo_jax.run_dir import RunDirBusy, RunLock

  run_dir = tmp_path / "Q2" / "spo"
  (run_dir / "checkpoints").mkdir(parents=True)
  config = spo_jax.preset("point_reach")
  (run_dir / "config.json").write_text(config.to_json())
  before = sorted(p.name for p in run_dir.rglob("*"))
  logged = []
  with RunLock(run_dir), pytest.raises(RunDirBusy, match="in use by another run"):
    reproduce._train(types.SimpleNamespace(config=config), run_dir, False, logged.append)
  assert logged == []  # no "cannot resume ...; starting again"
  assert sorted(p.name for p in run_dir.rglob("*")) == before
