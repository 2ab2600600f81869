"""Statistics across seeds: tidy tables of finished runs, the interquartile mean (IQM) and
95% stratified-bootstrap confidence intervals (rliable; Agarwal et al. 2021, "Deep RL at the
Edge of the Statistical Precipice").

pandas and rliable come from the `reproduce` extra and are imported inside the functions
that use them (`extras.require`), so importing this module needs neither; scipy.stats
(~0.8 s) is imported inside the IQM functions for the same reason.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spo_jax.config import ConfigError
from spo_jax.minimax import minimax_winner
from spo_jax.reproduce.extras import require
from spo_jax.reproduce.plans import Run
from spo_jax.reproduce.running import HEAD_TO_HEAD_FILE, read_metrics
from spo_jax.teachers.matrix_game import load_table


def collect(runs: list[Run], out: Path):
  """(results, finals) pandas DataFrames of the runs under `out` that finished.

  results: one row per run, seed and evaluation (every logged metric a column);
  finals: one row per run, seed and final measure (columns question, run, method,
  setting, level, env, seed, measure, value), plus Q1's head-to-head win rates when
  OUT/q1/head_to_head.json exists.
  """
  pd = require("pandas")
  rows, finals = [], []
  for run in runs:
    run_dir = out / run.question / run.name
    if not (run_dir / "final.json").exists():
      continue
    ident = {"question": run.question, "run": run.name, "method": run.method,
             "setting": run.setting, "level": run.level, "env": run.config.env}
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for row in read_metrics(run_dir):
      seen[(row["seed"], row["iteration"])] = row  # a resume re-logs: the last row wins
    rows.extend({**ident, **row} for _, row in sorted(seen.items()))
    final = json.loads((run_dir / "final.json").read_text())
    for measure, values in final["measures"].items():
      for seed, value in zip(final["seeds"], values, strict=True):
        finals.append({**ident, "seed": seed, "measure": measure, "value": value})
  h2h_path = out / "q1" / HEAD_TO_HEAD_FILE
  if any(r.question == "q1" for r in runs) and h2h_path.exists():
    data = json.loads(h2h_path.read_text())
    for seed, value in zip(data["seeds"], data["win_rate_spo_vs_rm"], strict=True):
      finals.append({"question": "q1", "run": "control-spo-vs-rm", "method": "spo",
                     "setting": "head_to_head", "level": None, "env": "",
                     "seed": seed, "measure": "win_rate_vs_rm", "value": value})
  return pd.DataFrame(rows), pd.DataFrame(finals)


def iqm(scores: np.ndarray) -> float:
  """Interquartile mean of all entries of `scores` [R, T] (runs x tasks): the mean of the
  middle 50% after sorting (`rliable.metrics.aggregate_iqm`, scipy's trim_mean at 25%)."""
  metrics = require("rliable.metrics")
  return float(metrics.aggregate_iqm(np.asarray(scores, dtype=np.float64)))


@functools.cache
def bootstrap_backend() -> tuple[Any, str]:
  """(rliable.library, its name) if rliable's bootstrap works here, else (None, why not).

  rliable 1.2.0 bootstraps with `arch`; arch 7.x cannot be imported with pandas 3 and arch 8
  renamed the `random_state` argument rliable passes. The `reproduce`/`test` extras pin
  arch < 8 and pandas < 3 so rliable works; with other versions installed by hand,
  `stratified_bootstrap` is the same estimator (runs resampled with replacement within each
  task, percentile interval) and every table names which one produced it (`ci_method`).
  Probed once per process.
  """
  try:
    from rliable import library

    library.get_interval_estimates({"probe": np.arange(4.0)[:, None]},
                                   lambda x: np.array([np.mean(x)]), reps=10)
    return library, "rliable.library.get_interval_estimates"
  except Exception as error:  # noqa: BLE001 - any failure of the probe means: fall back
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
    return None, f"NumPy stratified bootstrap (rliable.library unusable here: {reason})"


def ci_method() -> str:
  """The name of what computes the confidence intervals (see `bootstrap_backend`)."""
  return bootstrap_backend()[1]


def stratified_bootstrap(scores: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray],
                         reps: int, seed: int = 0, size: float = 0.95) -> np.ndarray:
  """Percentile interval [2, P] of `statistic` over `reps` resamples of the runs of
  `scores` [R, T], resampled with replacement independently within each task (column).

  statistic maps a batch of resamples [B, R, T] to [B, P]; row 0 is the lower bound (the
  (1 - size)/2 percentile), row 1 the upper.
  """
  rng = np.random.default_rng(seed)
  runs, tasks = scores.shape
  stats = []
  # Batches of 1000 resamples bound the memory of the [B, R, T] index array.
  for start in range(0, reps, 1000):
    batch = min(1000, reps - start)
    idx = rng.integers(0, runs, size=(batch, runs, tasks))
    stats.append(statistic(scores[idx, np.arange(tasks)[None, None, :]]))
  stats = np.concatenate(stats)
  tail = 100 * (1 - size) / 2
  return np.percentile(stats, [tail, 100 - tail], axis=0)


