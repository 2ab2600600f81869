"""Reports: per-question CSVs, markdown tables, OUT/summary.md, and the generated blocks of
docs/results.md (`--docs`)."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from spo_jax.reproduce.analysis import ci_method, exact_minimax_winner, summarize
from spo_jax.reproduce.figures import figures
from spo_jax.reproduce.plans import METHOD_LABELS, TITLES, Run

MEASURE_LABELS = {
    "final_eval_return": "final return (eval)", "return": "return (final rollouts)",
    "return_auc": "mean return up to the budget (area under the eval curve / env steps)",
    "exploitability_last": "exploitability, last iterate",
    "exploitability_average": "exploitability, averaged policy",
    "satisfied": "constraint satisfied (fraction of episodes)",
    "reached": "level reached in time (fraction)", "steps_to_reach": "steps to reach",
    "peak": "peak", "variance": "variance", "win_rate_vs_rm": "raters' win rate vs RM",
    "mw_distance_last": "L1 distance to the MW, last iterate",
    "mw_distance_average": "L1 distance to the MW, averaged policy",
    "br_exploitability_first": "exploitability (best response), oldest kept iterate",
    "br_exploitability_first_start": "exploitability (best response), oldest kept iterate: "
                                     "the responders before training",
    "br_exploitability_first_cold": "exploitability, oldest kept iterate: the responder "
                                    "from scratch",
    "br_exploitability_first_warm": "exploitability, oldest kept iterate: the responder "
                                    "started as a copy",
    "br_exploitability_last": "exploitability (best response), last iterate",
    "br_exploitability_last_start": "exploitability (best response), last iterate: the "
                                    "responders before training",
    "br_exploitability_last_cold": "exploitability, last iterate: the responder from scratch",
    "br_exploitability_last_warm": "exploitability, last iterate: the responder started as "
                                   "a copy",
    "br_exploitability_mixture": "exploitability (best response), mixture of iterates",
    "br_exploitability_mixture_start": "exploitability (best response), mixture: the "
                                       "responders before training",
    "br_exploitability_mixture_cold": "exploitability, mixture: the responder from scratch",
    "br_exploitability_mixture_warm": "exploitability, mixture: the responder started as a "
                                      "copy of the last iterate",
    "mixture_iterates": "iterates in the mixture",
}


def machine() -> str:
  """One line naming the CPU, its cores, the JAX version, backend and devices."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
  return (f"{platform.machine()} {platform.processor() or ''} {cores} cores, "
          f"jax {jax.__version__} on {jax.default_backend()} ({devices})").replace("  ", " ")


def measure_label(measure: str) -> str:
  """The table's words for a measure name (`prob_average_2` -> 'P(outcome 2), averaged
  policy'); unknown names with underscores as spaces."""
  for prefix, which in (("prob_average_", "averaged policy"), ("prob_last_", "last iterate")):
    if measure.startswith(prefix):
      return f"P(outcome {measure[len(prefix):]}), {which}"
  return MEASURE_LABELS.get(measure, measure.replace("_", " "))


EQUAL_LABELS = (
    "Equal labels: SPO draws k random opponents per trajectory and one Bernoulli label per "
    "query (N k labels per iteration), the reward model labels N k pairs per iteration, so "
    "both have consumed the same labels at every iteration (`train/total_feedback`). "
    "\"SPO, soft labels, all pairs\" is a noise-free reference (the teacher's probability "
    "itself, N (N - 1) / 2 queries per iteration), not a competitor.")


def markdown_table(rows: list[dict[str, Any]]) -> str:
  """A markdown table of `analysis.summarize` rows, numbers to 3 decimals."""
  if not rows:
    return "_no finished runs_\n"
  lines = ["| setting | method | measure | IQM | 95% CI | seeds |", "|---|---|---|---|---|---|"]
  for r in rows:
    setting = r["setting"] if r["level"] is None else f"{r['setting']} {r['level']:g}"
    lines.append(f"| {setting} | {METHOD_LABELS.get(r['method'], r['method'])} | "
                 f"{measure_label(r['measure'])} | {r['iqm']:.3f} | "
                 f"[{r['lower']:.3f}, {r['upper']:.3f}] | {r['seeds']} |")
  return "\n".join(lines) + "\n"


