"""The run's external metric sinks: TensorBoard event files and Weights & Biases runs, one
per seed. `loggers.MetricsLogger` drives them beside metrics.jsonl and metrics.csv; the
resume rule (rows after the resumed iteration are dropped) is described there.

A sink has `write(rows)`, `close()`, and `what`/`path` naming its file for the one-line
error a full disk gives (`write_errors.FailedWrite`).

tensorboardX (~0.4 s, protobuf) and wandb (the optional extra `wandb`, ~1 s) are imported
inside the sinks, so runs without --tensorboard or --wandb never load them.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from spo_jax.loggers import LogOptions

Row = dict[str, Any]

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


class TensorBoardSink:
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


class WandbSink:
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
