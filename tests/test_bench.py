"""Tests for spo_jax/bench.py: the benchmark command runs end to end on a tiny env and its
numbers are consistent; bad arguments are refused before anything is compiled."""

import json
import subprocess
import sys

import numpy as np
import pytest

from spo_jax.bench import CONTENDERS, BenchError, main, parse_contenders


def test_unknown_contender_is_refused_with_the_valid_list(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run([sys.executable, "-m", "spo_jax.bench", "--contenders", "raw,ppo2",
                         "--out", str(out)], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert "ppo2" in proc.stderr and ",".join(CONTENDERS) in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not out.exists()


@pytest.mark.parametrize("text", ["", "spo,,", "raw, SPO"])
def test_contender_lists(text):
  if text == "spo,,":
    assert parse_contenders(text) == ("spo",)
  else:
    with pytest.raises(BenchError, match="valid: raw,spo"):
      parse_contenders(text)


def test_tiny_bench_runs_and_counts_consistently(tmp_path, capsys):
  out = tmp_path / "bench.json"
  argv = ["--env", "balance", "--num-envs", "8", "--episode-length", "20", "--repeats", "1",
          "--contenders", "raw,spo,spo_full_update", "--skip-time-to-target",
          "--winrate-sizes", "8", "--winrate-horizon", "10", "--opponents", "2", "--seeds", "2",
          "--chunks", "default", "--no-breakdown", "--out", str(out)]
  assert main(argv) == 0
  report = json.loads(out.read_text())
  r = report["results"]
  # The raw rollout simulates all N x H steps, every one useful.
  assert r["throughput"]["raw"]["physics_steps"] == 8 * 20
  assert r["throughput"]["raw"]["vs_raw"] == pytest.approx(1.0)
  spo = r["throughput"]["spo"]
  # A fresh policy topples the pole early: physics stops at the longest episode.
  assert 0 < spo["valid_steps"] <= spo["physics_steps"] <= 8 * 20
  assert spo["useful_fraction"] == pytest.approx(spo["valid_steps"] / spo["physics_steps"])
  # PPO work: balance preset, M = 8 minibatches of 8 * 20 / 8 = 20 slots, below the smallest
  # piece (512 slots), so each is one piece. Minibatch j takes min(per, V - j * per) of the V
  # valid steps, per = ceil(V / 8), and runs its piece if that is not 0.
  valid = spo["valid_steps"]
  per = -(-valid // 8)
  pieces = [min(per, valid - j * per) > 0 for j in range(8)]
  assert spo["ppo_work"] == pytest.approx(np.mean(pieces))
  # The same iteration with every minibatch in one piece: the full pass, same data.
  full = r["throughput"]["spo_full_update"]
  assert full["ppo_work"] == 1.0 and full["valid_steps"] == valid
  # Win-rate share: all pairs and k = 2 opponents at N = 8.
  assert [row["opponents"] for row in r["winrate_share"]] == ["all pairs", 2]
  assert all(row["share"] > 0 for row in r["winrate_share"])
  # Seeds: S = 1 is added (sequential runs are extrapolated from it). Two seeds simulate
  # in step up to the longer one's longest episode: at least the valid steps, at most N x H
  # each (tests/test_rollout.py checks the exact count).
  rows = {(row["chunk"], row["seeds"]): row for row in r["seeds"]}
  assert set(rows) == {("default", 1), ("default", 2)}
  assert rows[("default", 2)]["valid_steps"] <= rows[("default", 2)]["physics_steps"] <= 2 * 8 * 20
  assert rows[("default", 2)]["sequential_s_extrapolated"] == pytest.approx(
      2 * rows[("default", 1)]["median_s"])
  printed = capsys.readouterr().out
  assert "| contender |" in printed and "| spo |" in printed


def test_breakdown_times_the_compacted_rollout_and_reports_its_valid_steps(tmp_path):
  """With the breakdown on, the rollout alone (as training runs it: balance at N = 32 with
  compaction factor 4, batches of 32 then 8) reports its valid and physics steps, its valid
  steps per second of the timed rollout and that rate against raw physics."""
  out = tmp_path / "bench.json"
  argv = ["--env", "balance", "--num-envs", "32", "--episode-length", "100", "--repeats", "1",
          "--contenders", "raw,spo", "--skip-time-to-target", "--winrate-sizes", "",
          "--seeds", "", "--compaction-factor", "4", "--out", str(out)]
  assert main(argv) == 0
  r = json.loads(out.read_text())["results"]["throughput"]
  steps = r["spo_rollout"]
  assert 0 < steps["valid_steps"] < steps["physics_steps"]
  raw_rate = r["raw"]["physics_steps_per_s"]
  assert steps["vs_raw"] == pytest.approx(steps["valid_steps_per_s"] / raw_rate)
  assert steps["valid_steps_per_s"] == pytest.approx(
      steps["valid_steps"] / r["spo_breakdown"]["rollout"])


def test_breakdown_rolls_out_as_training_does_with_segments_and_whole_episodes():
  """hopper's preset compares segments and, beside them, whole episodes (`episode_weight`);
  the reward source then reads the rollout's summaries as the pair (segments, episodes). The
  breakdown once built its own rollout without the whole-episode summaries and crashed on
  that preset ("not enough values to unpack"); it now calls `iteration.training_rollout`,
  as training does. balance with segments of 10 steps and episode weight 1, 8 envs."""
  import jax  # noqa: PLC0415

  import spo_jax  # noqa: PLC0415
  from spo_jax.bench.measures import spo_breakdown  # noqa: PLC0415
  from spo_jax.setup import build  # noqa: PLC0415

  config = spo_jax.preset("balance").replace(num_envs=8, episode_length=40, segment_length=10,
                                             episode_weight=1.0, num_minibatches=1)
  setup = build(config)
  seconds, steps = spo_breakdown(setup, setup.fns.init(jax.random.PRNGKey(0)), repeats=1)
  assert set(seconds) == {"rollout", "win rates + placement", "ppo update"}
  assert 0 < steps["valid_steps"] <= steps["physics_steps"]


def test_a_compaction_factor_of_one_is_refused(capsys):
  assert main(["--compaction-factor", "1", "--out", "/nonexistent/bench.json"]) == 2
  assert "compaction_factor" in capsys.readouterr().err


def test_seeds_alone_skip_the_throughput_section(tmp_path, monkeypatch):
  """--skip-throughput (with --skip-time-to-target and no win-rate sizes) measures the seeds
  section alone (on an accelerator each program is a compile of up to a minute, and the seeds
  section does not need section 1's). The sections themselves are stood in for: the tiny
  bench above runs the real ones."""
  import spo_jax.bench.cli as bench_cli  # noqa: PLC0415

  def no_throughput(*args, **kwargs):
    raise AssertionError("section 1 ran despite --skip-throughput")

  asked = []
  monkeypatch.setattr(bench_cli, "throughput", no_throughput)
  monkeypatch.setattr(bench_cli, "seeds_section", lambda config, seeds, chunks, repeats: (
      asked.append((config.num_envs, seeds, chunks)) or []))
  out = tmp_path / "bench.json"
  argv = ["--env", "balance", "--num-envs", "8", "--repeats", "1", "--contenders", "spo",
          "--skip-throughput", "--skip-time-to-target", "--winrate-sizes", "", "--seeds", "4",
          "--chunks", "default", "--out", str(out)]
  assert main(argv) == 0
  assert asked == [(8, [1, 4], ["default"])]  # S = 1 added: sequential runs extrapolate it
  assert set(json.loads(out.read_text())["results"]) == {"seeds"}


@pytest.mark.parametrize("argv, named", [
    (["--skip-throughput", "--contenders", "spo", "--winrate-sizes", "8"], "--winrate-sizes"),
    (["--env", "balance", "--backend", "spring"], "backend"),
])
def test_contradictory_sections_and_a_backend_for_a_package_env_are_refused(argv, named,
                                                                             capsys):
  assert main([*argv, "--out", "/nonexistent/bench.json"]) == 2
  err = capsys.readouterr().err
  assert named in err and len(err.strip().splitlines()) == 1
