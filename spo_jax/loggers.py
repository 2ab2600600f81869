"""Metrics loggers: every evaluation's rows (one per seed, field `seed`) to JSONL, CSV,
TensorBoard and, when asked, Weights & Biases.

The host loop calls `MetricsLogger.log(rows)` after each evaluation. Files in RUN_DIR:

  metrics.jsonl              one JSON object per row: the canonical record (spo-plot reads it)
  metrics.csv                the same rows as a table; header = the union of the keys seen
  tensorboard/seed_<seed>/   TensorBoard event files, one run per seed, x = env steps

Resume: a run continued from the checkpoint of iteration k recomputes (bit for bit) every
iteration after k, so the rows logged after k by the interrupted process are dropped before
anything is appended: JSONL and CSV are rewritten with the rows of iteration <= k, and each
TensorBoard writer starts with `purge_step` = (last kept step + 1), which makes TensorBoard
hide the older events from that step on. A line cut short by a kill mid-write is dropped.
The rule "an iteration is logged once" also covers a resume that evaluates the checkpoint's
own iteration again: such rows are skipped.

Logging options are run options, not `Config` fields: they may change on resume.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Literal

from spo_jax.config import ConfigError

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LogOptions:
  """Where metrics go besides metrics.jsonl (always written)."""

  csv: bool = True
  """Write metrics.csv (the rows of metrics.jsonl as a table)."""
  tensorboard: bool = True
  """Write TensorBoard events to RUN_DIR/tensorboard/seed_<seed>/ (x = env steps)."""
  wandb: bool = False
  """Log to Weights & Biases (needs `pip install wandb`)."""
  wandb_project: str = "spo_jax"
  """W&B project."""
  wandb_entity: str | None = None
  """W&B entity (user or team); default: your W&B default entity."""
  wandb_name: str | None = None
  """W&B run name; default: the run directory's name."""
  wandb_group: str | None = None
  """W&B group (e.g. to gather the runs of one experiment)."""
  wandb_mode: Literal["online", "offline", "disabled"] = "online"
  """W&B mode: online, offline (sync later with `wandb sync`) or disabled."""


WANDB_MODES = ("online", "offline", "disabled")


def check_options(options: LogOptions) -> None:
  """Fail fast (before anything is compiled or written) on options that cannot work."""
  if options.wandb_mode not in WANDB_MODES:
    raise ConfigError(f"--wandb-mode '{options.wandb_mode}' is not one of {', '.join(WANDB_MODES)}")
  if options.wandb and importlib.util.find_spec("wandb") is None:
    raise ConfigError("--wandb needs the wandb package, which is not installed: "
                      "pip install wandb (or drop --wandb)")


# -------------------------------------------------------------------------------------
# Reading back (resume, spo-plot)
# -------------------------------------------------------------------------------------

def read_jsonl(path: str | Path) -> list[Row]:
  """The rows of a metrics.jsonl; a line that does not parse (cut short by a kill while it was
  written) is skipped."""
  rows = []
  for line in Path(path).read_text().splitlines():
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(row, dict):
      rows.append(row)
  return rows


def _atomic_write(path: Path, text: str) -> None:
  # Written beside, then renamed: a kill during the rewrite leaves the old file whole.
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def _jsonl_text(rows: list[Row]) -> str:
  return "".join(json.dumps(row) + "\n" for row in rows)


def _csv_text(header: list[str], rows: list[Row], write_header: bool = True) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=header, restval="", extrasaction="ignore",
                          lineterminator="\n")
  if write_header:
    writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


_FIRST_COLUMNS = ("step", "iteration", "seed")


def _union_keys(rows: list[Row], start: list[str] | None = None) -> list[str]:
  """The keys of `start` then each new key in order of appearance; a new table starts with
  step, iteration, seed (the columns one reads first)."""
  keys = list(start or [k for k in _FIRST_COLUMNS if rows and k in rows[0]])
  seen = set(keys)
  for row in rows:
    for k in row:
      if k not in seen:
        seen.add(k)
        keys.append(k)
  return keys


