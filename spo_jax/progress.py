"""What a training run shows while it runs.

Three displays with the same four calls from the host loop (`start`, `advance` after each
compiled call, `evaluation` after each evaluation, `close`):

  bar    a rich progress bar: env steps done / total, steps/s, elapsed, ETA, and a line with
         the latest evaluation (return, seeds' spread, win-rate std, queries)
  lines  one plain line per evaluation (what CI logs and `nohup` files want)
  none   nothing (`--quiet`)

`make_progress(config, "auto")` picks the bar when stdout is a terminal and lines otherwise.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import rich.progress as rp
from rich.console import Console, Group
from rich.text import Text

from spo_jax.config import Config

STYLES = ("auto", "bar", "lines", "none")


def summary_parts(m: dict[str, Any]) -> list[str]:
  """The evaluation part of a progress line: return (and the seeds' spread), training return,
  win-rate std and the queries so far."""
  parts = [f"eval return {m['eval/episode_reward']:8.1f}"]
  if "per_seed" in m:
    returns = [r["eval/episode_reward"] for r in m["per_seed"]]
    parts[-1] += (f" (mean of {len(returns)} seeds, min {min(returns):.1f}, "
                  f"max {max(returns):.1f})")
  if "train/episode_reward" in m:
    parts.append(f"train return {m['train/episode_reward']:8.1f}")
  if "train/winrate_std" in m:
    parts.append(f"win-rate std {m['train/winrate_std']:.3f}")
  if m.get("train/total_queries"):
    parts.append(f"queries {int(m['train/total_queries']):,d}")
  if "eval/exploitability_average" in m:
    parts.append(f"exploitability last {m['eval/exploitability_last']:.3f} "
                 f"average {m['eval/exploitability_average']:.3f}")
  return parts


def progress_line(m: dict[str, Any], config: Config,
                  previous: tuple[int, float] | None = None) -> str:
  """One line per evaluation: iteration, env steps / total, steps/s, the evaluation, time.
  steps/s is over the interval since `previous` = (step, elapsed s) of the last line, or,
  for the first line, over the whole run so far (compilation included)."""
  elapsed = m["time/elapsed_s"]
  steps, seconds = m["step"], elapsed
  if previous is not None:
    steps, seconds = steps - previous[0], elapsed - previous[1]
  rate = steps / max(seconds, 1e-9)
  parts = [f"iter {m['iteration']:>4d}", f"steps {m['step']:>10,d}/{config.num_timesteps:,d}",
           f"{rate:>8,.0f} steps/s", *summary_parts(m), f"{elapsed:6.0f}s"]
  return " | ".join(parts)


class _Silent:
  def start(self, steps: int) -> None:
    pass

  def advance(self, steps: int, iteration: int) -> None:
    pass

  def evaluation(self, metrics: dict[str, Any]) -> None:
    pass

  def close(self) -> None:
    pass


class LineProgress(_Silent):
  """One plain line per evaluation, flushed at once. Its steps/s is the rate since the last
  line: a run-long average would hide the steady rate behind the first call's compilation
  (on a 2-core CPU often half of a short run)."""

  def __init__(self, config: Config, file: TextIO | None = None):
    self.config, self.file = config, file
    self._previous: tuple[int, float] | None = None

  def evaluation(self, metrics: dict[str, Any]) -> None:
    print(progress_line(metrics, self.config, self._previous), file=self.file or sys.stdout,
          flush=True)
    self._previous = (metrics["step"], metrics["time/elapsed_s"])


class BarProgress(_Silent):
  """A rich progress bar over env steps with the latest evaluation beneath it."""

  def __init__(self, config: Config, file: TextIO | None = None):
    self.config = config
    self.console = Console(file=file) if file is not None else Console()
    self._progress = None
    self._task = None

  def start(self, steps: int) -> None:
    class _Speed(rp.ProgressColumn):
      def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  ? steps/s" if speed is None else f"{speed:>9,.0f} steps/s")

    class _WithInfo(rp.Progress):
      info = Text("waiting for the first evaluation (the first call compiles)")

      def get_renderables(self):
        yield Group(self.make_tasks_table(self.tasks), self.info)

    c = self.config
    self._progress = _WithInfo(
        rp.TextColumn(f"{c.reward_source} {c.env}"), rp.BarColumn(),
        rp.TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"), _Speed(),
        rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
        console=self.console, speed_estimate_period=60.0)
    self._task = self._progress.add_task("train", total=c.num_timesteps, completed=steps)
    self._progress.start()

  def advance(self, steps: int, iteration: int) -> None:
    if self._progress is not None:
      self._progress.update(self._task, completed=min(steps, self.config.num_timesteps))

  def evaluation(self, metrics: dict[str, Any]) -> None:
    if self._progress is None:
      return

    self._progress.info = Text(f"iter {metrics['iteration']} | " +
                               " | ".join(p.strip() for p in summary_parts(metrics)))
    self._progress.refresh()

  def close(self) -> None:
    if self._progress is not None:
      self._progress.stop()
      self._progress = None


def make_progress(config: Config, style: str = "auto", file: TextIO | None = None):
  """The display for `style` (one of STYLES); `auto` = bar on a terminal, lines otherwise."""
  if style not in STYLES:
    raise ValueError(f"progress style '{style}' is not one of {', '.join(STYLES)}")
  if style == "auto":
    stream = file or sys.stdout
    style = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
  if style == "bar":
    return BarProgress(config, file)
  if style == "lines":
    return LineProgress(config, file)
  return _Silent()
