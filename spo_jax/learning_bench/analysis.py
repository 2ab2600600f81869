"""The summary: each contender's final return, return at equal env steps (interpolated, never
extrapolated), wall time and throughput over the seeds, and the ratios between contenders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Table columns: the return at these fractions of the budget, interpolated.
GRID_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def interpolate(xs: Sequence[float], ys: Sequence[float], grid: Sequence[float]) -> np.ndarray:
  """ys(xs) at `grid`, linear between points, NaN outside [xs[0], xs[-1]] (no extrapolation).
  xs: [P] increasing (evaluation env steps or seconds); ys: [P]; returns [G]."""
  xs, ys, grid = (np.asarray(a, dtype=float) for a in (xs, ys, grid))
  if xs.size == 0:
    return np.full(grid.shape, np.nan)
  return np.interp(grid, xs, ys, left=np.nan, right=np.nan)


def _mean(values: Sequence[float | None]) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _ratio(a: float | None, b: float | None, positive_only: bool) -> float | None:
  """a / b; for returns only when both are positive (a ratio of negative returns reads
  backwards, and one across zero means nothing)."""
  if a is None or b is None or b == 0 or (positive_only and (a <= 0 or b <= 0)):
    return None
  return a / b


def summarize(plan: dict[str, Any], runs: dict[tuple[str, int], dict[str, Any]]
              ) -> dict[str, Any]:
  """Per contender: final return (mean and per seed), return at the grid's env steps
  (mean over the seeds; None unless every finished seed's curve covers the point), wall
  time, env steps, env steps/s (whole run; and steady: from the first evaluation after
  training began to the last, compilation excluded); and the ratios between contenders."""
  grid = [round(f * plan["budget"]) for f in GRID_FRACTIONS]
  rows = {}
  for name in plan["contenders"]:
    mine = [runs[(name, s)] for s in plan["seeds"] if (name, s) in runs]
    finals, at_grid, steady = {}, [], []
    for run in mine:
      curve = run["curve"]
      finals[run["seed"]] = curve[-1]["eval_return"] if curve else None
      at_grid.append(interpolate([p["env_steps"] for p in curve],
                                 [p["eval_return"] for p in curve], grid))
      trained = [p for p in curve if p["env_steps"] > 0]
      if len(trained) >= 2 and trained[-1]["wall_s"] > trained[0]["wall_s"]:
        steady.append((trained[-1]["env_steps"] - trained[0]["env_steps"])
                      / (trained[-1]["wall_s"] - trained[0]["wall_s"]))
    grid_means = [None] * len(grid)
    if at_grid:
      stacked = np.stack(at_grid)
      grid_means = [None if np.isnan(col).any() else float(col.mean()) for col in stacked.T]
    rows[name] = {
        "contender": name, "seeds_done": len(mine), "seeds_planned": len(plan["seeds"]),
        "final_return_mean": _mean(list(finals.values())), "final_return_per_seed": finals,
        "return_at_steps": grid_means,  # aligned with `grid`
        "wall_s_mean": _mean([r["wall_s"] for r in mine]),
        "env_steps_mean": _mean([r["env_steps"] for r in mine]),
        "env_steps_per_s_mean": _mean([r["env_steps"] / r["wall_s"] for r in mine]),
        "steady_env_steps_per_s_mean": _mean(steady)}
  for row in rows.values():
    for ref in ("brax_ppo", "ground_truth"):
      other = rows.get(ref)
      row[f"final_return_over_{ref}"] = _ratio(
          row["final_return_mean"], other and other["final_return_mean"], True)
      row[f"wall_s_over_{ref}"] = _ratio(row["wall_s_mean"], other and other["wall_s_mean"],
                                         False)
  ratios = {}
  if "ground_truth" in rows and "brax_ppo" in rows:
    ratios["ground_truth / brax_ppo final return"] = rows["ground_truth"][
        "final_return_over_brax_ppo"]
    ratios["ground_truth / brax_ppo wall time"] = rows["ground_truth"]["wall_s_over_brax_ppo"]
  if "spo" in rows and "ground_truth" in rows:
    ratios["spo / ground_truth final return"] = rows["spo"]["final_return_over_ground_truth"]
  return {"grid": grid, "rows": rows, "ratios": ratios}
