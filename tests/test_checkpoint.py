"""Checkpoints: round trip, exact resume, loading with and without policy.json (a learned
teacher's run, an older run), refusing foreign runs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax.checkpoint import Checkpointer
from spo_jax.config import ConfigError

TINY = spo_jax.preset("point_reach").replace(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9, max_iterations=4,
    eval_every=1, checkpoint_every=0, queue_size=4)


def _strip_times(rows):
  return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def _read_metrics(run_dir):
  return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_state_round_trip(tmp_path):
  fns = spo_jax.make_train(TINY)
  state, first_metrics = jax.jit(fns.iteration)(jax.jit(fns.init)(jax.random.PRNGKey(0)))
  checkpointer = Checkpointer(tmp_path / "ckpt")
  # The meta's counters come from the state's device counters, whatever the caller passed
  # (a stale 5 here): one iteration of N = 4 episodes of point_reach, all of them valid steps.
  checkpointer.save(1, state, {"config": TINY.to_dict(), "counters": {"env_steps": 5,
                                                                      "wall_time": 1.5}})
  restored, meta = checkpointer.restore(1, jax.eval_shape(fns.init, jax.random.PRNGKey(0)))
  checkpointer.close()
  assert meta["counters"]["env_steps"] == [int(jnp.sum(first_metrics["train/env_steps"]))]
  assert meta["counters"]["wall_time"] == 1.5
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(x, y)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  """2 iterations, stop, resume to 4 == 4 iterations straight: same params bit for bit and
  the same metrics rows (wall-clock fields aside). The queue, normalizer, optimizer state and
  RNG key all travel in the checkpoint."""
  whole = spo_jax.train(TINY, run_dir=tmp_path / "whole")
  spo_jax.train(TINY.replace(max_iterations=2), run_dir=tmp_path / "split")
  resumed = spo_jax.train(TINY, run_dir=tmp_path / "split", resume=True)
  for x, y in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params), strict=True):
    np.testing.assert_array_equal(x, y)
  assert _strip_times(_read_metrics(tmp_path / "whole")) == _strip_times(
      _read_metrics(tmp_path / "split"))
  assert resumed.metrics["step"] == whole.metrics["step"]
  assert resumed.metrics["train/total_feedback"] == whole.metrics["train/total_feedback"]


def test_refuses_foreign_or_missing_runs(tmp_path):
  spo_jax.train(TINY.replace(max_iterations=1), run_dir=tmp_path / "run")
  before = (tmp_path / "run" / "metrics.jsonl").read_text()
  with pytest.raises(ConfigError, match="already holds a run"):
    spo_jax.train(TINY, run_dir=tmp_path / "run")
  with pytest.raises(ConfigError, match="learning_rate"):
    spo_jax.train(TINY.replace(learning_rate=0.1), run_dir=tmp_path / "run", resume=True)
  with pytest.raises(ConfigError, match="nothing to resume"):
    spo_jax.train(TINY, run_dir=tmp_path / "empty", resume=True)
  with pytest.raises(ConfigError, match="does not exist"):
    spo_jax.load_policy(tmp_path / "missing")
  with pytest.raises(ConfigError, match="not a spo_jax run directory"):
    spo_jax.load_policy(tmp_path)
  assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
  assert not (tmp_path / "empty").exists()


def test_resume_refuses_a_changed_teacher_file(tmp_path):
  """Same path, different bytes: the resumed run's teacher would differ, so it is refused."""
  table = tmp_path / "table.csv"
  np.savetxt(table, [[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], delimiter=",")
  config = spo_jax.preset("matrix_game").replace(
      teacher_table=str(table), num_envs=8, max_iterations=1, eval_every=1, num_eval_envs=2)
  spo_jax.train(config, run_dir=tmp_path / "run")
  np.savetxt(table, [[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]], delimiter=",")
  with pytest.raises(ConfigError, match="teacher_table' has changed"):
    spo_jax.train(config.replace(max_iterations=2), run_dir=tmp_path / "run", resume=True)


def test_a_run_ending_on_a_checkpoint_iteration_saves_once(tmp_path):
  """checkpoint_every = 2 and max_iterations = 2: the periodic and the final save are the
  same step; the second is a no-op, not an error."""
  spo_jax.train(TINY.replace(max_iterations=2, checkpoint_every=2), run_dir=tmp_path / "run")
  assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()
                if p.name.isdigit()) == ["2"]


