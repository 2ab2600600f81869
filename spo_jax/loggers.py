"""Metrics loggers: every evaluation's rows (one per seed, field `seed`) to JSONL, CSV,
TensorBoard and, when asked, Weights & Biases.

The host loop calls `MetricsLogger.log(rows)` after each evaluation. Files in RUN_DIR:

  metrics.jsonl              one JSON object per row: the canonical record (spo-plot reads it)
  metrics.csv                the same rows as a table; header = the union of the keys seen
  tensorboard/seed_<seed>/   TensorBoard event files, one run per seed, x = env steps
  wandb/, wandb_id.txt       with --wandb: W&B's local files, one W&B run per seed

A sweep group's run directory (spo_jax/sweep/) holds one run per (point, seed), its rows
tagged with `point` and the point's values (`log_sinks.RunKeys`):

  metrics.jsonl, metrics.csv           the CSV's first columns: step, iteration, point, the
                                       point's fields, seed
  tensorboard/point_<p>/seed_<seed>/   one TensorBoard run per (point, seed), x = env steps,
                                       the point's values as HParams (not as curves)
  wandb/, wandb_id.txt                 with --wandb: one W&B run per (point, seed)

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
import shutil
from pathlib import Path
from typing import Any, Literal

from spo_jax.config import ConfigError
from spo_jax.log_sinks import RunKeys, TensorBoardSink, WandbSink
from spo_jax.run_dir import write_text_atomic
from spo_jax.write_errors import FailedWrite, write_failure

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LogOptions:
  """Where metrics go besides metrics.jsonl (always written)."""

  csv: bool = True
  """Write metrics.csv (the rows of metrics.jsonl as a table)."""
  tensorboard: bool = True
  """Write TensorBoard events to RUN_DIR/tensorboard/seed_<seed>/ (a sweep group's to
  point_<p>/seed_<seed>/; x = env steps)."""
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


def _cell(value: Any) -> Any:
  # A sweep point's list values (hidden sizes) as JSON, as in the sweep's results.csv.
  return json.dumps(value) if isinstance(value, list | tuple) else value


def _csv_text(header: list[str], rows: list[Row], write_header: bool = True) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=header, restval="", extrasaction="ignore",
                          lineterminator="\n")
  if write_header:
    writer.writeheader()
  writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
  return out.getvalue()


def _first_columns(point_fields: tuple[str, ...] = ()) -> tuple[str, ...]:
  """The columns one reads first: when, then which run (a sweep group's point and its
  fields, then the seed)."""
  return ("step", "iteration", *point_fields, "seed")


def _union_keys(rows: list[Row], start: list[str] | None = None,
                first: tuple[str, ...] = _first_columns()) -> list[str]:
  """The keys of `start` then each new key in order of appearance; a new table starts with
  `first` (those the rows have)."""
  keys = list(start or [k for k in first if any(k in row for row in rows)])
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

  def __init__(self, path: Path, rows: list[Row], first: tuple[str, ...] = _first_columns()):
    self.path = path
    self.rows = list(rows)
    self.first = first
    self.header = _union_keys(rows, first=first)
    _atomic_write(path, _csv_text(self.header, rows) if rows else "")

  def write(self, rows: list[Row]) -> None:
    self.rows.extend(rows)
    header = _union_keys(rows, self.header, self.first)
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


# -------------------------------------------------------------------------------------
# The logger the host loop talks to
# -------------------------------------------------------------------------------------

class MetricsLogger:
  """Every sink of one run directory behind one `log(rows)`.

  `resume_iteration` = k (the iteration of the checkpoint being resumed) keeps the rows of
  iterations <= k and drops the rest, in every file; None starts empty files. `run_tags`: a
  sweep group's runs (each with its `point`, the point's values and `seed`), one TensorBoard
  and one W&B run each (`log_sinks.RunKeys`).
  """

  def __init__(self, run_dir: str | Path, options: LogOptions | None = None,
               config: dict[str, Any] | None = None, num_seeds: int = 1,
               resume_iteration: int | None = None, run_tags: list[Row] | None = None):
    options = LogOptions() if options is None else options
    check_options(options)
    self.run_dir = Path(run_dir)
    self._sinks: list[Any] = []
    keys = RunKeys(run_tags)
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
        self._sinks.append(_CsvSink(path, kept, _first_columns(keys.point_fields)))
      if options.tensorboard:
        tb = TensorBoardSink(self.run_dir / "tensorboard", kept, keys)
        what, path = "TensorBoard events", tb.directory
        if resume_iteration is None and tb.directory.exists():
          shutil.rmtree(tb.directory)  # a new run in this directory: no stale curves
        tb.open_all()
        self._sinks.append(tb)
      if options.wandb:
        what, path = "W&B run", self.run_dir / "wandb"
        self._sinks.append(WandbSink(self.run_dir, options, config or {}, num_seeds, kept,
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
