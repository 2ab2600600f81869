"""Metrics loggers: every evaluation's rows (one per seed, field `seed`) to JSONL, CSV,
TensorBoard and, when asked, Weights & Biases.

The host loop calls `MetricsLogger.log(rows)` after each evaluation. Files in RUN_DIR:

  metrics.jsonl              one JSON object per row: the canonical record (spo-plot reads it)
  metrics.csv                the same rows as a table; header = the union of the keys seen
  tensorboard/seed_<seed>/   TensorBoard event files, one run per seed, x = env steps
  wandb/, wandb_id.txt       with --wandb: W&B's local files, one W&B run per seed

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

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from spo_jax.config import ConfigError
from spo_jax.run_dir import write_text_atomic
from spo_jax.write_errors import FailedWrite, write_failure

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
  wandb_mode: Literal["online", "offline", "disabled"] | None = None
  """W&B mode: online, offline (sync later with `wandb sync`) or disabled; default: W&B's
  own, i.e. the WANDB_MODE environment variable, else online."""


WANDB_MODES = ("online", "offline", "disabled")


def check_options(options: LogOptions) -> None:
  """Fail fast (before anything is compiled or written) on options that cannot work."""
  if options.wandb_mode is not None and options.wandb_mode not in WANDB_MODES:
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
  # Written beside, then renamed: a kill or a full disk during the rewrite leaves the old
  # file whole (and no temporary file).
  write_text_atomic(path, text)


def _append(fd: int, text: str) -> None:
  """Append `text` to the file open as `fd` (O_APPEND), whole or not at all: a write cut
  short (disk full) is truncated away, so the file keeps only whole rows."""
  data = memoryview(text.encode())
  size = os.fstat(fd).st_size
  try:
    while data:
      data = data[os.write(fd, data):]
  except OSError:
    with contextlib.suppress(OSError):
      os.ftruncate(fd, size)
    raise


def _open_append(path: Path) -> int:
  return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


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
  """metrics.jsonl, appended with unbuffered writes: each evaluation's rows reach the OS
  before `write` returns (a kill loses nothing written), and a failed write leaves none of
  its bytes behind."""

  what = "metrics row"

  def __init__(self, path: Path):
    self.path = path
    self._fd: int | None = _open_append(path)

  def write(self, rows: list[Row]) -> None:
    _append(self._fd, _jsonl_text(rows))

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


class _CsvSink:
  """metrics.csv. The header comes from the first row; a row with a key the header lacks
  (e.g. a metric that first appears later) rewrites the file once with the wider header, the
  earlier rows leaving that column empty."""

  what = "CSV row"

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
    fd = _open_append(self.path)
    try:
      _append(fd, _csv_text(self.header, rows, write_header=False))
    finally:
      os.close(fd)

  def close(self) -> None:
    pass


_NOT_SCALARS = frozenset({"step", "seed"})


class _EventFile:
  """One TensorBoard event file, written in the calling thread. tensorboardX's `FileWriter`
  writes from a thread of its own, where a full disk ends that thread with a traceback on
  stderr and silently drops every later event; here a failed write raises in the training
  loop, which stops and reports it. The cost is the same: the bytes go to a buffer, and
  `flush` (once per evaluation) writes and fsyncs them, as `FileWriter.flush` did."""

  def __init__(self, logdir: Path, filename_suffix: str):
    from tensorboardX.event_file_writer import EventsWriter

    logdir.mkdir(parents=True, exist_ok=True)
    self._writer = EventsWriter(str(logdir / "events"), filename_suffix)
    # For error messages only: tensorboardX keeps the file's name in a private attribute.
    self.path = Path(getattr(self._writer, "_file_name", logdir))

  def add_event(self, event) -> None:
    if not event.wall_time:
      event.wall_time = time.time()
    self._writer.write_event(event)

  def add_summary(self, summary, global_step: int) -> None:
    from tensorboardX.proto.event_pb2 import Event

    self.add_event(Event(summary=summary, step=int(global_step), wall_time=time.time()))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class _TensorBoardSink:
  """One event file per seed under RUN_DIR/tensorboard/seed_<seed>/, global step = the
  row's env steps, so curves of runs with different N or H line up."""

  what = "TensorBoard events"

  def __init__(self, directory: Path, rows: list[Row]):
    self.directory = directory
    self.path = directory
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

      logdir = self.directory / f"seed_{seed}"
      had_events = logdir.is_dir() and any(logdir.glob("events.out.tfevents.*"))
      # Event file names carry whole seconds: a resume within the same second would
      # overwrite the first file without a suffix of its own.
      writer = _EventFile(logdir, filename_suffix=f".{time.time_ns()}")
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
      self.path = writer.path
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
    writers, self._writers = list(self._writers.values()), {}
    for writer in writers:
      self.path = writer.path
      writer.close()


