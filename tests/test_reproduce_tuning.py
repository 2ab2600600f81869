"""spo_jax/reproduce/tuning.py: when a tuning run counts as stopped, which configuration is
chosen, and the summary table (written from hand-made metrics; nothing is trained)."""

from __future__ import annotations

import csv
import json

import pytest

import spo_jax
from spo_jax.config import Config
from spo_jax.reproduce import tuning

CONFIG = Config(env="point_reach", num_timesteps=1000, max_iterations=10)


def _metrics(run_dir, rows):
  run_dir.mkdir(parents=True, exist_ok=True)
  (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("rows, stopped", [
    ([], False),  # no metrics yet
    # Two seeds; the slowest (seed 1, 900 steps) has not reached the 1,000-step budget.
    ([{"seed": 0, "iteration": 5, "step": 1000}, {"seed": 1, "iteration": 5, "step": 900}],
     False),
    # ... and now it has: an earlier row of seed 1 does not count, the last one does.
    ([{"seed": 1, "iteration": 4, "step": 900}, {"seed": 0, "iteration": 5, "step": 1000},
      {"seed": 1, "iteration": 6, "step": 1000}], True),
    # Far from the budget, but at the iteration cap (10).
    ([{"seed": 0, "iteration": 10, "step": 200}], True),
])
def test_a_run_has_stopped_at_the_budget_of_its_slowest_seed_or_at_the_cap(tmp_path, rows,
                                                                            stopped):
  if rows:
    _metrics(tmp_path / "run", rows)
  assert tuning.training_stopped(tmp_path / "run", CONFIG) is stopped


def test_train_grid_trains_what_is_wanted_and_not_stopped(tmp_path, monkeypatch):
  trained = []
  monkeypatch.setattr(spo_jax, "train", lambda config, run_dir, overwrite: trained.append(
      (run_dir.name, overwrite)))
  _metrics(tmp_path / "a-done", [{"seed": 0, "iteration": 10, "step": 1000}])
  _metrics(tmp_path / "a-half", [{"seed": 0, "iteration": 3, "step": 300}])
  grid = [("a", "a-done", CONFIG), ("a", "a-half", CONFIG), ("a", "a-new", CONFIG),
          ("b", "b-new", CONFIG)]
  skipped = []
  tuning.train_grid(grid, tmp_path, wanted=lambda method, name: method == "a", log=skipped.append)
  # A half-finished run starts again from scratch (overwrite); b is not wanted.
  assert trained == [("a-half", True), ("a-new", True)]
  assert skipped == ["a-done: finished, skipped"]


def test_the_best_of_each_method_is_chosen_and_a_baseline_alone_is_not(tmp_path):
  summary = [{"method": "spo", "config": "spo-1", "score": 0.3},
             {"method": "spo", "config": "spo-2", "score": 0.1},
             {"method": "rm", "config": "rm-1", "score": 0.2},
             {"method": "rm", "config": "rm-2", "score": 0.5},
             {"method": "ppo", "config": "ppo-preset", "score": 0.0}]
  table = tuning.write_summary(tmp_path, summary, "score", lower_is_better=True,
                               header=["method", "configuration", "score"],
                               cells=lambda s: [s["method"], s["config"], f"{s['score']:.1f}"])
  # Lower is better: spo-2 (0.1 < 0.3) and rm-1 (0.2 < 0.5); PPO's preset is alone.
  assert table.splitlines() == [
      "| method | configuration | score | chosen |",
      "|---|---|---|---|",
      "| spo | spo-1 | 0.3 |  |",
      "| spo | spo-2 | 0.1 | yes |",
      "| rm | rm-1 | 0.2 | yes |",
      "| rm | rm-2 | 0.5 |  |",
      "| ppo | ppo-preset | 0.0 |  |"]
  assert (tmp_path / "summary.md").read_text() == table
  with open(tmp_path / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["chosen"] for r in rows] == ["", "yes", "yes", "", ""]
  assert list(rows[0]) == ["method", "config", "score", "chosen"]
  for row in summary:
    row.pop("chosen", None)
  tuning.choose(summary, "score", lower_is_better=False)  # higher is better: the others
  assert [s["config"] for s in summary if s.get("chosen")] == ["spo-1", "rm-2"]


def test_spread_summary_means_and_ranges_lower_is_better(tmp_path):
  """a-1: seeds (0.1, 0.3) -> mean 0.2 (0.1-0.3); a-2: (0.05, 0.15, 0.1) -> mean 0.1 (0.05-
  0.15), chosen; a-3 has no scores and is left out."""
  table = tuning.write_spread_summary(
      tmp_path, [("a", "a-1", [0.1, 0.3]), ("a", "a-2", [0.05, 0.15, 0.1]), ("a", "a-3", [])],
      "score, mean (min-max)", digits=2)
  assert table.splitlines()[2:] == ["| a | a-1 | 2 | 0.20 (0.10-0.30) |  |",
                                    "| a | a-2 | 3 | 0.10 (0.05-0.15) | yes |"]