# -------------------------------------------------------------------------------------
# Sinks
# -------------------------------------------------------------------------------------

class _JsonlSink:
  def __init__(self, path: Path):
    self.path = path
    self._file = open(path, "a")  # noqa: SIM115 (closed in close())

  def write(self, rows: list[Row]) -> None:
    self._file.write(_jsonl_text(rows))
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class _CsvSink:
  """metrics.csv. The header comes from the first row; a row with a key the header lacks
  (e.g. a metric that first appears later) rewrites the file once with the wider header, the
  earlier rows leaving that column empty."""

  def __init__(self, path: Path, rows: list[Row]):
    self.path = path
    self.rows = list(rows)
    self.header = _union_keys(rows)
    _atomic_write(path, _csv_text(self.header, rows) if rows else "")

  def write(self, rows: list[Row]) -> None:
    self.rows.extend(rows)
    header = _union_keys(rows, self.header)
    if header != self.header or len(self.rows) == len(rows):
      self.header = header
      _atomic_write(self.path, _csv_text(header, self.rows))
      return
    with open(self.path, "a") as f:
      f.write(_csv_text(self.header, rows, write_header=False))

  def close(self) -> None:
    pass


_NOT_SCALARS = frozenset({"step", "seed"})


class _TensorBoardSink:
  """One `SummaryWriter` per seed under RUN_DIR/tensorboard/seed_<seed>/, global step = the
  row's env steps, so curves of runs with different N or H line up."""

  def __init__(self, directory: Path, rows: list[Row]):
    self.directory = directory
    self._writers: dict[int, Any] = {}
    self._purge: dict[int, int] = {}
    self._backfill: dict[int, list[Row]] = {}
    for row in rows:
      seed = int(row.get("seed", 0))
      self._purge[seed] = max(self._purge.get(seed, -1), int(row["step"]) + 1)
      self._backfill.setdefault(seed, []).append(row)

  def _writer(self, seed: int):
    if seed not in self._writers:
      from tensorboardX.proto.event_pb2 import Event, SessionLog
      from tensorboardX.writer import FileWriter

      logdir = self.directory / f"seed_{seed}"
      had_events = logdir.is_dir() and any(logdir.glob("events.out.tfevents.*"))
      # Event file names carry whole seconds: a resume within the same second would
      # overwrite the first file without a suffix of its own. A deep queue: the writer
      # thread drains it, add_summary never waits (with the default of 10 it did, ~1 ms per
      # scalar).
      writer = FileWriter(str(logdir), max_queue=1024, flush_secs=30,
                          filename_suffix=f".{time.time_ns()}")
      if had_events:
        # What SummaryWriter(purge_step=...) writes: TensorBoard hides the events of earlier
        # files at steps >= purge (all of them when no row of this seed was kept).
        purge = self._purge.get(seed, 0)
        writer.add_event(Event(step=purge, file_version="brain.Event:2"))
        writer.add_event(Event(step=purge, session_log=SessionLog(status=SessionLog.START)))
      else:  # enabled on resume (or events lost): write the kept history first
        for row in self._backfill.get(seed, []):
          self._add(writer, row)
      self._writers[seed] = writer
    return self._writers[seed]

  @staticmethod
  def _add(writer, row: Row) -> None:
    """All scalars of a row as one event at global step = env steps."""
    from tensorboardX.proto.summary_pb2 import Summary

    values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in row.items()
              if k not in _NOT_SCALARS and not isinstance(v, bool) and isinstance(v, int | float)]
    writer.add_summary(Summary(value=values), global_step=int(row["step"]))

  def write(self, rows: list[Row]) -> None:
    writers = set()
    for row in rows:
      writer = self._writer(int(row.get("seed", 0)))
      self._add(writer, row)
      writers.add(writer)
    for writer in writers:
      writer.flush()

  def open_all(self) -> None:
    """Open the writer of every seed on file now (kept rows or event files), so a resumed
    run's purge marker is written even before its first new evaluation."""
    seeds = set(self._purge)
    for path in self.directory.glob("seed_*"):
      try:
        seeds.add(int(path.name.removeprefix("seed_")))
      except ValueError:
        continue
    for seed in sorted(seeds):
      self._writer(seed)

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()