def batch_iqm(samples: np.ndarray) -> np.ndarray:
  """[B, R, T] -> [B, 1]: the IQM over runs and tasks of each resample (a `statistic` for
  `stratified_bootstrap`)."""
  from scipy import stats

  return stats.trim_mean(samples.reshape(samples.shape[0], -1), 0.25, axis=1)[:, None]


def iqm_with_ci(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
  """(IQM, lower, upper) of `scores` [R] or [R, T], 95% stratified-bootstrap interval.

  One run gives no spread: the interval is the point itself.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim == 1:
    scores = scores[:, None]
  point = iqm(scores)
  if scores.shape[0] < 2:
    return point, point, point
  library, _ = bootstrap_backend()
  if library is not None:
    # rliable's StratifiedBootstrap draws its resamples from NumPy's GLOBAL generator
    # (`np.random.choice` in `update_indices`), whatever `random_state` says, so the same
    # scores gave other intervals on every call. Seed the global generator for this call
    # and put its state back, so an interval depends only on (scores, reps, seed). No
    # `random_state`: it changes nothing, and arch deprecates it with a warning per call.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
      _, intervals = library.get_interval_estimates(
          {"x": scores}, lambda x: np.array([iqm(x)]), reps=reps)
    finally:
      np.random.set_state(saved)
    lower, upper = intervals["x"][:, 0]
  else:
    lower, upper = stratified_bootstrap(scores, batch_iqm, reps, seed)[:, 0]
  return point, float(lower), float(upper)


def curve_iqm(x_per_seed: list[np.ndarray], y_per_seed: list[np.ndarray], points: int = 25,
              reps: int = 1000) -> tuple[np.ndarray, ...]:
  """IQM curve with 95% bands across seeds on a common x grid.

  Each seed's (x, y) is linearly interpolated onto `points` values of x spanning the range
  every seed covers; at each grid point the IQM over seeds and its bootstrap interval.
  Returns (grid [P], iqm [P], lower [P], upper [P]).
  """
  from scipy import stats

  low = max(float(np.min(x)) for x in x_per_seed)
  high = min(float(np.max(x)) for x in x_per_seed)
  grid = np.linspace(low, high, points) if high > low else np.array([high])
  ys = np.stack([np.interp(grid, x, y) for x, y in zip(x_per_seed, y_per_seed, strict=True)])
  mid = np.array([iqm(ys[:, p:p + 1]) for p in range(len(grid))])
  if ys.shape[0] < 2:
    return grid, mid, mid, mid
  # Seeds are resampled together across the grid, so a band is one curve's worth of seeds.
  idx = np.random.default_rng(0).integers(0, ys.shape[0], size=(reps, ys.shape[0]))
  boot = stats.trim_mean(ys[idx], 0.25, axis=1)  # [reps, P]
  lower, upper = np.percentile(boot, [2.5, 97.5], axis=0)
  return grid, mid, lower, upper


def summarize(finals, question: str, reps: int) -> list[dict[str, Any]]:
  """One row per (setting, level, method, measure) of `question` in `finals` (a DataFrame
  from `collect`), in order of first appearance: keys setting, level (None when absent),
  method, measure, iqm, lower, upper (95% CI over seeds) and seeds (how many)."""
  rows = []
  if finals.empty:
    return rows
  part = finals[finals["question"] == question]
  keys = ["setting", "level", "method", "measure"]
  for (setting, level, method, measure), group in part.groupby(keys, dropna=False, sort=False):
    values = group.sort_values("seed")["value"].to_numpy(dtype=np.float64)
    point, lower, upper = iqm_with_ci(values, reps=reps)
    rows.append({"setting": setting, "level": None if _isnan(level) else level,
                 "method": method, "measure": measure, "iqm": point, "lower": lower,
                 "upper": upper, "seeds": len(values)})
  return rows


def _isnan(value) -> bool:
  return value is None or (isinstance(value, float) and math.isnan(value))


def exact_minimax_winner(table: str) -> np.ndarray | None:
  """The exact Minimax Winner [K] of payoff `table` (a preset name or a file, as
  `--table` takes it; `spo_jax.minimax`'s linear program), or None if it cannot be read."""
  try:
    return minimax_winner(load_table(table))
  except (ConfigError, OSError, ValueError):
    return None
