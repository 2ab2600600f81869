"""`spo-plot`: learning curves of saved runs to a PNG.

  spo-plot RUN_DIR [RUN_DIR ...] [--metric eval/episode_reward] [--x step|iteration|time]
           [--aggregate mean|iqm] [--labels A B ...] [--out curves.png]

Each run is one curve; a sweep directory (spo-sweep: plan.json, groups/) is one curve per
point, labelled with the point's values. A run of several seeds (`--num-seeds S`, or several
rows per evaluation) is aggregated across its seeds: every seed's curve is linearly
interpolated onto a common grid of G points spanning the x range all seeds cover, then at
each grid point

  mean:  (1/S) Σ_s y_s          iqm: the mean of the middle 50% of the S values
                                     (scipy.stats.trim_mean(y, 0.25); Agarwal et al. 2021)

and the shaded band is a 95% percentile-bootstrap confidence interval of that aggregate:
resample the S seeds with replacement B = 2000 times, aggregate each resample, take the
2.5th and 97.5th percentiles. A single seed is drawn as is, without a band.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from spo_jax.config import ConfigError
from spo_jax.loggers import read_jsonl

X_FIELDS = {"step": "step", "iteration": "iteration", "time": "time/elapsed_s"}
X_LABELS = {"step": "env steps", "iteration": "iteration", "time": "wall time (s)"}
AGGREGATES = ("mean", "iqm")


def read_run(run_dir: str | Path) -> list[dict]:
  """The metric rows of a run directory (metrics.jsonl, else metrics.csv)."""
  run_dir = Path(run_dir)
  if not run_dir.is_dir():
    raise ConfigError(f"run directory '{run_dir}' does not exist")
  if (run_dir / "metrics.jsonl").exists():
    rows = read_jsonl(run_dir / "metrics.jsonl")
  elif (run_dir / "metrics.csv").exists():
    with open(run_dir / "metrics.csv") as f:
      rows = [{k: float(v) for k, v in r.items() if v not in ("", None)}
              for r in csv.DictReader(f)]
  else:
    raise ConfigError(f"'{run_dir}' has no metrics.jsonl or metrics.csv: not a spo_jax run "
                      "directory, or the run has not evaluated yet")
  if not rows:
    raise ConfigError(f"'{run_dir}' has no metric rows yet (the first evaluation comes after "
                      "eval_every iterations)")
  return rows


def is_sweep(path: str | Path) -> bool:
  path = Path(path)
  return (path / "plan.json").is_file() and (path / "groups").is_dir()


def sweep_points(sweep_dir: str | Path) -> list[tuple[str, list[dict]]]:
  """(label, rows) per point of a sweep directory that has rows, in point order: the rows of
  every group's metrics.jsonl, split by their `point` field."""
  sweep_dir = Path(sweep_dir)
  points = json.loads((sweep_dir / "plan.json").read_text())["points"]
  by_point: dict[int, list[dict]] = {}
  for metrics in sorted((sweep_dir / "groups").glob("*/metrics.jsonl")):
    for row in read_jsonl(metrics):
      by_point.setdefault(int(row["point"]), []).append(row)
  if not by_point:
    raise ConfigError(f"sweep '{sweep_dir}' has no metric rows yet")
  return [(" ".join(f"{k}={json.dumps(v)}" for k, v in points[p].items()) or f"point {p}",
           rows) for p, rows in sorted(by_point.items())]