def test_a_learned_teacher_run_loads_without_its_labels_file(tmp_path, monkeypatch):
  """policy.json describes the networks: loading builds neither the training setup nor the
  teacher, so a `learned` run whose labels file is gone still loads (load_policy and
  spo-eval) and acts exactly like the trained policy. Without policy.json (a run written
  before it) loading falls back to building the saved config, which needs the file."""
  import importlib

  from spo_jax import eval_cli, saved_policy


  labels = tmp_path / "labels.npz"
  rng = np.random.default_rng(0)
  x_a, x_b = (rng.normal(size=(50, 9)).astype(np.float32) for _ in range(2))
  np.savez(labels, features_a=x_a, features_b=x_b, labels=(x_a[:, 0] > x_b[:, 0]) * 1.0)
  config = TINY.replace(teacher="learned", teacher_labels_file=str(labels),
                        teacher_fit_steps=5, max_iterations=1, queue_size=0)
  result = spo_jax.train(config, run_dir=tmp_path / "run")
  spec = saved_policy.read_spec(tmp_path / "run")
  assert spec.observation_size == 4 and spec.action_size == 2 and spec.env_kwargs == {}
  assert spec.policy_hidden_sizes == (8,) and not spec.discrete
  labels.unlink()

  def no_build(*args, **kwargs):
    raise AssertionError("loading a policy built the training setup")

  for module in ("spo_jax.setup", "spo_jax.train"):  # spo_jax.train is also the function
    monkeypatch.setattr(importlib.import_module(module), "build", no_build)
  obs = np.linspace(-1, 1, 12).reshape(3, 4).astype(np.float32)
  expected = result.make_policy(result.params)(obs)
  np.testing.assert_array_equal(spo_jax.load_policy(tmp_path / "run")(obs), expected)
  saved = eval_cli.locate(tmp_path / "run", None, 0)
  loaded = eval_cli.restore(saved)
  assert loaded.step == 1 and loaded.teacher is None
  np.testing.assert_array_equal(loaded.make_policy(loaded.params)(obs), expected)
  returns = eval_cli.evaluate_returns(loaded, loaded.params, 2, jax.random.PRNGKey(0))
  assert np.isfinite(returns["return_mean"])

  monkeypatch.undo()
  (tmp_path / "run" / "policy.json").unlink()  # as written before policy.json existed
  with pytest.raises(ConfigError, match="teacher_labels_file"):
    spo_jax.load_policy(tmp_path / "run")


def test_a_run_without_policy_json_loads_and_resumes_as_before(tmp_path):
  spo_jax.train(TINY.replace(max_iterations=1), run_dir=tmp_path / "run")
  policy = spo_jax.load_policy(tmp_path / "run")
  (tmp_path / "run" / "policy.json").unlink()
  obs = np.ones((2, 4), np.float32)
  np.testing.assert_array_equal(spo_jax.load_policy(tmp_path / "run")(obs), policy(obs))
  spo_jax.train(TINY.replace(max_iterations=2), run_dir=tmp_path / "run", resume=True)
  assert (tmp_path / "run" / "policy.json").exists()  # written on resume


def test_complete_steps_of_a_folder_gone_or_moved_away_while_listed(tmp_path, monkeypatch):
  from spo_jax.checkpoint import complete_steps

  folder = tmp_path / "checkpoints"
  (folder / "3").mkdir(parents=True)
  assert complete_steps(folder) == []  # a step folder without a finished save's files
  assert complete_steps(tmp_path / "absent") == []
  (tmp_path / "a_file").write_text("")
  assert complete_steps(tmp_path / "a_file") == []
  # `--overwrite` moves checkpoints/ aside while another process lists it: the folder exists
  # when looked at and is gone when read. Nothing complete, not a traceback.
  listing = type(folder).iterdir

  def vanished(path):
    if path == folder:
      raise FileNotFoundError(str(path))
    return listing(path)

  monkeypatch.setattr(type(folder), "iterdir", vanished)
  assert complete_steps(folder) == []
