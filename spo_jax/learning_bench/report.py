"""The output files: OUT/curves.csv (tidy), OUT/summary.csv, OUT/summary.md (`markdown`) and
OUT/curves.png, rewritten from the finished runs after every run (`write_outputs`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from spo_jax.checkpoint import write_text_atomic
from spo_jax.learning_bench.analysis import summarize
from spo_jax.learning_bench.figures import plot


def _fmt(x: Any, spec: str = ",.1f") -> str:
  return "–" if x is None else format(x, spec)


def markdown(plan: dict[str, Any], summary: dict[str, Any]) -> str:
  m, v = plan.get("machine", {}), plan.get("versions", {})
  lines = [f"Learning benchmark: {plan['env']}"
           + (f" ({plan['backend']} backend)" if plan["backend"] else "")
           + f", {plan['budget']:,d} env steps per run, N = {plan['num_envs']}, "
           f"seeds {','.join(map(str, plan['seeds']))}; {m.get('cpu', '?')} "
           f"({m.get('cores', '?')} cores), {m.get('device', '?')}; spo_jax "
           f"{v.get('spo_jax', '?')}, jax {v.get('jax', '?')}, brax {v.get('brax', '?')}.", ""]
  at = " | ".join(f"return @ {s:,d}" for s in summary["grid"])
  lines += [f"| contender | seeds | final return (mean) | final return per seed | {at} "
            "| wall (s) | env steps | env steps/s | steady env steps/s |",
            "|---" * (8 + len(summary["grid"])) + "|"]
  for name, row in summary["rows"].items():
    per_seed = ", ".join(f"{_fmt(r)} (s{s})" for s, r in row["final_return_per_seed"].items())
    at = " | ".join(_fmt(x) for x in row["return_at_steps"])
    lines.append(f"| {name} | {row['seeds_done']}/{row['seeds_planned']} "
                 f"| {_fmt(row['final_return_mean'])} | {per_seed or '–'} | {at} "
                 f"| {_fmt(row['wall_s_mean'])} | {_fmt(row['env_steps_mean'], ',.0f')} "
                 f"| {_fmt(row['env_steps_per_s_mean'], ',.0f')} "
                 f"| {_fmt(row['steady_env_steps_per_s_mean'], ',.0f')} |")
  if summary["ratios"]:
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(x, '.2f')} |" for k, x in summary["ratios"].items()]
  lines += ["", "Final return: each seed's last evaluation (at or past the budget). Returns "
            "at equal env steps: linear between evaluations, '–' where a seed's curve does not "
            "reach (no extrapolation). Wall time includes env construction and compilation. "
            "Ratios of returns only when both are positive."]
  lines.append("Evaluation: " + "; ".join(f"{name} {plan['settings'][name]['evaluation']}"
                                           for name in plan["contenders"]) + ".")
  if "brax_ppo" in plan["settings"]:
    b = plan["settings"]["brax_ppo"]
    k = b["ppo_train_kwargs"]
    lines.append(f"brax_ppo: {b['source']}; num_envs {k['num_envs']} (published "
                 f"{b['published_num_envs']}), batch_size {k['batch_size']} (published "
                 f"{b['published_batch_size']}), {b['networks']} networks, "
                 f"{b['env_steps_run']:,d} env steps run for the budget.")
  return "\n".join(lines) + "\n"


def write_outputs(out: Path, plan: dict[str, Any],
                  runs: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
  """curves.csv, summary.csv, summary.md and curves.png from the finished runs."""
  summary = summarize(plan, runs)
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["contender", "seed", "env_steps", "wall_s", "eval_return"])
  for (name, seed), run in runs.items():
    for p in run["curve"]:
      writer.writerow([name, seed, p["env_steps"], f"{p['wall_s']:.3f}", p["eval_return"]])
  write_text_atomic(out / "curves.csv", buffer.getvalue())

  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  seed_cols = [f"final_return_seed{s}" for s in plan["seeds"]]
  grid_cols = [f"return_at_{s}" for s in summary["grid"]]
  scalar_cols = ["wall_s_mean", "env_steps_mean", "env_steps_per_s_mean",
                 "steady_env_steps_per_s_mean", "final_return_over_brax_ppo",
                 "wall_s_over_brax_ppo", "final_return_over_ground_truth",
                 "wall_s_over_ground_truth"]
  writer.writerow(["contender", "seeds_done", "seeds_planned", "final_return_mean",
                   *seed_cols, *grid_cols, *scalar_cols])
  blank = lambda x: "" if x is None else x
  for name, row in summary["rows"].items():
    writer.writerow([name, row["seeds_done"], row["seeds_planned"],
                     blank(row["final_return_mean"]),
                     *(blank(row["final_return_per_seed"].get(s)) for s in plan["seeds"]),
                     *(blank(x) for x in row["return_at_steps"]),
                     *(blank(row[c]) for c in scalar_cols)])
  write_text_atomic(out / "summary.csv", buffer.getvalue())
  table = markdown(plan, summary)
  write_text_atomic(out / "summary.md", table)
  plot(out / "curves.png", plan, runs)
  summary["markdown"] = table
  return summary
