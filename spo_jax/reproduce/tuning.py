"""Tuning grids for the reproduction's presets, on tuning seeds only (never the reported ones).

A tuning script (`scripts/tune_reproduce.py`, `scripts/tune_matrix_game.py`) names its grid as
(method, name, config) triples; this module trains each configuration that has not finished
(`train_grid`), and writes the table that chooses one configuration per method
(`write_summary`: OUT/summary.csv and OUT/summary.md).
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spo_jax.config import Config
from spo_jax.reproduce.running import last_rows

Grid = Iterable[tuple[str, str, Config]]  # (method, run name, config)


def training_stopped(run_dir: Path, config: Config) -> bool:
  """Whether the run in `run_dir` stopped where training stops it: its slowest seed reached
  the env-step budget, or the iteration cap was reached (False with no metrics yet). A run
  killed half way is not stopped, and is trained again from the start."""
  last = last_rows(run_dir)
  return bool(last) and (min(r["step"] for r in last) >= config.num_timesteps
                         or max(r["iteration"] for r in last) >= config.max_iterations)


def train_grid(grid: Grid, out: Path, wanted: Callable[[str, str], bool] = lambda m, n: True,
               log: Callable[[str], None] = print) -> None:
  """Train every (method, name, config) of `grid` that `wanted(method, name)` selects into
  OUT/<name>, skipping the runs that already stopped (`training_stopped`)."""
  import spo_jax  # noqa: PLC0415  (spo_jax imports this package's parents: no cycle at load)
  for method, name, config in grid:
    if not wanted(method, name):
      continue
    run_dir = out / name
    if training_stopped(run_dir, config):
      log(f"{name}: finished, skipped")
      continue
    spo_jax.train(config, run_dir=run_dir, overwrite=True)


def choose(summary: list[dict[str, Any]], score: str, lower_is_better: bool) -> None:
  """Mark (`chosen` = "yes") the best row of each method by `score`; a method with one row
  (an untuned baseline) chooses nothing."""
  for method in dict.fromkeys(s["method"] for s in summary):
    mine = [s for s in summary if s["method"] == method]
    if len(mine) > 1:
      best = (min if lower_is_better else max)(mine, key=lambda s: s[score])
      best["chosen"] = "yes"


def write_summary(out: Path, summary: list[dict[str, Any]], score: str, lower_is_better: bool,
                  header: list[str], cells: Callable[[dict[str, Any]], list[str]]) -> str:
  """Choose per method (`choose`), write OUT/summary.csv (the rows' fields, then `chosen`)
  and OUT/summary.md (a table with `header` and `cells(row)`, then the chosen mark); returns
  the Markdown table."""
  choose(summary, score, lower_is_better)
  fields = list(dict.fromkeys(k for s in summary for k in s if k != "chosen")) + ["chosen"]
  with open(out / "summary.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fields, restval="")
    writer.writeheader()
    writer.writerows(summary)
  lines = ["| " + " | ".join([*header, "chosen"]) + " |", "|---" * (len(header) + 1) + "|"]
  lines += ["| " + " | ".join([*cells(s), s.get("chosen", "")]) + " |" for s in summary]
  table = "\n".join(lines) + "\n"
  (out / "summary.md").write_text(table)
  return table


def write_spread_summary(out: Path, scores: Iterable[tuple[str, str, list[float]]],
                         measure: str, digits: int) -> str:
  """`write_summary` of (method, configuration, per-seed scores) triples, lower is better:
  per configuration the seeds, and the mean with the min-max over seeds, as `measure`
  ("..., mean (min-max)") with `digits` decimals; configurations without scores are left
  out. Returns the Markdown table."""
  summary = [{"method": method, "config": name, "seeds": len(values),
              "mean": statistics.mean(values), "min": min(values), "max": max(values)}
             for method, name, values in scores if values]
  return write_summary(
      out, summary, "mean", lower_is_better=True,
      header=["method", "configuration", "seeds", measure],
      cells=lambda s: [s["method"], s["config"], str(s["seeds"]),
                       f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"])
