"""Tests for spo_jax/eval_cli.py (`spo-eval`) on one tiny trained point_reach run."""

import json
import shutil
import subprocess
import sys

import pytest

from spo_jax import eval_cli
from spo_jax.presets import preset

EPISODE_LENGTH = 8


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  from spo_jax.train import train

  path = tmp_path_factory.mktemp("eval") / "run"
  config = preset("point_reach").replace(
      num_envs=4, episode_length=EPISODE_LENGTH, num_minibatches=1, update_epochs=1,
      num_eval_envs=2, eval_every=1, max_iterations=2, checkpoint_every=1,
      policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
  train(config, run_dir=path)
  return path


def test_prints_return_and_writes_json(run_dir, tmp_path):
  out = subprocess.run([sys.executable, "-m", "spo_jax.eval_cli", str(run_dir), "--episodes",
                        "4", "--json", str(tmp_path / "r.json")], capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  assert "return" in out.stdout and "over 4 episodes" in out.stdout
  result = json.loads((tmp_path / "r.json").read_text())
  assert result["step"] == 2 and result["episodes"] == 4 and result["deterministic"]
  # point_reach pays -distance every step: returns are negative, within [min, max]
  assert result["return_min"] <= result["return_mean"] <= result["return_max"] < 0
  assert 1 <= result["length_mean"] <= EPISODE_LENGTH and result["length_std"] >= 0


def test_prints_what_trained_the_policy(run_dir, tmp_path, capsys):
  """The provenance summary: code (version, commit or why none), library versions, devices;
  a run from before provenance.json says so and is evaluated all the same."""
  import jax

  eval_cli.main([str(run_dir), "--episodes", "1", "--json", str(tmp_path / "r.json")])
  out = capsys.readouterr().out
  record = json.loads((run_dir / "provenance.json").read_text())
  git = record["start"]["spo_jax"]["git"]
  assert "provenance: spo_jax " in out
  assert (f"commit {git['commit'][:12]}" if git["commit"] else "commit unknown") in out
  assert ("dirty" in out) == bool(git["dirty"])
  assert f"jax {jax.__version__}" in out and "brax " in out and "orbax-checkpoint " in out
  assert f"{jax.device_count()} x {jax.devices()[0].device_kind}" in out
  assert json.loads((tmp_path / "r.json").read_text())["provenance"] == record
  old = tmp_path / "old"
  shutil.copytree(run_dir, old)
  (old / "provenance.json").unlink()
  eval_cli.main([str(old), "--episodes", "1"])
  assert "provenance: not recorded" in capsys.readouterr().out


def test_a_policy_against_itself_wins_half_the_time(run_dir, tmp_path, capsys):
  """Same policy, same reset keys: episode i of A equals episode i of B, so the soft
  Bradley-Terry answers satisfy P(a_i > b_j) = 1 - P(a_j > b_i) and the mean over all N x N
  pairs is exactly 1/2 (the diagonal pairs give 1/2 each)."""
  eval_cli.main([str(run_dir), "--step", "1", "--episodes", "3", "--against", str(run_dir),
                 "--against-step", "1",
                 "--teacher", "bradley_terry", "--json", str(tmp_path / "r.json"),
                 "--save-rollout", str(tmp_path / "episode.html")])
  result = json.loads((tmp_path / "r.json").read_text())
  assert result["win_rate"] == pytest.approx(0.5, abs=1e-6)
  assert result["num_labels"] == 9 and result["teacher"] == "bradley_terry"
  assert result["against_return_mean"] == pytest.approx(result["duel_return_mean"], abs=1e-6)
  # a pure-JAX env has no physics system for Brax's viewer: JSON of the episode instead
  assert not (tmp_path / "episode.html").exists()
  episode = json.loads((tmp_path / "episode.json").read_text())
  steps = len(episode["actions"])
  assert 1 <= steps <= EPISODE_LENGTH and len(episode["observations"]) == steps + 1
  assert len(episode["actions"][0]) == 2 and "pure-JAX env" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line_before_compiling(run_dir, tmp_path, capsys):
  other = tmp_path / "other"
  shutil.copytree(run_dir, other)
  config = json.loads((other / "config.json").read_text())
  config["env"] = "balance"
  (other / "config.json").write_text(json.dumps(config))
  (tmp_path / "empty").mkdir()
  cases = [([str(tmp_path / "nowhere")], "does not exist"),
           ([str(tmp_path / "empty")], "no checkpoints/ folder"),
           ([str(run_dir), "--step", "7"], "saved: 1, 2"),
           ([str(run_dir), "--seed-index", "1"], "use 0..0"),
           ([str(run_dir), "--against", str(other)], "same environment"),
           ([str(run_dir), "--against", str(run_dir), "--teacher", "nobody"], "not a known"),
           ([str(run_dir), "--episodes", "0"], "at least 1")]
  for args, words in cases:
    with pytest.raises(SystemExit) as exit_info:
      eval_cli.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, args
    assert words in err and len(err.strip().splitlines()) == 1, (args, err)


def test_exploitability_of_the_mixture(run_dir, tmp_path):
  """--exploitability mixture: the run kept both its checkpoints (keep_checkpoints 3 > 2),
  a one-iteration best response is trained and both estimates land in [-1/2, 1/2]."""
  out = subprocess.run([sys.executable, "-m", "spo_jax.eval_cli", str(run_dir), "--episodes",
                        "4", "--exploitability", "mixture", "--br-iterations", "1", "--json",
                        str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  assert "exploitability of the mixture (2 iterate(s))" in out.stdout
  e = json.loads((tmp_path / "r.json").read_text())["exploitability"]
  assert e["steps"] == [1, 2] and e["iterations"] == 1 and len(e["curve"]) == 1
  assert -0.5 <= e["start"] <= 0.5 and -0.5 <= e["estimate"] <= 0.5


def test_exploitability_refuses_no_iterations(run_dir):
  out = subprocess.run([sys.executable, "-m", "spo_jax.eval_cli", str(run_dir),
                        "--exploitability", "last", "--br-iterations", "0"],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 2 and "--br-iterations >= 1" in out.stderr