class _WandbSink:
  """One W&B run per run directory (its id is kept in RUN_DIR/wandb_id.txt so a resumed run
  continues it). W&B's own step is the iteration; `step` (env steps) is declared the x-axis of
  every metric. With several seeds, keys are `seed_<seed>/<metric>`. W&B cannot delete logged
  data: rows recomputed after a resume carry iterations W&B has seen and are ignored by it
  (they are identical anyway: resume is exact)."""

  def __init__(self, run_dir: Path, options: LogOptions, config: dict[str, Any],
               num_seeds: int):
    import wandb

    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
    id_file.write_text(run_id + "\n")
    self._wandb = wandb
    self._multi = num_seeds > 1
    self._run = wandb.init(project=options.wandb_project, entity=options.wandb_entity,
                           name=options.wandb_name or run_dir.name, group=options.wandb_group,
                           mode=options.wandb_mode, dir=str(run_dir), config=config,
                           id=run_id, resume="allow")
    self._run.define_metric("step")
    self._run.define_metric("*", step_metric="step")

  def write(self, rows: list[Row]) -> None:
    data: Row = {"step": min(int(r["step"]) for r in rows)}
    for row in rows:
      prefix = f"seed_{row.get('seed', 0)}/" if self._multi else ""
      for k, v in row.items():
        if k not in _NOT_SCALARS and k != "iteration" and isinstance(v, int | float):
          data[prefix + k] = v
    self._run.log(data, step=int(rows[0]["iteration"]))

  def close(self) -> None:
    self._run.finish()


# -------------------------------------------------------------------------------------
# The logger the host loop talks to
# -------------------------------------------------------------------------------------

class MetricsLogger:
  """Every sink of one run directory behind one `log(rows)`.

  `resume_iteration` = k (the iteration of the checkpoint being resumed) keeps the rows of
  iterations <= k and drops the rest, in every file; None starts empty files.
  """

  def __init__(self, run_dir: str | Path, options: LogOptions | None = None,
               config: dict[str, Any] | None = None, num_seeds: int = 1,
               resume_iteration: int | None = None):
    options = LogOptions() if options is None else options
    check_options(options)
    self.run_dir = Path(run_dir)
    self.run_dir.mkdir(parents=True, exist_ok=True)
    jsonl = self.run_dir / "metrics.jsonl"
    kept: list[Row] = []
    if resume_iteration is not None and jsonl.exists():
      kept = [r for r in read_jsonl(jsonl) if int(r.get("iteration", 0)) <= resume_iteration]
    _atomic_write(jsonl, _jsonl_text(kept))
    self.last_iteration = max((int(r.get("iteration", 0)) for r in kept), default=None)
    self.num_kept = len(kept)
    self._sinks: list[Any] = [_JsonlSink(jsonl)]
    try:
      if options.csv:
        self._sinks.append(_CsvSink(self.run_dir / "metrics.csv", kept))
      if options.tensorboard:
        tb = _TensorBoardSink(self.run_dir / "tensorboard", kept)
        if resume_iteration is None and tb.directory.exists():
          import shutil

          shutil.rmtree(tb.directory)  # a new run in this directory: no stale curves
        tb.open_all()
        self._sinks.append(tb)
      if options.wandb:
        self._sinks.append(_WandbSink(self.run_dir, options, config or {}, num_seeds))
    except BaseException:
      self.close()
      raise

  def log(self, rows: list[Row]) -> None:
    """Append one evaluation's rows (one per seed). Rows of an iteration already on file are
    skipped: an iteration is logged once."""
    if self.last_iteration is not None:
      rows = [r for r in rows if int(r["iteration"]) > self.last_iteration]
    if not rows:
      return
    for sink in self._sinks:
      sink.write(rows)
    self.last_iteration = max(int(r["iteration"]) for r in rows)

  def close(self) -> None:
    for sink in self._sinks:
      sink.close()
    self._sinks = []