class _WandbSink:
  """One W&B run per seed, all in the W&B group of the run directory, so the seeds of a
  vmapped run stay separate curves that W&B can still average by group.

  Run ids are stable: RUN_DIR/wandb_id.txt keeps one random id for the directory (random, not
  a hash of the path, so two machines' `runs/hopper` never share a W&B run), and seed s logs
  to `<id>-seed<s>`; a resumed run (`resume="allow"`) thus continues the same W&B runs. Each
  run gets only its own seed's rows: W&B's step is the iteration and `step` (that seed's env
  steps, the x of the CSV and TensorBoard) is declared the x-axis of every metric. W&B cannot
  delete logged data: rows recomputed after a resume carry iterations W&B has seen and are
  ignored by it (they are identical anyway: resume is exact). `--wandb` first given on a
  resume logs the rows kept in metrics.jsonl first, as TensorBoard does.

  A sweep group (`run_tags`, spo_jax/sweep/) has one W&B run per (point, seed), id
  `<id>-p<point>-seed<s>`, named `<name>/point_<p>/seed_<s>`, its point's values in its
  config."""

  what = "W&B run"

  def __init__(self, run_dir: Path, options: LogOptions, config: dict[str, Any],
               num_seeds: int, kept: list[Row], run_tags: list[Row] | None = None):
    import wandb

    self.path = run_dir / "wandb"
    self._wandb = wandb
    self._options = options
    self._run_dir = run_dir
    self._config = config
    id_file = run_dir / "wandb_id.txt"
    new = not id_file.exists()
    # Our own random id: `wandb.util.generate_id` is gone from wandb 0.2x.
    self._base_id = secrets.token_hex(4) if new else id_file.read_text().strip()
    id_file.write_text(self._base_id + "\n")
    self._runs: dict[Any, Any] = {}
    # A sweep group's runs (`run_tags`: one per run, with its `point` and `seed`) are keyed
    # by (point, seed): the points of a group share seeds.
    self._tags = {(t["point"], t["seed"]): t for t in run_tags} if run_tags else None
    try:
      if self._tags is not None:
        for key in self._tags:
          self._run(key)
      else:
        # The seeds train.py gives its rows (config.seed + i); opened now, so a W&B failure
        # stops the run before training rather than at its first evaluation.
        first = int(config.get("seed", 0))
        for seed in range(first, first + num_seeds):
          self._run(seed)
      if new:
        self.write(kept)
    except BaseException:
      with contextlib.suppress(Exception):
        self.close()  # the seeds' runs opened before the failure
      raise

  def _run(self, key: Any):
    if key not in self._runs:
      options, name = self._options, self._options.wandb_name or self._run_dir.name
      if self._tags is None:
        seed, label, run_id, extra = key, f"seed_{key}", f"{self._base_id}-seed{key}", {}
      else:
        point, seed = key
        label, run_id = f"point_{point}/seed_{seed}", f"{self._base_id}-p{point}-seed{seed}"
        extra = {k: v for k, v in self._tags[key].items() if k != "seed"}
      # reinit="create_new": the runs of all seeds are open at once (the default,
      # "return_previous", would hand every seed the first seed's run).
      run = self._wandb.init(
          project=options.wandb_project, entity=options.wandb_entity,
          name=f"{name}/{label}", group=options.wandb_group or self._run_dir.name,
          mode=options.wandb_mode, dir=str(self._run_dir),
          config={**self._config, **extra, "run_seed": seed}, id=run_id,
          resume="allow", reinit="create_new")
      run.define_metric("step")
      run.define_metric("*", step_metric="step")
      self._runs[key] = run
    return self._runs[key]

  def write(self, rows: list[Row]) -> None:
    for row in rows:
      data: Row = {k: v for k, v in row.items() if k not in _NOT_SCALARS and k != "iteration"
                   and not isinstance(v, bool) and isinstance(v, int | float)}
      data["step"] = int(row["step"])
      seed = int(row.get("seed", 0))
      key = seed if self._tags is None else (row["point"], seed)
      self._run(key).log(data, step=int(row["iteration"]))

  def close(self) -> None:
    """Finish every seed's run; the first failure is raised after all are finished."""
    runs, self._runs = list(self._runs.values()), {}
    failure = None
    for run in runs:
      try:
        run.finish()
      except Exception as error:
        failure = failure or error
    if failure is not None:
      raise failure


