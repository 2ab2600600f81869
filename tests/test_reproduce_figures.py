"""spo_jax/reproduce/figures.py and report.py: figures, tables and the docs' generated
blocks, on synthetic results (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spo_jax.reproduce import analysis, figures, report


def _synthetic_finals(rng) -> pd.DataFrame:
  rows = []

  def add(question, setting, method, measure, values, level=None):
    for seed, value in enumerate(values):
      rows.append({"question": question, "run": f"{setting}-{method}", "method": method,
                   "setting": setting, "level": level, "env": "x", "seed": seed,
                   "measure": measure, "value": float(value)})

  for method in ("spo", "rm"):
    if method == "spo":  # the soft-label reference appears in Q3 too
      add("q3", "mistake", "spo_soft", "final_eval_return", rng.normal(size=5), 0.2)
    for k in range(3):
      add("q1", "control", method, f"rater_{k}", rng.normal(size=5))
      add("q1", "matrix_game", method, f"prob_last_{k}", rng.dirichlet(np.ones(3))[:1].repeat(5))
      add("q1", "matrix_game", method, f"prob_average_{k}", np.full(5, 1 / 3))
    add("q1", "matrix_game", method, "exploitability_last", rng.uniform(size=5) * 0.3)
    for target in ("last", "mixture") if method == "spo" else ("last",):
      add("q1", "control", method, f"br_exploitability_{target}", rng.uniform(size=5) * 0.2)
      add("q1", "control", method, f"br_exploitability_{target}_start",
          rng.uniform(size=5) * 0.1)
    for beta in (0.3, 1.0, 3.0):
      add("q3", "bradley_terry", method, "final_eval_return", rng.normal(size=5), beta)
    for eps in (0.0, 0.2):
      add("q3", "mistake", method, "final_eval_return", rng.normal(size=5), eps)
    for teacher, prop in (("constraint", "satisfied"), ("deadline", "reached")):
      add("q4", teacher, method, prop, rng.uniform(size=5))
      add("q4", teacher, method, "return", rng.normal(size=5))
  add("q1", "head_to_head", "spo", "win_rate_vs_rm", rng.uniform(size=5))
  return pd.DataFrame(rows)


def _synthetic_results() -> pd.DataFrame:
  rows = []
  for method in ("spo", "rm", "ppo", "spo_soft"):
    for seed in range(5):
      for it in range(1, 11):
        if method in ("spo", "rm"):
          rows.append({"question": "q1", "run": f"matrix-{method}", "method": method,
                       "setting": "matrix_game", "level": None, "env": "matrix_game",
                       "seed": seed, "iteration": it, "step": 64 * it,
                       "eval/exploitability_last": 0.3 / it + 0.01 * seed,
                       "eval/exploitability_average": 0.2 / it})
        rows.append({"question": "q2", "run": f"oracle-{method}", "method": method,
                     "setting": "oracle", "level": None, "env": "point_reach", "seed": seed,
                     "iteration": it, "step": 100 * it, "eval/episode_reward": it + seed,
                     "train/total_queries": 0 if method == "ppo" else 15 * it,
                     "train/total_feedback": 0 if method == "ppo" else 12 * it})
  return pd.DataFrame(rows)


def test_figures_of_every_question_on_synthetic_data(tmp_path):
  finals = _synthetic_finals(np.random.default_rng(0))
  results = _synthetic_results()
  expected = {"q1": ["q1_exploitability.png", "q1_strategies.png", "q1_control.png",
                     "q1_best_response.png"],
              "q2": ["q2_sample_efficiency.png"], "q3": ["q3_noise.png"],
              "q4": ["q4_nonmarkov.png"]}
  for question, names in expected.items():
    (tmp_path / question).mkdir()
    stats = analysis.summarize(finals, question, reps=200)
    part = finals[finals["question"] == question]
    assert len(stats) == len(part.groupby(["setting", "level", "method", "measure"],
                                          dropna=False))
    for row in stats:
      group = part[(part["setting"] == row["setting"]) & (part["method"] == row["method"])
                   & (part["measure"] == row["measure"])]
      if row["level"] is not None:
        group = group[group["level"] == row["level"]]
      # 5 seeds: the IQM drops the lowest and the highest and averages the middle 3.
      assert row["iqm"] == pytest.approx(np.sort(group["value"])[1:4].mean(), abs=1e-12)
      assert row["seeds"] == 5 and row["lower"] <= row["iqm"] <= row["upper"]
    paths = figures.figures(question, results, stats, tmp_path)
    assert paths == [tmp_path / question / name for name in names]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_figures_without_data_draw_nothing(tmp_path):
  (tmp_path / "q3").mkdir()
  assert figures.figures("q3", pd.DataFrame(), [], tmp_path) == []
  assert list((tmp_path / "q3").iterdir()) == []


def test_markdown_table_rows_say_setting_level_method_measure_and_interval():
  rows = [{"setting": "mistake", "level": 0.2, "method": "rm", "measure": "prob_last_1",
           "iqm": 0.12345, "lower": 0.1, "upper": 0.2, "seeds": 5},
          {"setting": "oracle", "level": None, "method": "ppo", "measure": "final_eval_return",
           "iqm": 12.0, "lower": 11.0, "upper": 13.5, "seeds": 3}]
  assert report.markdown_table(rows).splitlines() == [
      "| setting | method | measure | IQM | 95% CI | seeds |", "|---|---|---|---|---|---|",
      "| mistake 0.2 | RM (reward model) | P(outcome 1), last iterate | 0.123 | [0.100, 0.200] "
      "| 5 |",
      "| oracle | PPO (env reward) | final return (eval) | 12.000 | [11.000, 13.500] | 3 |"]
  assert report.markdown_table([]) == "_no finished runs_\n"
  assert report.measure_label("some_new_measure") == "some new measure"


def test_question_block_names_the_command_the_exact_winner_and_the_figures(tmp_path):
  block = report.question_block("q1", "spo-reproduce --question q1", [],
                                [tmp_path / "q1_control.png"], 90.0, 5, figure_prefix="q1/",
                                table="rps")
  assert block.startswith("### Q1: intransitive preferences\n\nCommand: `spo-reproduce "
                          "--question q1`")
  assert "Wall time of the runs (this invocation): 1.5 min." in block
  assert "exact Minimax Winner (linear program, `spo_jax.minimax`) = (0.333, 0.333, 0.333)" \
      in block
  assert "![q1_control](q1/q1_control.png)" in block
  assert block.endswith("_no finished runs_\n")


def test_write_docs_replaces_generated_blocks_and_keeps_the_reading(tmp_path):
  docs = tmp_path / "results"
  md = tmp_path / "results.md"
  md.write_text("# Results\n\nintro\n\n<!-- generated:q1 start -->\nold\n"
                "<!-- generated:q1 end -->\n\nreading of q1\n")
  figure = tmp_path / "q1_control.png"
  figure.write_bytes(b"png")
  assert report.write_docs(docs, {"q1": "new q1", "q2": "new q2"}, [figure]) == md
  assert md.read_text() == (
      "# Results\n\nintro\n\n<!-- generated:q1 start -->\nnew q1\n<!-- generated:q1 end -->"
      "\n\nreading of q1\n\n<!-- generated:q2 start -->\nnew q2\n<!-- generated:q2 end -->\n")
  assert (docs / "q1_control.png").read_bytes() == b"png"


@pytest.mark.parametrize("measure, words", [
    ("prob_average_2", "P(outcome 2), averaged policy"),
    ("win_rate_vs_rm", "raters' win rate vs RM")])
def test_measure_labels(measure, words):
  assert report.measure_label(measure) == words
