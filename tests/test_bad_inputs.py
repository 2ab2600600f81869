"""Bad input, as a user types it: every case exits with code 2 and ONE line on stderr that
names the field or problem and says how to fix it, prints no traceback, and writes nothing
(the run directory does not appear; an existing one is left byte for byte as it was).

Most cases run `spo_jax.cli.train_main(argv)` in-process (no compile: each fails before);
a few run `python -m spo_jax.cli` in a subprocess to show the same from a shell.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spo_jax.checkpoint import write_text_atomic
from spo_jax.cli import parse_train_args, train_main

TINY = ["--num-envs", "4", "--episode-length", "8", "--num-minibatches", "1",
        "--update-epochs", "1", "--num-eval-envs", "2", "--policy-hidden-sizes", "8",
        "--value-hidden-sizes", "8"]
POINT = ["--env", "point_reach", *TINY]
GAME = ["--env", "matrix_game", "--teacher", "matrix_game", "--num-envs", "4",
        "--num-minibatches", "1"]


def _inputs(tmp):
  """Malformed files, each wrong in one way."""
  paths = {}

  def write(name, text):
    paths[name] = str(tmp / name)
    (tmp / name).write_text(text)

  write("garbage.npz", "this is not a zip archive")
  labels = tmp / "labels_out_of_range.npz"
  # point_reach trajectories summarize to F = 9 features (return, length, 4 obs means, ...).
  np.savez(labels, features_a=np.zeros((3, 9), np.float32),
           features_b=np.zeros((3, 9), np.float32), labels=np.float32([0.0, 1.5, 1.0]))
  paths["labels_out_of_range.npz"] = str(labels)
  labels = tmp / "labels_missing_array.npz"
  np.savez(labels, features_a=np.zeros((3, 9), np.float32), labels=np.zeros(3, np.float32))
  paths["labels_missing_array.npz"] = str(labels)
  write("raters_syntax.json", '{"metrics": ["reward"], "weights": [[1.0], [1.0]')
  write("raters_ragged.json", json.dumps({"metrics": ["reward", "action_norm"],
                                          "weights": [[1, 0], [0, 1], [1]]}))
  write("not_square.json", json.dumps([[0.5, 0.2, 0.8], [0.8, 0.5, 0.2]]))
  write("out_of_range.json", json.dumps([[0.5, 1.2], [-0.2, 0.5]]))
  # P + P^T != 1 at (0, 1): 0.7 + 0.7.
  write("not_antisymmetric.json", json.dumps([[0.5, 0.7, 0.4], [0.7, 0.5, 0.6],
                                              [0.6, 0.4, 0.5]]))
  write("not_a_number.csv", "0.5,x\n0.5,0.5\n")
  write("a_file", "not a directory")
  return paths


# (id, argv given the input paths and tmp dir, words the one line must contain)
CASES = [
    # --- int fields: wrong type, out of range ---
    ("int-not-a-number", lambda f, t: [*POINT, "--num-envs", "abc"], ["--num-envs INT"]),
    ("int-too-small", lambda f, t: [*POINT, "--num-envs", "1"], ["num_envs", ">= 2"]),
    ("int-zero-horizon", lambda f, t: [*POINT, "--episode-length", "0"], ["episode_length"]),
    ("int-horizon-too-long", lambda f, t: ["--env", "balance", "--episode-length", "5000"],
     ["episode_length", "at most"]),
    ("int-negative-seed", lambda f, t: [*POINT, "--seed", "-1"], ["seed", "between 0"]),
    ("int-float-given", lambda f, t: [*POINT, "--update-epochs", "1.5"], ["--update-epochs INT"]),
    ("int-zero-epochs", lambda f, t: [*POINT, "--update-epochs", "0"], ["update_epochs"]),
    ("int-even-raters", lambda f, t: [*POINT, "--teacher", "intransitive",
                                      "--teacher-num-raters", "4"], ["teacher_num_raters", "odd"]),
    ("int-too-many-seeds", lambda f, t: [*POINT, "--num-seeds", "5000"], ["num_seeds", "4096"]),
    ("int-iterations-per-call", lambda f, t: [*POINT, "--iterations-per-call", "0"],
     ["iterations_per_call", ">= 1"]),
    # --- float fields ---
    ("float-not-a-number", lambda f, t: [*POINT, "--learning-rate", "fast"],
     ["--learning-rate FLOAT"]),
    ("float-zero-lr", lambda f, t: [*POINT, "--learning-rate", "0"], ["learning_rate", "(0.0"]),
    ("float-nan", lambda f, t: [*POINT, "--learning-rate", "nan"], ["learning_rate"]),
    ("float-discount", lambda f, t: [*POINT, "--discount", "1.5"], ["discount", "1.0]"]),
    ("float-gae-lambda", lambda f, t: [*POINT, "--gae-lambda", "-0.1"], ["gae_lambda"]),
    ("float-epsilon", lambda f, t: [*POINT, "--teacher-epsilon", "0.7"],
     ["teacher_epsilon", "0.5]"]),
    ("float-optional", lambda f, t: [*POINT, "--target-return", "high"],
     ["--target-return {None}|FLOAT"]),
    ("float-missing-value", lambda f, t: [*POINT, "--learning-rate"],
     ["--learning-rate", "Missing value"]),
    # --- bool fields ---
    ("bool-given-a-value", lambda f, t: [*POINT, "--center-rewards", "maybe"],
     ["maybe", "--no-center-rewards"]),
    ("bool-misspelt", lambda f, t: [*POINT, "--no-center-reward"], ["--no-center-rewards?"]),
    # --- tuple of sizes ---
    ("sizes-not-ints", lambda f, t: [*POINT, "--policy-hidden-sizes", "a", "b"],
     ["--policy-hidden-sizes [INT [INT ...]]"]),
    ("sizes-zero-width", lambda f, t: [*POINT, "--policy-hidden-sizes", "0", "8"],
     ["policy_hidden_sizes", "positive integers"]),
    ("sizes-empty", lambda f, t: [*POINT, "--rm-hidden-sizes"], ["rm_hidden_sizes", "non-empty"]),
    # --- choice and name fields ---
    ("choice-reward-source", lambda f, t: [*POINT, "--reward-source", "human"],
     ["reward_source", "not a known reward source", "spo"]),
    ("choice-activation", lambda f, t: [*POINT, "--activation", "gelu"], ["'tanh'"]),
    ("choice-shard", lambda f, t: [*POINT, "--shard", "gpus"], ["'envs'"]),
    ("unknown-env", lambda f, t: ["--env", "cheetah", *TINY], ["known environments"]),
    ("env-without-name", lambda f, t: ["--env"], ["--env needs a value"]),
    ("unknown-backend", lambda f, t: [*POINT, "--backend", "warp"], ["backend", "generalized"]),
    ("unknown-flag", lambda f, t: [*POINT, "--num-env", "8"], ["did you mean --num-envs?"]),
    ("unknown-teacher", lambda f, t: [*POINT, "--teacher", "nobody"],
     ["not a known teacher", "base teachers"]),
    ("teacher-unbalanced", lambda f, t: [*POINT, "--teacher", "mistake(oracle"],
     ["not a teacher expression"]),
    ("teacher-base-wraps", lambda f, t: [*POINT, "--teacher", "oracle(mistake)"],
     ["wraps nothing"]),
    ("teacher-needs-return", lambda f, t: [*POINT, "--teacher", "myopic(intransitive)"],
     ["return-based"]),
    ("teacher-quantity", lambda f, t: [*POINT, "--teacher", "constraint",
                                       "--teacher-quantity", "obs:99"], ["teacher_quantity"]),
    ("learned-needs-fit", lambda f, t: [*POINT, "--teacher", "learned", "--teacher-fit-steps",
                                        "0"], ["teacher_fit_steps", "at least 1"]),
    ("learned-needs-file", lambda f, t: [*POINT, "--teacher", "learned"],
     ["teacher_labels_file", ".npz"]),
    # --- files ---
    ("labels-missing-file", lambda f, t: [*POINT, "--teacher", "learned",
                                          "--teacher-labels-file", str(t / "none.npz")],
     ["teacher_labels_file", "none.npz"]),
    ("labels-not-npz", lambda f, t: [*POINT, "--teacher", "learned", "--teacher-labels-file",
                                     f["garbage.npz"]],
     ["not a valid .npz", "zip archive", "numpy.savez"]),
    ("labels-out-of-range", lambda f, t: [*POINT, "--teacher", "learned",
                                          "--teacher-labels-file",
                                          f["labels_out_of_range.npz"]], ["labels", "row 1"]),
    ("labels-missing-array", lambda f, t: [*POINT, "--teacher", "learned",
                                           "--teacher-labels-file",
                                           f["labels_missing_array.npz"]], ["features_b"]),
    ("raters-missing-file", lambda f, t: [*POINT, "--teacher", "intransitive",
                                          "--teacher-raters", str(t / "none.json")],
     ["teacher_raters", "no such file"]),
    ("raters-bad-json", lambda f, t: [*POINT, "--teacher", "intransitive", "--teacher-raters",
                                      f["raters_syntax.json"]], ["teacher_raters", "line 1"]),
    ("raters-ragged", lambda f, t: [*POINT, "--teacher", "intransitive", "--teacher-raters",
                                    f["raters_ragged.json"]], ["weights"]),
    ("table-missing-file", lambda f, t: [*GAME, "--teacher-table", str(t / "none.json")],
     ["teacher_table", "no such file", "preset"]),
    ("table-unknown-preset", lambda f, t: [*GAME, "--teacher-table", "chess"],
     ["teacher_table", "rps"]),
    ("table-not-square", lambda f, t: [*GAME, "--teacher-table", f["not_square.json"]],
     ["teacher_table", "square"]),
    ("table-out-of-range", lambda f, t: [*GAME, "--teacher-table", f["out_of_range.json"]],
     ["teacher_table", "(0, 1)"]),
    ("table-not-antisymmetric", lambda f, t: [*GAME, "--teacher-table",
                                              f["not_antisymmetric.json"]],
     ["teacher_table", "(0, 1)"]),
    ("table-not-numbers", lambda f, t: [*GAME, "--teacher-table", f["not_a_number.csv"]],
     ["teacher_table", "matrix of numbers"]),
    # --- impossible sizes ---
    ("minibatches-do-not-divide", lambda f, t: ["--env", "point_reach", "--num-envs", "6",
                                                "--episode-length", "5", "--num-minibatches",
                                                "4"], ["num_minibatches", "must divide", "30"]),
    ("shard-seeds-needs-seeds", lambda f, t: [*POINT, "--shard", "seeds"],
     ["shard", "num_seeds >= 2"]),
    ("more-seeds-than-memory", lambda f, t: ["--env", "point_reach", "--num-envs", "20000",
                                             "--episode-length", "32", "--num-minibatches", "1",
                                             "--num-seeds", "4096"],
     ["num_seeds", "GiB", "lower num_seeds to at most"]),
    ("batch-larger-than-memory", lambda f, t: ["--env", "point_reach", "--num-envs", "2000000",
                                               "--num-minibatches", "1"],
     ["num_envs", "GiB", "num_opponents"]),
    ("queue-larger-than-memory", lambda f, t: [*POINT, "--queue-size", "400000000000"],
     ["lower queue_size", "GiB"]),
    # --- run directory ---
    ("resume-missing-dir", lambda f, t: [*POINT, "--resume", "--run-dir", str(t / "gone")],
     ["nothing to resume", "does not exist"]),
    ("resume-and-overwrite", lambda f, t: [*POINT, "--resume", "--overwrite"],
     ["contradict"]),
    ("run-dir-is-a-file", lambda f, t: [*POINT, "--run-dir", f["a_file"]], ["is a file"]),
    ("run-dir-unwritable", lambda f, t: [*POINT, "--run-dir", f["a_file"] + "/run"],
     ["cannot write", "--run-dir"]),
]

RUN_CASES = [
    # An existing run dir (a config.json as a run writes it) must be left unchanged.
    ("resume-different-config", ["--learning-rate", "0.5", "--resume"],
     ["learning_rate", "different config"]),
    ("occupied-run-dir", [], ["--overwrite"]),
    ("resume-corrupt-config", ["--resume"], ["not valid JSON"]),
]


def _snapshot(root):
  if not root.exists():
    return None
  return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
          for p in sorted(root.rglob("*"))}


def _check_one_line(code, err, words):
  lines = err.strip().splitlines()
  assert code == 2, err
  assert "Traceback" not in err
  assert len(lines) == 1, err
  assert lines[0].startswith("spo-train: error: ")
  for word in words:
    assert word in lines[0], f"{word!r} not in: {lines[0]}"


@pytest.mark.parametrize("name, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, words, tmp_path, capsys, monkeypatch):
  files = _inputs(tmp_path)
  monkeypatch.chdir(tmp_path)  # a default run dir would land here: none may appear
  args = argv(files, tmp_path)
  if "--run-dir" not in args:
    args = [*args, "--run-dir", str(tmp_path / "run")]
  before = _snapshot(tmp_path)
  with pytest.raises(SystemExit) as stop:
    train_main(args)
  _check_one_line(stop.value.code, capsys.readouterr().err, words)
  assert _snapshot(tmp_path) == before  # nothing written, nothing created


@pytest.mark.parametrize("name, extra, words", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_input_on_an_existing_run(name, extra, words, tmp_path, capsys):
  run_dir = tmp_path / "run"
  (run_dir / "checkpoints").mkdir(parents=True)
  text = parse_train_args(POINT).config.to_json()
  write_text_atomic(run_dir / "config.json", text[:40] if "corrupt" in name else text)
  (run_dir / "metrics.jsonl").write_text('{"step": 32}\n')
  before = _snapshot(run_dir)
  with pytest.raises(SystemExit) as stop:
    train_main([*POINT, "--run-dir", str(run_dir), *extra])
  _check_one_line(stop.value.code, capsys.readouterr().err, words)
  assert _snapshot(run_dir) == before


SUBPROCESS_CASES = [
    ("tyro-type-error", [*POINT, "--num-envs", "abc"], {}, ["--num-envs INT"]),
    ("bad-labels-file", [*POINT, "--teacher", "learned", "--teacher-labels-file",
                         "missing.npz"], {}, ["teacher_labels_file"]),
    # 3 CPU devices cannot share 4 environments evenly.
    ("shard-does-not-divide", [*POINT, "--shard", "envs"],
     {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"},
     ["num_envs", "3 devices", "multiple of 3"]),
]


@pytest.mark.parametrize("name, argv, env, words", SUBPROCESS_CASES,
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_bad_input_from_a_shell(name, argv, env, words, tmp_path):
  out = subprocess.run([sys.executable, "-m", "spo_jax.cli", *argv, "--run-dir",
                        str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, **env}, timeout=600)
  _check_one_line(out.returncode, out.stderr, words)
  assert os.listdir(tmp_path) == []