def seed_curves(rows: list[dict], metric: str, x: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """{seed: (x [T], y [T])}, sorted by x, rows without the metric skipped."""
  field = X_FIELDS[x]
  curves: dict[int, list[tuple[float, float]]] = {}
  for row in rows:
    if metric in row and field in row and np.isfinite(row[metric]):
      curves.setdefault(int(row.get("seed", 0)), []).append((float(row[field]),
                                                             float(row[metric])))
  out = {}
  for seed, points in curves.items():
    xs, ys = np.asarray(sorted(points)).T
    out[seed] = (xs, ys)
  return out


def aggregate(values: np.ndarray, how: str) -> np.ndarray:
  """values [..., S, G] -> [..., G]: mean, or IQM = mean of the middle 50% across seeds."""
  if how == "mean":
    return np.mean(values, axis=-2)
  from scipy.stats import trim_mean  # lazy: scipy.stats takes ~0.8 s, for IQM only

  return trim_mean(values, 0.25, axis=-2)


def common_grid(curves: dict[int, tuple[np.ndarray, np.ndarray]], points: int = 200
                ) -> tuple[np.ndarray, np.ndarray]:
  """x grid [G] over the range every seed covers, and y [S, G] interpolated onto it."""
  lo = max(float(xs[0]) for xs, _ in curves.values())
  hi = min(float(xs[-1]) for xs, _ in curves.values())
  if hi < lo:  # the seeds' ranges do not overlap: fall back to the union, holding the ends
    lo = min(float(xs[0]) for xs, _ in curves.values())
    hi = max(float(xs[-1]) for xs, _ in curves.values())
  grid = np.linspace(lo, hi, points) if hi > lo else np.asarray([lo])
  ys = np.stack([np.interp(grid, xs, y) for xs, y in curves.values()])
  return grid, ys


def bootstrap_band(ys: np.ndarray, how: str, num_resamples: int = 2000, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
  """95% percentile-bootstrap interval of the aggregate over seeds: ys [S, G] -> ([G], [G])."""
  rng = np.random.default_rng(seed)
  index = rng.integers(0, ys.shape[0], size=(num_resamples, ys.shape[0]))
  stats = aggregate(ys[index], how)  # [B, G]
  return np.percentile(stats, 2.5, axis=0), np.percentile(stats, 97.5, axis=0)


def available_metrics(rows: list[dict]) -> list[str]:
  keys = {k for row in rows for k, v in row.items() if isinstance(v, int | float)}
  return sorted(keys - {"seed"})


def plot_runs(run_dirs: list[str | Path], out: str | Path, metric: str = "eval/episode_reward",
              x: str = "step", labels: list[str] | None = None, how: str = "mean") -> Path:
  """Write the learning curves of `run_dirs` to the PNG `out`; every check before drawing."""
  if x not in X_FIELDS:
    raise ConfigError(f"--x '{x}' is not one of {', '.join(X_FIELDS)}")
  if how not in AGGREGATES:
    raise ConfigError(f"--aggregate '{how}' is not one of {', '.join(AGGREGATES)}")
  if labels and len(labels) != len(run_dirs):
    raise ConfigError(f"--labels gives {len(labels)} label(s) for {len(run_dirs)} run(s); "
                      "give one per run directory")
  named = []  # (label, rows, directory)
  for i, run_dir in enumerate(run_dirs):
    label = labels[i] if labels else Path(run_dir).resolve().name
    if is_sweep(run_dir):
      named += [(f"{label}: {point}" if labels or len(run_dirs) > 1 else point, rows, run_dir)
                for point, rows in sweep_points(run_dir)]
    else:
      named.append((label, read_run(run_dir), run_dir))
  runs = []
  for label, rows, run_dir in named:
    if not any(metric in row for row in rows):
      raise ConfigError(f"metric '{metric}' is not in '{run_dir}'; available: "
                        + ", ".join(available_metrics(rows)))
    curves = seed_curves(rows, metric, x)
    if not curves:
      raise ConfigError(f"'{run_dir}' has no rows with both '{metric}' and x field "
                        f"'{X_FIELDS[x]}'; try --x step")
    runs.append((label, curves))

  import matplotlib  # lazy: ~1 s with pyplot, after every input is checked

  matplotlib.use("Agg")  # files only, no display
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, curves in runs:
    if len(curves) == 1:
      (xs, ys), = curves.values()
      ax.plot(xs, ys, label=label)
      continue
    grid, ys = common_grid(curves)
    lo, hi = bootstrap_band(ys, how)
    draw_band(ax, grid, aggregate(ys, how), lo, hi,
              f"{label} ({how} of {len(curves)} seeds, 95% CI)")
  ax.set_xlabel(X_LABELS[x])
  ax.set_ylabel(metric)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out


def draw_band(ax, grid, middle, lower, upper, label: str, color: str | None = None,
              linestyle: str = "-") -> None:
  """Draw an aggregate curve and its confidence band on a matplotlib `ax`: all [P] on the
  x values `grid`; the band takes the line's colour (`color`, or the axes' next one). The
  one band plotter of `spo-plot` and the reproduction's figures."""
  (line,) = ax.plot(grid, middle, color=color, linestyle=linestyle, label=label)
  ax.fill_between(grid, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="spo-plot", description="Learning curves of spo_jax runs to a PNG: one curve per "
      "run; the seeds of a run aggregated (mean or IQM) with a 95% bootstrap band.")
  parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  parser.add_argument("--metric", default="eval/episode_reward",
                      help="metric to plot (default: eval/episode_reward)")
  parser.add_argument("--x", default="step", choices=list(X_FIELDS),
                      help="x axis: env steps, iteration or wall time (default: step)")
  parser.add_argument("--aggregate", default="mean", choices=AGGREGATES,
                      help="across seeds: mean or IQM (default: mean)")
  parser.add_argument("--labels", nargs="+", default=None, help="one legend label per run")
  parser.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
  args = parser.parse_args(argv)
  try:
    out = plot_runs(args.run_dirs, args.out, args.metric, args.x, args.labels, args.aggregate)
  except ConfigError as error:
    print(f"spo-plot: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
  print(f"spo-plot: wrote {out}")


if __name__ == "__main__":
  main()
