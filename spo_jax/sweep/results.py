"""A sweep's result tables, from its groups' metrics.jsonl:

  results.csv  tidy: one row per point x seed x evaluation (the point's values, the seed,
               the group, every logged metric)
  summary.csv  one row per point: over its seeds, the final evaluation return (mean, and the
               interquartile mean with a 95% bootstrap interval: rliable's
               `get_interval_estimates` when it works here, else the same percentile
               bootstrap in NumPy; Agarwal et al. 2021), the best return (mean over seeds of
               each seed's best), env steps, and the env steps and teacher labels each seed
               needed to first reach the target return (median over the seeds that did).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from spo_jax import provenance
from spo_jax import run_dir as run_dir_lib
from spo_jax.loggers import read_jsonl
from spo_jax.reproduce import analysis
from spo_jax.sweep.plan import Group, Plan
from spo_jax.sweep.run import group_dir, is_done

RESULTS = "results.csv"
SUMMARY = "summary.csv"
RETURN = "eval/episode_reward"
LABELS = "train/total_feedback"


def read_rows(plan: Plan, groups: list[Group]) -> list[dict[str, Any]]:
  """The metric rows of every finished group, tagged with their group, sorted by point,
  seed and iteration."""
  rows = []
  for group in groups:
    if not is_done(plan, group):
      continue
    for row in read_jsonl(group_dir(plan, group) / run_dir_lib.METRICS):
      point = row["point"]
      first = {"group": group.name, "point": point,
               **{k: row.get(k) for k in plan.points[point]},
               "seed": row["seed"], "step": row["step"], "iteration": row["iteration"]}
      rows.append({**first, **row})
  rows.sort(key=lambda r: (r["point"], r["seed"], r["iteration"]))
  return rows


def provenance_lines(plan: Plan, groups: list[Group]) -> list[str]:
  """What trained each finished group (spo_jax/provenance.py: code, versions, devices)."""
  lines = []
  for group in groups:
    if is_done(plan, group):
      try:
        described = provenance.summary(provenance.read(group_dir(plan, group)))
      except ValueError as error:
        described = [f"provenance: unreadable ({error})"]
      lines += [f"{group.name} {described[0]}", *(f"     {line}" for line in described[1:])]
  return lines


def iqm_interval(scores: np.ndarray) -> tuple[float, float, float, str]:
  """(IQM, lower, upper, method) of the scores [S] of one point's seeds."""
  try:
    with warnings.catch_warnings():  # arch's FutureWarning about rliable's random_state
      warnings.simplefilter("ignore", FutureWarning)
      point, lower, upper = analysis.iqm_with_ci(scores)
    return point, lower, upper, analysis.ci_method()
  except ImportError:  # rliable not installed: the same estimator in NumPy and SciPy
    from scipy import stats  # lazy: ~0.8 s, only on this fallback

    values = np.asarray(scores, np.float64)[:, None]
    point = float(stats.trim_mean(values[:, 0], 0.25))
    if len(values) < 2:
      return point, point, point, "none (one seed)"
    lower, upper = analysis.stratified_bootstrap(values, analysis.batch_iqm, 2000)[:, 0]
    return point, float(lower), float(upper), "NumPy percentile bootstrap"


def summarize(plan: Plan, rows: list[dict[str, Any]], target: float | None
              ) -> list[dict[str, Any]]:
  """One summary row per point that has results (see the module docstring)."""
  by_point: dict[int, dict[int, list[dict[str, Any]]]] = {}
  for row in rows:
    by_point.setdefault(row["point"], {}).setdefault(row["seed"], []).append(row)
  summary = []
  for point, seeds in sorted(by_point.items()):
    finals = np.array([runs[-1][RETURN] for runs in seeds.values()])
    bests = np.array([max(r[RETURN] for r in runs) for runs in seeds.values()])
    iqm, lower, upper, method = iqm_interval(finals)
    entry: dict[str, Any] = {"point": point, **{k: _cell(v) for k, v in
                                                plan.points[point].items()},
                             "seeds": len(seeds), "final_return_mean": float(finals.mean()),
                             "final_return_iqm": iqm, "final_return_iqm_low": lower,
                             "final_return_iqm_high": upper,
                             "best_return_mean": float(bests.mean()),
                             "env_steps": int(np.mean([runs[-1]["step"]
                                                       for runs in seeds.values()]))}
    if target is not None:
      reached = [next((r for r in runs if r[RETURN] >= target), None) for runs in seeds.values()]
      hits = [r for r in reached if r is not None]
      entry["reached_target"] = f"{len(hits)}/{len(seeds)}"
      entry["steps_to_target"] = (float(np.median([r["step"] for r in hits])) if hits
                                  else math.nan)
      entry["labels_to_target"] = (float(np.median([r.get(LABELS, 0) for r in hits])) if hits
                                   else math.nan)
    entry["ci_method"] = method
    summary.append(entry)
  return summary


def _cell(value: Any) -> Any:
  return json.dumps(value) if isinstance(value, list | tuple) else value


def csv_text(rows: list[dict[str, Any]]) -> str:
  header: list[str] = []
  for row in rows:
    header += [k for k in row if k not in header]
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _cell(v) for k, v in row.items()})
  return buffer.getvalue()


def write_tables(plan: Plan, rows: list[dict[str, Any]], summary: list[dict[str, Any]]
                 ) -> tuple[Path, Path]:
  results, summary_path = plan.out / RESULTS, plan.out / SUMMARY
  run_dir_lib.write_text_atomic(results, csv_text(rows))
  run_dir_lib.write_text_atomic(summary_path, csv_text(summary))
  return results, summary_path


def sort_summary(summary: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
  """Best first for returns (descending), smallest first for the *_to_target columns and for
  fields of the points; rows without a value last."""
  descending = field.startswith(("final_return", "best_return"))

  def key(entry: dict[str, Any]) -> tuple:
    value = entry.get(field)
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
      return (1, 0)
    if isinstance(value, int | float):
      return (0, -value if descending else value)
    return (0, str(value))

  return sorted(summary, key=key)


def format_table(summary: list[dict[str, Any]]) -> str:
  """The summary as an aligned text table (floats to 4 significant digits)."""
  if not summary:
    return "(no finished points)"
  columns = [k for k in summary[0] if k != "ci_method"]
  cells = [[_format(entry.get(c)) for c in columns] for entry in summary]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
  lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
  lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
  return "\n".join(lines) + f"\n(IQM interval: {summary[0]['ci_method']})"


def _format(value: Any) -> str:
  if isinstance(value, float):
    return "-" if math.isnan(value) else f"{value:.4g}"
  return "-" if value is None else str(value)
