"""Every teacher name from the command line: parsed, built for a real env, judged in a rollout.

The teacher-dependent part of an iteration (rollout with the teacher folded in, preference
matrix, win rates) is compiled once per teacher; the teacher-independent PPO part is
compiled by the end-to-end runs in test_train, test_teacher_zoo, test_learned_teacher and
test_reward_model, and by the two command-line runs here.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax.cli import parse_train_args, train_main
from spo_jax.rollout import rollout
from spo_jax.teachers import BASE_TEACHERS, WRAPPERS
from spo_jax.teachers.labels import make_labels
from spo_jax.winrate import compute_winrates

TINY_FLAGS = ["--num-envs", "8", "--episode-length", "8", "--num-minibatches", "2",
              "--update-epochs", "1", "--num-eval-envs", "2", "--eval-every", "1",
              "--policy-hidden-sizes", "8", "--value-hidden-sizes", "8"]

# Flags that make each teacher meaningful on `balance` (metrics: angle, position) or, for the
# matrix game, on the one-step `matrix_game` env.
TEACHER_FLAGS = {
    "oracle": [],
    "bradley_terry": ["--teacher-beta", "2", "--teacher-scale", "5"],
    "mistake": ["--teacher-epsilon", "0.2"],
    "myopic": ["--teacher-gamma", "0.9"],
    "equal": ["--teacher-tie-margin", "0.5"],
    "skip": ["--teacher-skip-threshold", "3"],
    "intransitive": ["--teacher-num-raters", "5"],
    "constraint": ["--teacher-quantity", "abs:angle", "--teacher-threshold", "0.1"],
    "peak": ["--teacher-quantity", "abs:position"],
    "deadline": ["--teacher-quantity", "reward", "--teacher-threshold", "1",
                 "--teacher-deadline", "4"],
    "steady": ["--teacher-quantity", "obs:3"],
    "matrix_game": ["--env", "matrix_game", "--episode-length", "1", "--teacher-table", "rps"],
    "learned": ["--teacher-fit-steps", "50"],
}


def test_every_teacher_name_has_flags_here():
  assert set(TEACHER_FLAGS) == set(BASE_TEACHERS) | set(WRAPPERS)


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
  """Labels from the oracle on balance trajectories, in the learned teacher's feature layout."""
  env = spo_jax.make_env("balance")
  features_a, features_b, labels = make_labels(env, spo_jax.Oracle(), 64, 8,
                                               jax.random.PRNGKey(0))
  path = tmp_path_factory.mktemp("labels") / "labels.npz"
  np.savez(path, features_a=features_a, features_b=features_b, labels=labels)
  return str(path)


@pytest.mark.parametrize("name", sorted(TEACHER_FLAGS))
def test_teacher_from_the_command_line_judges_a_rollout(name, labels_file):
  args = ["--env", "balance", "--teacher", name, *TINY_FLAGS, *TEACHER_FLAGS[name]]
  if name == "learned":
    args += ["--teacher-labels-file", labels_file]
  config = parse_train_args(args).config
  setup = spo_jax.build(config)  # validates the config and checks the teacher's contract
  assert config.teacher == name

  @jax.jit
  def judge(key):
    def policy_fn(obs, key):
      raw = jax.random.normal(key, obs.shape[:-1] + (setup.env.action_size,))
      return raw, jnp.zeros(obs.shape[:-1])

    result = rollout(setup.env, policy_fn, key, config.num_envs, config.episode_length,
                     setup.teacher)
    return compute_winrates(setup.teacher, result.summaries, None, key)

  rates = judge(jax.random.PRNGKey(1))
  assert rates.winrate.shape == (config.num_envs,)
  assert np.all((rates.winrate >= 0) & (rates.winrate <= 1))
  assert int(rates.num_queries) == config.num_envs * (config.num_envs - 1) // 2


def test_wrapper_chain_trains_from_the_command_line(tmp_path, capsys):
  train_main(["--env", "balance", "--teacher", "mistake(myopic(equal(skip(bradley_terry))))",
              "--teacher-epsilon", "0.1", "--teacher-gamma", "0.95", "--teacher-scale", "3",
              "--teacher-skip-threshold", "-1", *TINY_FLAGS, "--max-iterations", "2",
              "--run-dir", str(tmp_path / "run"), "--quiet"])
  assert "2 iterations" in capsys.readouterr().out
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["teacher"] == "mistake(myopic(equal(skip(bradley_terry))))"


def test_reward_model_with_bradley_terry_in_a_subprocess(tmp_path):
  run_dir = tmp_path / "run"
  out = subprocess.run(
      [sys.executable, "-m", "spo_jax.cli", "--env", "point_reach", "--reward-source",
       "reward_model", "--teacher", "bradley_terry", "--teacher-scale", "10",
       "--rm-queries-per-iteration", "6", "--rm-train-steps", "3", "--rm-batch-size", "4",
       "--rm-hidden-sizes", "8", *TINY_FLAGS, "--max-iterations", "2", "--run-dir",
       str(run_dir), "--quiet"], capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [r["train/total_queries"] for r in rows] == [6, 12]
  assert {"train/rm_heldout_accuracy", "train/rm_return_correlation"} <= set(rows[-1])


@pytest.mark.parametrize("args, words", [
    (["--teacher", "bradley_terry", "--teacher-beta", "0"], "teacher_beta"),
    (["--teacher", "mistake", "--teacher-epsilon", "0.6"], "teacher_epsilon"),
    (["--teacher", "myopic", "--teacher-gamma", "1.5"], "teacher_gamma"),
    (["--teacher", "intransitive", "--teacher-num-raters", "4"], "odd number of raters"),
    (["--teacher", "peak", "--teacher-quantity", "speed"], "teacher_quantity"),
    (["--teacher", "learned", "--teacher-labels-file", "missing.npz"], "missing.npz"),
    (["--env", "matrix_game", "--teacher", "matrix_game", "--teacher-table", "rock"],
     "teacher_table"),
    (["--teacher", "myopic(peak)"], "needs a return-based teacher"),
    (["--reward-source", "reward_model", "--rm-batch-size", "0"], "rm_batch_size"),
])
def test_bad_teacher_input_exits_2_naming_the_parameter(args, words, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    train_main(["--env", "balance", *args, "--run-dir", str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert words in err and len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "run").exists()
