"""spo_jax/progress.py: what a run shows while it runs (the progress bar, plain lines, none)
and the evaluation line both displays share."""

import io

import pytest

from spo_jax.presets import preset
from spo_jax.progress import (
    STYLES,
    BarProgress,
    LineProgress,
    make_progress,
    progress_line,
    summary_parts,
)

CONFIG = preset("balance").replace(num_timesteps=1000)


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_summary_parts_in_order_and_only_those_present():
  m = {"eval/episode_reward": 12.5, "train/episode_reward": -3.0, "train/winrate_std": 0.125,
       "eval/exploitability_last": 0.25, "eval/exploitability_average": 0.07}
  # Returns right-aligned in 8 characters with one decimal ("    12.5", "    -3.0"), the
  # win-rate std and exploitabilities with three.
  assert summary_parts(m) == ["eval return     12.5", "train return     -3.0",
                              "win-rate std 0.125",
                              "exploitability last 0.250 average 0.070"]
  # No query yet (0) and no other field: the return alone.
  assert summary_parts({"eval/episode_reward": 1.0, "train/total_queries": 0}) == [
      "eval return      1.0"]
  # Seeds: their mean, how many, the lowest and highest return; queries as an integer.
  seeds = [{"eval/episode_reward": r} for r in (-2.0, 4.0, 1.0)]
  assert summary_parts({"eval/episode_reward": 1.0, "per_seed": seeds,
                        "train/total_queries": 12345.0}) == [
      "eval return      1.0 (mean of 3 seeds, min -2.0, max 4.0)", "queries 12,345"]


def test_progress_line_rate_since_the_previous_line():
  m = {"iteration": 7, "step": 900, "time/elapsed_s": 4.0, "eval/episode_reward": 5.0}
  # First line: 900 steps over the whole 4 s = 225 steps/s.
  assert progress_line(m, CONFIG) == (
      "iter    7 | steps        900/1,000 |      225 steps/s | eval return      5.0 |      4s")
  # After a line at (600 steps, 3.5 s): 300 steps in 0.5 s = 600 steps/s.
  assert "      600 steps/s" in progress_line(m, CONFIG, previous=(600, 3.5))
  # Nothing done in no time (a line at 0 s): a rate of 0, not a division by zero.
  assert "        0 steps/s" in progress_line({**m, "step": 0, "time/elapsed_s": 0.0}, CONFIG)


def test_make_progress_picks_the_display_and_refuses_unknown_styles():
  assert isinstance(make_progress(CONFIG, "auto", _Terminal()), BarProgress)
  assert isinstance(make_progress(CONFIG, "auto", io.StringIO()), LineProgress)
  assert isinstance(make_progress(CONFIG, "lines", _Terminal()), LineProgress)
  assert isinstance(make_progress(CONFIG, "bar", io.StringIO()), BarProgress)
  with pytest.raises(ValueError, match="'fancy' is not one of auto, bar, lines, none"):
    make_progress(CONFIG, "fancy")
  assert STYLES == ("auto", "bar", "lines", "none")


def test_lines_print_only_at_evaluations():
  stream = io.StringIO()
  lines = LineProgress(CONFIG, stream)
  lines.start(0)
  lines.advance(500, 3)
  lines.close()
  assert stream.getvalue() == ""


def test_the_bar_stops_at_the_budget_and_ignores_calls_outside_start_and_close():
  stream = io.StringIO()
  bar = BarProgress(CONFIG, stream)
  bar.advance(100, 1)  # before start: nothing to update
  bar.evaluation({"iteration": 1, "eval/episode_reward": 1.0})
  bar.close()
  assert stream.getvalue() == ""
  bar.start(200)  # a resumed run starts where it was
  bar.advance(5000, 9)  # the last call overshoots 1,000 steps: the bar shows the budget
  bar.close()
  bar.close()
  text = " ".join(stream.getvalue().split())
  assert "1,000/1,000 steps" in text and "5,000" not in text


def test_progress_bar_and_lines_render_to_a_stream_that_is_not_a_terminal():
  from spo_jax.progress import BarProgress, make_progress

  config = preset("balance").replace(num_timesteps=1000)
  metrics = {"iteration": 2, "step": 400, "time/elapsed_s": 2.0, "eval/episode_reward": 12.5,
             "train/winrate_std": 0.25, "train/total_queries": 1234,
             "per_seed": [{"eval/episode_reward": 10.0}, {"eval/episode_reward": 15.0}]}
  stream = io.StringIO()
  bar = BarProgress(config, stream)
  bar.start(0)
  bar.advance(400, 2)
  bar.evaluation(metrics)
  bar.close()
  text = " ".join(stream.getvalue().split())  # the info line wraps at the console width
  assert "400/1,000 steps" in text and "win-rate std 0.250" in text and "queries 1,234" in text

  stream = io.StringIO()  # auto: StringIO is not a TTY, so one plain line per evaluation
  lines = make_progress(config, "auto", stream)
  lines.start(0)
  lines.evaluation(metrics)
  lines.evaluation({**metrics, "iteration": 4, "step": 1000, "time/elapsed_s": 2.5})
  lines.close()
  line, second = stream.getvalue().splitlines()
  # 400 steps in 2 s = 200 steps/s (the first line: the whole run so far, compile included);
  # 2 seeds with returns 10 and 15
  assert "400/1,000" in line and "200 steps/s" in line and "min 10.0, max 15.0" in line
  # then the rate since the last line: 600 steps in 0.5 s = 1,200 steps/s (not 1000 / 2.5)
  assert "1,000/1,000" in second and " 1,200 steps/s" in second
  assert make_progress(config, "none", stream).__class__.__name__ == "_Silent"