def question_block(question: str, command: str, stats: list[dict[str, Any]],
                   figure_paths: list[Path], seconds: float | None, seeds: int,
                   figure_prefix: str = "", table: str | None = None) -> str:
  """The markdown of one question: title, command, machine, Q1's exact Minimax Winner (with
  `table`), the figures (linked as `figure_prefix` + file name) and the table."""
  lines = [f"### {TITLES[question]}", "", f"Command: `{command}`", "",
           f"Machine: {machine()}. Seeds: {seeds} per run (IQM across seeds; 95% CIs by "
           f"{ci_method()}). With so few seeds the intervals are wide: read overlaps as "
           "'not distinguished'."]
  if seconds is not None:
    lines[-1] += f" Wall time of the runs (this invocation): {seconds / 60:.1f} min."
  lines.append("")
  if question in ("q2", "q3"):
    lines += [EQUAL_LABELS, ""]
  if question == "q1" and table is not None:
    winner = exact_minimax_winner(table)
    if winner is not None:
      lines.append(f"Matrix game table `{table}`: exact Minimax Winner (linear program, "
                   f"`spo_jax.minimax`) = ({', '.join(f'{p:.3f}' for p in winner)}).")
      lines.append("")
  for path in figure_paths:
    lines.append(f"![{path.stem}]({figure_prefix}{path.name})")
  lines += ["", markdown_table(stats)]
  return "\n".join(lines)


def write_docs(docs: Path, blocks: dict[str, str], figure_paths: list[Path]) -> Path:
  """Copy figures into `docs`/ and replace the generated blocks of `docs`.md between
  `<!-- generated:<q> start -->` and `<!-- generated:<q> end -->` (appended if missing);
  the text around them is kept. Returns the markdown file's path."""
  docs.mkdir(parents=True, exist_ok=True)
  for path in figure_paths:
    shutil.copy2(path, docs / path.name)
  md = docs.with_suffix(".md")
  text = md.read_text() if md.exists() else "# Results\n"
  for question, block in blocks.items():
    start, end = f"<!-- generated:{question} start -->", f"<!-- generated:{question} end -->"
    new = f"{start}\n{block}\n{end}"
    if start in text and end in text:
      head, rest = text.split(start, 1)
      text = head + new + rest.split(end, 1)[1]
    else:
      text = text.rstrip("\n") + "\n\n" + new + "\n"
  md.write_text(text)
  return md


def write_reports(runs: list[Run], out: Path, results, finals, command: str,
                  seconds: dict[str, float], reps: int, table: str,
                  docs: Path | None = None, log: Callable[[str], None] = print) -> None:
  """Per question: OUT/<q>/results.csv and finals.csv (its rows of `analysis.collect`'s
  DataFrames), the figures and a markdown block; then OUT/summary.md and, with `docs`, the
  figures and blocks in `docs`/ and `docs`.md, and each question's two CSVs in `docs`/<q>/
  (the data every number of the page comes from). `seconds` are `running.execute`'s wall times.
  summary.md's text and the docs' paths go to `log`."""
  questions = list(dict.fromkeys(r.question for r in runs))
  blocks, all_figures = {}, []
  summary = [f"# SPO reproduction: summary\n\n`{command}`\n"]
  for question in questions:
    qruns = [r for r in runs if r.question == question]
    qdir = out / question
    qdir.mkdir(parents=True, exist_ok=True)
    if not results.empty:
      results[results["question"] == question].to_csv(qdir / "results.csv", index=False)
    if not finals.empty:
      finals[finals["question"] == question].to_csv(qdir / "finals.csv", index=False)
    stats = summarize(finals, question, reps)
    paths = figures(question, results, stats, out, table)
    all_figures += paths
    q_seconds = sum(seconds.get(f"{question}/{r.name}", 0.0) for r in qruns) or None
    seeds = qruns[0].config.num_seeds
    # The same block twice: linked to the docs' figure folder, and to OUT/<q>/ for summary.md.
    blocks[question] = question_block(question, command, stats, paths, q_seconds, seeds,
                                      figure_prefix=f"{docs.name}/" if docs else "",
                                      table=table)
    summary.append(question_block(question, command, stats, paths, q_seconds, seeds,
                                  figure_prefix=f"{question}/", table=table))
  (out / "summary.md").write_text("\n".join(summary))
  log("\n".join(summary))
  if docs is not None:
    md = write_docs(docs, blocks, all_figures)
    for question in questions:
      for name in ("results.csv", "finals.csv"):
        if (out / question / name).exists():
          (docs / question).mkdir(parents=True, exist_ok=True)
          shutil.copy2(out / question / name, docs / question / name)
    log(f"wrote {md}, {len(all_figures)} figure(s) and the CSVs under {docs}/")
