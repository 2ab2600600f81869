"""Tests for spo_jax/plotting.py (`spo-plot`): curves of saved runs, seeds aggregated."""

import json
import subprocess
import sys

import numpy as np
import pytest

from spo_jax import plotting


def write_run(path, seeds=(0, 1), iterations=5, offset=0.0):
  """A run directory with metrics.jsonl only: seed s reaches reward = it + s + offset at
  x = 10 * it + s env steps (the seeds' x grids differ, as they do in real runs)."""
  path.mkdir(parents=True)
  rows = [{"step": 10 * it + s, "iteration": it, "seed": s, "time/elapsed_s": 0.5 * it,
           "eval/episode_reward": it + s + offset} for it in range(1, iterations + 1)
          for s in seeds]
  (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def spo_plot(*args):
  return subprocess.run([sys.executable, "-m", "spo_jax.plotting", *args], capture_output=True,
                        text=True, timeout=600)


def test_two_runs_of_two_seeds_make_a_png(tmp_path):
  a = write_run(tmp_path / "a")
  b = write_run(tmp_path / "b", offset=1.0)
  out = tmp_path / "plots" / "curves.png"
  result = spo_plot(str(a), str(b), "--labels", "SPO", "PPO", "--out", str(out),
                    "--aggregate", "iqm")
  assert result.returncode == 0, result.stderr
  data = out.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


@pytest.mark.parametrize("args, words", [
    (["--metric", "eval/nope"], "available: eval/episode_reward, iteration, step, time/"),
    (["--labels", "x", "y"], "one per run"),
])
def test_bad_requests_exit_2_with_one_line(tmp_path, capsys, args, words):
  run = write_run(tmp_path / "a")
  with pytest.raises(SystemExit) as exit_info:
    plotting.main([str(run), *args, "--out", str(tmp_path / "c.png")])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2 and words in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "c.png").exists()


def test_missing_directory_and_directory_without_metrics(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  for path, words in ((tmp_path / "nowhere", "does not exist"),
                      (tmp_path / "empty", "no metrics.jsonl")):
    with pytest.raises(SystemExit) as exit_info:
      plotting.main([str(path), "--out", str(tmp_path / "c.png")])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_seeds_are_interpolated_onto_the_x_range_they_share():
  """Seed 0 at x = 10, 20, 30 (y = 1, 2, 3); seed 1 at x = 11, 21, 31 (y = 2, 3, 4). Shared
  range [11, 30]; at x = 20, seed 0 gives 2 and seed 1 interpolates 2 + 9/10 = 2.9, so the
  mean is 2.45."""
  curves = plotting.seed_curves(
      [{"step": 10 * i + s, "eval/episode_reward": i + s, "seed": s}
       for i in (1, 2, 3) for s in (0, 1)], "eval/episode_reward", "step")
  grid, ys = plotting.common_grid(curves, points=20)
  assert grid[0] == 11 and grid[-1] == 30 and ys.shape == (2, 20)
  mean_at_20 = plotting.aggregate(np.stack([np.interp([20.0], x, y) for x, y in
                                            curves.values()]), "mean")
  assert mean_at_20[0] == pytest.approx(2.45)


def test_iqm_and_bootstrap_band():
  """IQM of 1..8 drops the two lowest and two highest: mean(3, 4, 5, 6) = 4.5. The bootstrap
  band of the mean of identical seeds has zero width; of different seeds it holds the mean."""
  values = np.arange(1.0, 9.0)[:, None]  # [S=8, G=1]
  assert plotting.aggregate(values, "iqm")[0] == pytest.approx(4.5)
  lo, hi = plotting.bootstrap_band(np.ones((4, 3)), "mean")
  assert np.all(lo == 1.0) and np.all(hi == 1.0)
  lo, hi = plotting.bootstrap_band(values, "mean")
  assert lo[0] < 4.5 < hi[0] and lo[0] >= 1.0 and hi[0] <= 8.0