# -------------------------------------------------------------------------------------
# The logger the host loop talks to
# -------------------------------------------------------------------------------------

class MetricsLogger:
  """Every sink of one run directory behind one `log(rows)`.

  `resume_iteration` = k (the iteration of the checkpoint being resumed) keeps the rows of
  iterations <= k and drops the rest, in every file; None starts empty files. `run_tags`: a
  sweep group's runs (each with its `point` and `seed`), one W&B run each.
  """

  def __init__(self, run_dir: str | Path, options: LogOptions | None = None,
               config: dict[str, Any] | None = None, num_seeds: int = 1,
               resume_iteration: int | None = None, run_tags: list[Row] | None = None):
    options = LogOptions() if options is None else options
    check_options(options)
    self.run_dir = Path(run_dir)
    self._sinks: list[Any] = []
    jsonl = self.run_dir / "metrics.jsonl"
    # The file being written, for the FailedWrite a full disk raises here.
    what, path = "metrics", jsonl
    try:
      self.run_dir.mkdir(parents=True, exist_ok=True)
      kept: list[Row] = []
      if resume_iteration is not None and jsonl.exists():
        kept = [r for r in read_jsonl(jsonl) if int(r.get("iteration", 0)) <= resume_iteration]
      _atomic_write(jsonl, _jsonl_text(kept))
      self.last_iteration = max((int(r.get("iteration", 0)) for r in kept), default=None)
      self.num_kept = len(kept)
      self._sinks.append(_JsonlSink(jsonl))
      if options.csv:
        what, path = "CSV metrics", self.run_dir / "metrics.csv"
        self._sinks.append(_CsvSink(path, kept))
      if options.tensorboard:
        tb = _TensorBoardSink(self.run_dir / "tensorboard", kept)
        what, path = "TensorBoard events", tb.directory
        if resume_iteration is None and tb.directory.exists():
          import shutil

          shutil.rmtree(tb.directory)  # a new run in this directory: no stale curves
        tb.open_all()
        self._sinks.append(tb)
      if options.wandb:
        what, path = "W&B run", self.run_dir / "wandb"
        self._sinks.append(_WandbSink(self.run_dir, options, config or {}, num_seeds, kept,
                                      run_tags))
    except BaseException as error:
      with contextlib.suppress(Exception):
        self.close()
      if isinstance(error, Exception) and write_failure(error) is not None:
        raise FailedWrite(what, path) from error
      raise

  def log(self, rows: list[Row]) -> None:
    """Append one evaluation's rows (one per seed). Rows of an iteration already on file are
    skipped: an iteration is logged once."""
    if self.last_iteration is not None:
      rows = [r for r in rows if int(r["iteration"]) > self.last_iteration]
    if not rows:
      return
    for sink in self._sinks:
      self._call(sink, sink.write, rows)
    self.last_iteration = max(int(r["iteration"]) for r in rows)

  @staticmethod
  def _call(sink: Any, method, *args) -> None:
    """`method(*args)`; a file-system failure (disk full, ...) is raised as `FailedWrite`
    naming the sink's file, so the user learns which one."""
    try:
      method(*args)
    except Exception as error:
      if write_failure(error) is None:
        raise
      raise FailedWrite(sink.what, sink.path) from error

  def close(self) -> None:
    """Close every sink (flushing TensorBoard); the first write failure is raised after all
    are closed. Closing twice is harmless."""
    sinks, self._sinks = self._sinks, []
    failure = None
    for sink in sinks:
      try:
        self._call(sink, sink.close)
      except FailedWrite as error:
        failure = failure or error
    if failure is not None:
      raise failure
