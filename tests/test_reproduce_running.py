"""spo_jax/reproduce/running.py: what counts as finished, skipping and copying finished
runs, reading metrics, and the teachers' measured properties (no training here: the one
training run is the script's end-to-end test in tests/test_reproduce_cli.py)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np

from spo_jax.reproduce import plans, running


def _tiny_runs():
  return plans.plan_runs("q3", "cpu", 2, tiny=True)


def _finish(run_dir, config, measures=None):
  run_dir.mkdir(parents=True, exist_ok=True)
  (run_dir / "final.json").write_text(json.dumps(
      {"config": json.loads(config.to_json()), "seeds": [0, 1],
       "measures": measures or {"final_eval_return": [1.0, 2.0]}}))


def test_finished_means_a_final_json_written_for_this_config(tmp_path):
  run, other = _tiny_runs()[:2]
  run_dir = tmp_path / "q3" / run.name
  assert not running.finished(run_dir, run.config)
  _finish(run_dir, run.config)
  assert running.finished(run_dir, run.config)
  assert not running.finished(run_dir, other.config)
  (run_dir / "final.json").write_text("{truncated")
  assert not running.finished(run_dir, run.config)


def test_execute_skips_finished_runs_and_copies_a_twin_without_training(tmp_path):
  """q3's mistake at epsilon 0 is the oracle: finished as q2/oracle-spo, it is copied; the
  run already finished under its own name is skipped. Neither trains (a training run would
  need far longer and print 'done in')."""
  q2_spo = plans.plan_runs("q2", "cpu", 2, tiny=True)[0]
  q3 = {r.name: r for r in _tiny_runs()}
  _finish(tmp_path / "q2" / q2_spo.name, q2_spo.config)
  beta = q3["bradley_terry-beta1-spo"]
  _finish(tmp_path / "q3" / beta.name, beta.config)
  (tmp_path / "q2" / q2_spo.name / "metrics.jsonl").write_text('{"seed": 0}\n')

  assert running.find_twin(tmp_path, tmp_path / "q3" / "mistake-eps0-spo",
                           q3["mistake-eps0-spo"].config) == tmp_path / "q2" / "oracle-spo"
  lines: list[str] = []
  seconds = running.execute([beta, q3["mistake-eps0-spo"]], tmp_path, force=False,
                            episodes=2, log=lines.append)
  assert seconds == {"q3/bradley_terry-beta1-spo": 0.0, "q3/mistake-eps0-spo": 0.0}
  assert lines == [
      "[1/2] q3/bradley_terry-beta1-spo: finished before, skipped (--force re-runs)",
      "[2/2] q3/mistake-eps0-spo: the same config as q2/oracle-spo, copied"]
  copied = tmp_path / "q3" / "mistake-eps0-spo"
  assert (copied / "metrics.jsonl").read_text() == '{"seed": 0}\n'
  assert running.finished(copied, q3["mistake-eps0-spo"].config)


def test_last_rows_take_each_seeds_latest_iteration_and_the_rewritten_row(tmp_path):
  rows = [{"iteration": 1, "x": 1}, {"iteration": 2, "x": 2}, {"iteration": 2, "x": 3}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
  # A single-seed run logs no seed: it becomes seed 0; blank lines are skipped.
  assert [r["seed"] for r in running.read_metrics(tmp_path)] == [0, 0, 0]
  assert running.last_rows(tmp_path) == [{"iteration": 2, "x": 3, "seed": 0}]
  assert running.read_metrics(tmp_path / "nothing") == []


def test_teacher_properties_read_each_teachers_summary():
  """Per-episode measures from hand-made summaries of 3 episodes."""
  from spo_jax.teachers import nonmarkov
  from spo_jax.teachers.raters import MajorityOfRaters

  returns = jnp.array([10.0, 20.0, 30.0])
  q = nonmarkov.Quantity("reward")
  constraint = running.teacher_properties(
      nonmarkov.Constraint(q, 0.5), {"violated": jnp.array([True, False, False]),
                                     "return": returns}, returns)
  np.testing.assert_allclose(constraint["satisfied"], [0, 1, 1])
  np.testing.assert_allclose(constraint["return"], returns)
  # Deadline 5: episode 0 reached the level after 3 steps, episode 1 never (-> 5 + 1 = 6).
  deadline = running.teacher_properties(
      nonmarkov.Deadline(q, 0.0, 5), {"steps": jnp.array([9, 9, 1]),
                                      "reached": jnp.array([3, nonmarkov.NEVER, 1])}, returns)
  np.testing.assert_allclose(deadline["reached"], [1, 0, 1])
  np.testing.assert_allclose(deadline["steps_to_reach"], [3, 6, 1])
  # Two raters over two criteria: U = W S, S = (1, 2), (3, 0), (0, 0).
  raters = MajorityOfRaters((q, q), ((1.0, 0.0), (0.5, 2.0)))
  sums = jnp.array([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
  props = running.teacher_properties(raters, {"sums": sums}, returns)
  np.testing.assert_allclose(props["rater_0"], [1.0, 3.0, 0.0])
  np.testing.assert_allclose(props["rater_1"], [4.5, 1.5, 0.0])
  # Peak: max_t q_t as kept; steady: Welford's M2 / count = 8 / 4 = 2.
  peak = running.teacher_properties(nonmarkov.Peak(q), {"peak": jnp.array([1.0, 2, 3])},
                                    returns)
  np.testing.assert_allclose(peak["peak"], [1, 2, 3])
  steady = running.teacher_properties(
      nonmarkov.Steady(q), {"count": jnp.full(3, 4.0), "mean": jnp.zeros(3),
                            "m2": jnp.array([8.0, 0.0, 4.0])}, returns)
  np.testing.assert_allclose(steady["variance"], [2.0, 0.0, 1.0])


def test_deadline_reached_in_time_agrees_with_the_teachers_own_fold():
  """Fold the teacher over 4 steps whose reward crosses 0.5 at the third: tau = 3 <= 5."""
  from spo_jax.teachers import nonmarkov
  from spo_jax.teachers.protocol import TeacherStep

  teacher = nonmarkov.Deadline(nonmarkov.Quantity("reward"), 0.5, 5)
  summary = teacher.init()
  assert not nonmarkov.Deadline.reached_in_time(summary)
  for reward in (0.0, 0.1, 0.9, 0.0):
    step = TeacherStep(obs=jnp.zeros(1), next_obs=jnp.zeros(1), action=jnp.zeros(1),
                       reward=jnp.asarray(reward), metrics={}, mask=jnp.asarray(1.0),
                       t=jnp.asarray(0))
    summary = teacher.update(summary, step)
  assert nonmarkov.Deadline.reached_in_time(summary) and int(summary["reached"]) == 3


def test_a_point_another_process_is_training_is_refused_not_restarted(tmp_path):
  """Two reproductions over one --out: the second finds a point's run held by the first. It
  must neither resume it nor fall back to --overwrite (which would delete the first's run
  under it): RunDirBusy goes up (the command prints it in one line, exit 2) and nothing
  changes."""
  import types

  import pytest

  import spo_jax
  from spo_jax.run_dir import RunDirBusy, RunLock

  run_dir = tmp_path / "Q2" / "spo"
  (run_dir / "checkpoints").mkdir(parents=True)
  config = spo_jax.preset("point_reach")
  (run_dir / "config.json").write_text(config.to_json())
  before = sorted(p.name for p in run_dir.rglob("*"))
  logged = []
  with RunLock(run_dir), pytest.raises(RunDirBusy, match="in use by another run"):
    running.train_run(types.SimpleNamespace(config=config), run_dir, False, logged.append)
  assert logged == []  # no "cannot resume ...; starting again"
  assert sorted(p.name for p in run_dir.rglob("*")) == before


def test_q1_control_measures_best_response_exploitability(tmp_path):
  """The tiny Q1 control run of SPO (2 seeds, a checkpoint every iteration, all kept): the
  best responses (from scratch and from a copy) measure its oldest kept iterate, its last
  iterate and the mixture of every kept checkpoint, one estimate and one starting value per
  seed, each a preference minus 1/2."""
  import spo_jax
  from spo_jax.checkpoint import complete_steps

  run = next(r for r in plans.plan_runs("q1", "cpu", 2, tiny=True) if r.name == "control-spo")
  assert run.exploit == ("first", "last", "mixture") and run.exploit_iterations == 2
  run_dir = tmp_path / "q1" / run.name
  spo_jax.train(run.config, run_dir=run_dir)
  kept = complete_steps(run_dir / "checkpoints")
  assert len(kept) >= 2
  from spo_jax import best_response as br
  assert br.load_frozen(run_dir, "first").steps == (kept[0],)
  assert br.load_frozen(run_dir, "last").steps == (kept[-1],)
  assert br.load_frozen(run_dir, "mixture").steps == tuple(kept)
  # Measured here: the last iterate and the mixture (the oldest iterate is the last one's
  # program with other weights, loaded as checked above).
  out = running.measure_exploitability(run._replace(exploit=("last", "mixture")), run_dir,
                                       episodes=4)
  assert set(out) == {f"br_exploitability_{target}{part}"
                      for target in ("last", "mixture")
                      for part in ("", "_start", "_cold", "_warm")} | {"mixture_iterates"}
  # The reported estimate is the better of the two responders, seed by seed.
  for target in ("last", "mixture"):
    assert out[f"br_exploitability_{target}"] == [
        max(c, w) for c, w in zip(out[f"br_exploitability_{target}_cold"],
                                  out[f"br_exploitability_{target}_warm"], strict=True)]
  assert out["mixture_iterates"] == [float(len(kept))] * 2
  for name, values in out.items():
    if name != "mixture_iterates":
      assert len(values) == 2 and all(-0.5 <= v <= 0.5 for v in values), (name, values)


def test_curve_area_is_the_trapezoid_mean_height_over_env_steps():
  # Steps 0, 10, 30 with returns 0, 10, 10: the first segment is a ramp of area
  # 10 * (0 + 10) / 2 = 50, the second a flat 20 * 10 = 200; over 30 steps: 250 / 30.
  assert np.isclose(running.curve_area([0, 10, 30], [0, 10, 10]), 250 / 30)
  # A curve at the cap from the start has the cap as its area; one that reaches it at the
  # end of the run has less: the measure tells apart methods whose final returns are equal.
  assert running.curve_area([0, 50, 100], [1000, 1000, 1000]) == 1000
  assert running.curve_area([0, 50, 100], [0, 0, 1000]) == 250
  assert running.curve_area([7], [3.5]) == 3.5  # one evaluation: its return
  # Cut at a budget of 20 steps: the return there is interpolated (10 on the flat part), and
  # the area covers 0..20: (50 + 10 * 10) / 20 = 7.5. A seed that ran on to 30 steps is
  # compared over the same 20 steps as one that stopped there.
  assert np.isclose(running.curve_area([0, 10, 30], [0, 10, 10], budget=20), 7.5)
  assert np.isclose(running.curve_area([0, 10, 30], [0, 10, 30], budget=20), (50 + 150) / 20)
  assert running.curve_area([0, 10], [0, 10], budget=50) == 5  # within the budget: uncut


def test_curve_areas_read_each_seeds_evaluations_and_let_a_resume_replace_a_row(tmp_path):
  rows = [
      {"iteration": 1, "step": 0, "seed": 0, "eval/episode_reward": 0.0},
      {"iteration": 1, "step": 0, "seed": 1, "eval/episode_reward": 4.0},
      {"iteration": 2, "step": 10, "seed": 0, "eval/episode_reward": 99.0},  # replaced below
      {"iteration": 2, "step": 10, "seed": 1, "eval/episode_reward": 4.0},
      {"iteration": 3, "step": 20, "seed": 0, "train/episode_reward": 5.0},  # no evaluation
      {"iteration": 2, "step": 10, "seed": 0, "eval/episode_reward": 10.0},  # the resume's row
  ]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  # seed 0: a ramp 0 -> 10 over 10 steps, mean height 5; seed 1: flat at 4.
  assert running.curve_areas(tmp_path) == [5.0, 4.0]
