"""`spo-train` as a user runs it: in a subprocess, with tiny settings."""

import json
import subprocess
import sys

import pytest

from spo_jax.cli import train_main

TINY_FLAGS = ["--num-envs", "4", "--episode-length", "8", "--num-minibatches", "1",
              "--update-epochs", "1", "--num-eval-envs", "2", "--eval-every", "1",
              "--policy-hidden-sizes", "8", "--value-hidden-sizes", "8"]


def spo_train(*args, cwd=None):
  return subprocess.run([sys.executable, "-m", "spo_jax.cli", *args], capture_output=True,
                        text=True, cwd=cwd, timeout=600)


def test_trains_a_brax_env_quietly_and_writes_the_run_directory(tmp_path):
  """The one Brax compile of the suite: inverted_pendulum, 4 episodes of 8 steps."""
  run_dir = tmp_path / "run"
  out = spo_train("--env", "inverted_pendulum", "--num-timesteps", "40", *TINY_FLAGS,
                  "--run-dir", str(run_dir))
  assert out.returncode == 0, out.stderr
  text = out.stdout + out.stderr
  assert "warp" not in text and "no longer" not in text.lower()
  assert "Done. Final evaluation return" in out.stdout
  config = json.loads((run_dir / "config.json").read_text())
  assert config["env"] == "inverted_pendulum" and config["num_envs"] == 4
  rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert rows and all("step" in r and "eval/episode_reward" in r for r in rows)
  assert rows[-1]["step"] >= 40
  assert any((run_dir / "checkpoints").iterdir())


def test_resume_from_the_command_line(tmp_path):
  run_dir = str(tmp_path / "run")
  first = spo_train("--env", "point_reach", "--max-iterations", "1", *TINY_FLAGS,
                    "--run-dir", run_dir, "--quiet")
  assert first.returncode == 0, first.stderr
  again = spo_train("--env", "point_reach", "--max-iterations", "2", *TINY_FLAGS,
                    "--run-dir", run_dir, "--quiet")
  assert again.returncode == 2 and "--resume" in again.stderr
  resumed = spo_train("--env", "point_reach", "--max-iterations", "2", *TINY_FLAGS,
                      "--run-dir", run_dir, "--resume", "--quiet")
  assert resumed.returncode == 0, resumed.stderr
  assert "after" in resumed.stdout and "2 iterations" in resumed.stdout


@pytest.mark.parametrize("args, words", [
    (["--env", "cheetah"], "known environments"),
    (["--teacher", "nobody"], "not a known teacher"),
    (["--num-envs", "-2"], "num_envs"),
    (["--episode-length", "2000"], "at most 1000"),
    (["--num-envs", "3", "--num-minibatches", "7"], "must divide"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_exits_2_with_one_clear_line(args, words, tmp_path, capsys):
  """In-process (the subprocess path is the same code, exercised above): the error is one
  line on stderr, the exit code 2, and the run directory is never created."""
  with pytest.raises(SystemExit) as exit_info:
    train_main([*args, "--run-dir", str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert words in err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert not (tmp_path / "run").exists()


def test_help_lists_every_config_field():
  import dataclasses

  from spo_jax.config import Config

  out = spo_train("--help")
  assert out.returncode == 0
  for field in dataclasses.fields(Config):
    assert "--" + field.name.replace("_", "-") in out.stdout


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
  import signal
  import time

  run_dir = tmp_path / "run"
  args = [sys.executable, "-m", "spo_jax.cli", "--env", "balance", "--num-timesteps",
          "100000000", *TINY_FLAGS, "--checkpoint-every", "0", "--run-dir", str(run_dir)]
  proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # Wait for the first progress line: training is under way (compiled, iterating).
  deadline = time.time() + 300
  while time.time() < deadline and not proc.stdout.readline().startswith("iter "):
    pass
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, err
  assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
  saved = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
  assert saved and max(saved) >= 1
  resumed = spo_train("--env", "balance", "--max-iterations", str(max(saved) + 1), *TINY_FLAGS,
                      "--checkpoint-every", "0", "--run-dir", str(run_dir), "--resume",
                      "--quiet")
  assert resumed.returncode == 0, resumed.stderr
  assert f"{max(saved) + 1} iterations" in resumed.stdout
