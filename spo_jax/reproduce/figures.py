"""PNG figures of each question (matplotlib, Agg backend): IQM curves and bars across seeds
with 95% bootstrap intervals, written under OUT/<question>/.

matplotlib is imported inside `figures` (through `extras.require`), so importing this
module needs none of the `reproduce` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spo_jax.plotting import draw_band
from spo_jax.reproduce.analysis import curve_iqm, exact_minimax_winner
from spo_jax.reproduce.extras import require
from spo_jax.reproduce.plans import (
    DEFAULT_TABLE,
    METHOD_COLORS,
    METHOD_LABELS,
    REFERENCE_METHODS,
)

# What Q4's figure shows of each teacher: the measure `running.teacher_properties` names.
Q4_PROPERTY = {"constraint": "satisfied", "deadline": "reached", "peak": "peak",
               "steady": "variance"}


def _plt():
  matplotlib = require("matplotlib")
  # Files only, no display: the suite runs on headless machines.
  matplotlib.use("Agg")
  return require("matplotlib.pyplot")


def band(ax, results, run_filter, x_key: str, y_key: str, label: str, color: str,
         linestyle: str = "-") -> bool:
  """Plot the IQM curve of `y_key` against `x_key` across the seeds of the rows of
  `results` selected by `run_filter`, with its 95% band; False (nothing drawn) when those
  rows lack either column or any value."""
  part = results[run_filter]
  if part.empty or x_key not in part or y_key not in part or part[y_key].isna().all():
    return False
  xs, ys = [], []
  for _, seed_rows in part.groupby("seed"):
    seed_rows = seed_rows.dropna(subset=[x_key, y_key]).sort_values(x_key)
    if len(seed_rows):
      xs.append(seed_rows[x_key].to_numpy(float))
      ys.append(seed_rows[y_key].to_numpy(float))
  if not xs:
    return False
  grid, mid, lower, upper = curve_iqm(xs, ys)
  draw_band(ax, grid, mid, lower, upper, f"{label} (n={len(xs)})", color, linestyle)
  return True


def bars(ax, rows: list[dict[str, Any]], groups: list[tuple[str, Callable]], title: str,
         ylabel: str) -> None:
  """Grouped bars of IQM with CI whiskers, one colour per method of `rows` (summary rows of
  `analysis.summarize`); `groups` = (label, row predicate) per group of bars."""
  methods = [m for m in METHOD_LABELS if any(r["method"] == m for r in rows)]
  width = 0.8 / max(len(methods), 1)
  for j, method in enumerate(methods):
    for i, (_, predicate) in enumerate(groups):
      match = [r for r in rows if r["method"] == method and predicate(r)]
      if not match:
        continue
      r = match[0]
      ax.bar(i + (j - (len(methods) - 1) / 2) * width, r["iqm"], width,
             yerr=[[r["iqm"] - r["lower"]], [r["upper"] - r["iqm"]]], capsize=3,
             color=METHOD_COLORS[method], label=METHOD_LABELS[method] if i == 0 else None)
  ax.set_xticks(range(len(groups)), [g[0] for g in groups])
  ax.set_title(title)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)


def _q1_exploitability(plt, res, table: str, save: Callable) -> None:
  if res.empty or "eval/exploitability_average" not in res:
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  matrix = res["setting"] == "matrix_game"
  for method, y_key, label, color, style in (
      ("spo", "eval/exploitability_average", "SPO, averaged policy", "tab:blue", "-"),
      ("spo", "eval/exploitability_last", "SPO, last iterate", "tab:blue", "--"),
      ("rm", "eval/exploitability_last", "RM policy", "tab:orange", "--")):
    band(ax, res, matrix & (res["method"] == method), "iteration", y_key, label, color, style)
  ax.axhline(0.0, color="black", linewidth=0.8, label="exact Minimax Winner (0)")
  ax.set_xlabel("iteration")
  ax.set_ylabel("exploitability  max_j P(j beats pi) - 1/2")
  ax.set_title(f"matrix game '{table}': distance from the Minimax Winner")
  ax.legend(fontsize=8)
  save(fig, "q1_exploitability.png")


def _q1_strategies(plt, stats: list[dict[str, Any]], table: str, save: Callable) -> None:
  probs = sorted({r["measure"] for r in stats if r["measure"].startswith("prob_average_")})
  if not probs:
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  outcomes = [m.rsplit("_", 1)[1] for m in probs]
  series = [("SPO, averaged", "spo", "prob_average_", "tab:blue", None),
            ("SPO, last iterate", "spo", "prob_last_", "tab:blue", "//"),
            ("RM, last iterate", "rm", "prob_last_", "tab:orange", "//")]
  width = 0.8 / (len(series) + 1)
  for j, (label, method, prefix, color, hatch) in enumerate(series):
    rows = [next((r for r in stats if r["method"] == method and r["setting"] ==
                  "matrix_game" and r["measure"] == prefix + k), None) for k in outcomes]
    if any(r is None for r in rows):
      continue
    ax.bar(np.arange(len(outcomes)) + j * width, [r["iqm"] for r in rows], width,
           yerr=[[r["iqm"] - r["lower"] for r in rows], [r["upper"] - r["iqm"] for r in rows]],
           capsize=2, color=color, hatch=hatch, alpha=0.9 if hatch is None else 0.5,
           label=label)
  winner = exact_minimax_winner(table)
  if winner is not None and len(winner) == len(outcomes):
    ax.bar(np.arange(len(outcomes)) + len(series) * width, winner, width, color="black",
           label="exact Minimax Winner")
  ax.set_xticks(np.arange(len(outcomes)) + width * len(series) / 2,
                [f"outcome {k}" for k in outcomes])
  ax.set_ylabel("probability (IQM over seeds, 95% CI)")
  ax.set_title("final mixed strategies")
  ax.legend(fontsize=8)
  save(fig, "q1_strategies.png")


def _q1_control(plt, stats: list[dict[str, Any]], save: Callable) -> None:
  control = [r for r in stats if r["setting"] == "control"]
  raters = sorted({r["measure"] for r in control if r["measure"].startswith("rater_")})
  h2h = [r for r in stats if r["setting"] == "head_to_head"]
  if not (raters or h2h):
    return
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
  bars(axes[0], control, [(f"rater {m.split('_')[1]}", lambda r, m=m: r["measure"] == m)
                          for m in raters], "each rater's score of the final policies",
       "utility (IQM, 95% CI)")
  if h2h:
    r = h2h[0]
    axes[1].bar([0], [r["iqm"]], yerr=[[r["iqm"] - r["lower"]], [r["upper"] - r["iqm"]]],
                capsize=3, color="tab:blue")
    axes[1].axhline(0.5, color="black", linewidth=0.8)
    axes[1].set_xticks([0], ["SPO vs RM"])
    axes[1].set_ylim(0, 1)
    axes[1].set_title(f"raters' verdict (n={r['seeds']})")
    axes[1].set_ylabel("win rate of SPO's policy")
  save(fig, "q1_control.png")


def _q1_best_response(plt, stats: list[dict[str, Any]], save: Callable) -> None:
  """Control task: the best-response exploitability of SPO's oldest kept iterate (the positive
  control), last iterate and mixture and of RM's policy (solid), beside the responder's
  start, a copy of the (last) iterate (hatched)."""
  series = [("SPO, oldest iterate", "spo", "first"), ("SPO, last iterate", "spo", "last"),
            ("SPO, mixture", "spo", "mixture"), ("RM policy", "rm", "last")]
  found = []
  for label, method, target in series:
    pair = [next((r for r in stats if r["setting"] == "control" and r["method"] == method
                  and r["measure"] == f"br_exploitability_{target}{suffix}"), None)
            for suffix in ("", "_start")]
    if pair[0] is not None:
      found.append((label, method, pair))
  if not found:
    return
  fig, ax = plt.subplots(figsize=(7.5, 4))
  for i, (_, method, (trained, start)) in enumerate(found):
    for offset, row, hatch in ((-0.2, trained, None), (0.2, start, "//")):
      if row is None:
        continue
      ax.bar(i + offset, row["iqm"], 0.4, yerr=[[row["iqm"] - row["lower"]],
                                                [row["upper"] - row["iqm"]]],
             capsize=3, color=METHOD_COLORS[method], hatch=hatch,
             alpha=0.9 if hatch is None else 0.4)
  ax.axhline(0.0, color="black", linewidth=0.8)
  ax.set_xticks(range(len(found)), [f[0] for f in found])
  ax.set_ylabel("P(best response beats it) - 1/2 (IQM, 95% CI)")
  ax.set_title(f"exploitability by a best response (n={found[0][2][0]['seeds']})\n"
               "hatched: the responder before training", fontsize=10)
  save(fig, "q1_best_response.png")


def _q2(plt, res, save: Callable) -> None:
  if res.empty:
    return
  settings = sorted(res["setting"].unique())
  fig, axes = plt.subplots(len(settings), 2, figsize=(11, 4 * len(settings)), squeeze=False)
  for row, setting in enumerate(settings):
    part = res[res["setting"] == setting]
    for method in ("spo", "rm", "ppo", "spo_soft"):
      sel = part["method"] == method
      style = _style(method)
      band(axes[row, 0], part, sel, "step", "eval/episode_reward", METHOD_LABELS[method],
           METHOD_COLORS[method], style)
      if method != "ppo":
        band(axes[row, 1], part, sel, "train/total_feedback", "eval/episode_reward",
             METHOD_LABELS[method], METHOD_COLORS[method], style)
    env = part["env"].iloc[0]
    axes[row, 0].set(xlabel="env steps", ylabel="true return (IQM, 95% CI)",
                     title=f"{env}: return vs env steps")
    axes[row, 1].set(xlabel="labels consumed", ylabel="true return (IQM, 95% CI)",
                     title=f"{env}: return vs labels (PPO asks none; dashed: reference)")
    axes[row, 1].set_xscale("symlog")
    for ax in axes[row]:
      ax.legend(fontsize=8)
  save(fig, "q2_sample_efficiency.png")


def _q3(plt, stats: list[dict[str, Any]], save: Callable) -> None:
  if not stats:
    return
  # Top: the final return; bottom: the area under the learning curve (`return_auc`), which
  # still separates noise levels where the final returns meet at the env's cap.
  measures = [m for m in ("final_eval_return", "return_auc")
              if any(r["measure"] == m for r in stats)]
  fig, axes = plt.subplots(len(measures), 2, figsize=(11, 4 * len(measures)), squeeze=False)
  for row, measure in enumerate(measures):
    for ax, setting, xlabel in ((axes[row, 0], "bradley_terry", "beta (lower = noisier)"),
                                (axes[row, 1], "mistake", "epsilon (higher = noisier)")):
      for method in ("spo", "rm", "spo_soft"):
        rows = sorted((r for r in stats if r["setting"] == setting and r["method"] == method
                       and r["measure"] == measure), key=lambda r: r["level"])
        if not rows:
          continue
        ax.errorbar([r["level"] for r in rows], [r["iqm"] for r in rows],
                    yerr=[[r["iqm"] - r["lower"] for r in rows],
                          [r["upper"] - r["iqm"] for r in rows]],
                    marker="o", capsize=3, color=METHOD_COLORS[method],
                    linestyle=_style(method),
                    label=f"{METHOD_LABELS[method]} (n={rows[0]['seeds']})")
      if setting == "bradley_terry":
        ax.set_xscale("log")
      what = ("final true return" if measure == "final_eval_return"
              else "mean return up to the budget")
      ax.set(xlabel=xlabel, ylabel=f"{what} (IQM, 95% CI)", title=f"{setting}: {what} vs noise")
      ax.legend(fontsize=8)
  save(fig, "q3_noise.png")


def _style(method: str) -> str:
  """Dashed for a reference run (soft-label SPO), solid for the equal-label competitors."""
  return "--" if method in REFERENCE_METHODS else "-"


def _q4(plt, stats: list[dict[str, Any]], save: Callable) -> None:
  if not stats:
    return
  settings = list(dict.fromkeys(r["setting"] for r in stats))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  bars(axes[0], stats, [(s, lambda r, s=s: r["setting"] == s and r["measure"] == Q4_PROPERTY[s])
                        for s in settings],
       "the teacher's target property", "satisfied / reached fraction, peak, variance")
  bars(axes[1], stats, [(s, lambda r, s=s: r["setting"] == s and r["measure"] == "return")
                        for s in settings], "true return of the same rollouts",
       "return (IQM, 95% CI)")
  save(fig, "q4_nonmarkov.png")


def figures(question: str, results, stats: list[dict[str, Any]], out: Path,
            table: str = DEFAULT_TABLE) -> list[Path]:
  """PNG figures of one question under OUT/<question>/ (which must exist); returns their
  paths. `results` is `analysis.collect`'s DataFrame of evaluations (all questions), `stats`
  the question's `analysis.summarize` rows, `table` Q1's payoff table. A figure whose data
  is missing is not drawn: q1_exploitability.png, q1_strategies.png, q1_control.png,
  q1_best_response.png,
  q2_sample_efficiency.png, q3_noise.png, q4_nonmarkov.png."""
  plt = _plt()
  qdir = out / question
  paths: list[Path] = []

  def save(fig, name: str) -> None:
    path = qdir / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)

  res = results[results["question"] == question] if not results.empty else results
  if question == "q1":
    _q1_exploitability(plt, res, table, save)
    _q1_strategies(plt, stats, table, save)
    _q1_control(plt, stats, save)
    _q1_best_response(plt, stats, save)
  elif question == "q2":
    _q2(plt, res, save)
  elif question == "q3":
    _q3(plt, stats, save)
  elif question == "q4":
    _q4(plt, stats, save)
  return paths
