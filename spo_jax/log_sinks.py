"""The run's external metric sinks: TensorBoard event files and Weights & Biases runs, one
per seed (per (point, seed) in a sweep group: `RunKeys`). `loggers.MetricsLogger` drives
them beside metrics.jsonl and metrics.csv; the resume rule (rows after the resumed iteration
are dropped) is described there.

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

RunKey = int | tuple[int, int]


class RunKeys:
  """Which run of a run directory a row belongs to, and that run's name, for every sink
  that keeps the runs apart (TensorBoard directories, W&B runs).

  A plain run's runs are its seeds: key s, label `seed_<s>`. A sweep group's runs
  (`run_tags`: one per run, its `point`, the point's values and `seed`; spo_jax/sweep/) are
  keyed by (point, seed), label `point_<p>/seed_<s>`: the points of a group share seeds.
  """

  def __init__(self, run_tags: list[Row] | None = None):
    self.tags: dict[RunKey, Row] | None = (
        {(int(t["point"]), int(t["seed"])): t for t in run_tags} if run_tags else None)
    # `point` and the fields its points set (a [[points]] list may set different ones):
    # which run a row is, not a metric.
    self.point_fields = tuple(dict.fromkeys(k for t in run_tags or () for k in t if k != "seed"))

  def of(self, row: Row) -> RunKey:
    seed = int(row.get("seed", 0))
    return seed if self.tags is None else (int(row["point"]), seed)

  def label(self, key: RunKey) -> str:
    """`seed_<s>`, or `point_<p>/seed_<s>`: a TensorBoard directory, a W&B name's tail."""
    return f"seed_{key}" if self.tags is None else f"point_{key[0]}/seed_{key[1]}"

  def id_suffix(self, key: RunKey) -> str:
    """`seed<s>`, or `p<p>-seed<s>`: the tail of a stable W&B run id."""
    return f"seed{key}" if self.tags is None else f"p{key[0]}-seed{key[1]}"

  def seed(self, key: RunKey) -> int:
    return key if self.tags is None else key[1]

  def point_values(self, key: RunKey) -> Row:
    """The point's `point` and values ({} in a plain run)."""
    return {} if self.tags is None else {k: v for k, v in self.tags[key].items() if k != "seed"}


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
  """One TensorBoard run (directory of event files) per run of the directory, under
  RUN_DIR/tensorboard/: `seed_<s>/` per seed, or `point_<p>/seed_<s>/` per (point, seed) of a
  sweep group (`RunKeys`). Global step = the row's env steps, so curves of runs with
  different N or H line up.

  A sweep run's point values are hyperparameters, not curves: each of its event files starts
  with the HParams plugin's session start info (`point`, the point's values; session group
  `point_<p>`: a point's seeds form one group), and its scalars leave them out.
  """

  what = "TensorBoard events"

  def __init__(self, directory: Path, rows: list[Row], keys: RunKeys | None = None):
    self.directory = directory
    self.path = directory
    self.keys = RunKeys() if keys is None else keys
    self._not_scalars = _NOT_SCALARS | set(self.keys.point_fields)
    self._writers: dict[RunKey, Any] = {}
    self._purge: dict[RunKey, int] = {}
    self._backfill: dict[RunKey, list[Row]] = {}
    for row in rows:
      key = self.keys.of(row)
      self._purge[key] = max(self._purge.get(key, -1), int(row["step"]) + 1)
      self._backfill.setdefault(key, []).append(row)

  def _writer(self, key: RunKey):
    if key not in self._writers:
      from tensorboardX.proto.event_pb2 import Event, SessionLog

      logdir = self.directory / self.keys.label(key)
      had_events = logdir.is_dir() and any(logdir.glob("events.out.tfevents.*"))
      # Event file names carry whole seconds: a resume within the same second would
      # overwrite the first file without a suffix of its own.
      writer = _EventFile(logdir, filename_suffix=f".{time.time_ns()}")
      if had_events:
        # What SummaryWriter(purge_step=...) writes: TensorBoard hides the events of earlier
        # files at steps >= purge (all of them when no row of this run was kept).
        purge = self._purge.get(key, 0)
        writer.add_event(Event(step=purge, file_version="brain.Event:2"))
        writer.add_event(Event(step=purge, session_log=SessionLog(status=SessionLog.START)))
      if self.keys.tags is not None:
        # In every file, after the purge marker: a purge from step 0 hides the old file's.
        writer.add_summary(_session_start(self.keys.point_values(key)), global_step=0)
      if not had_events:  # enabled on resume (or events lost): write the kept history first
        for row in self._backfill.get(key, []):
          self._add(writer, row)
      self._writers[key] = writer
    return self._writers[key]

  def _add(self, writer, row: Row) -> None:
    """All scalars of a row as one event at global step = env steps."""
    from tensorboardX.proto.summary_pb2 import Summary

    values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in row.items()
              if k not in self._not_scalars and not isinstance(v, bool)
              and isinstance(v, int | float)]
    writer.add_summary(Summary(value=values), global_step=int(row["step"]))

  def write(self, rows: list[Row]) -> None:
    writers = set()
    for row in rows:
      writer = self._writer(self.keys.of(row))
      self._add(writer, row)
      writers.add(writer)
    for writer in writers:
      self.path = writer.path
      writer.flush()

  def open_all(self) -> None:
    """Open the writer of every run now (a sweep group's: all of them; a plain run's: every
    seed with kept rows or event files), so a resumed run's purge marker is written even
    before its first new evaluation."""
    keys = set(self._purge)
    if self.keys.tags is not None:
      keys |= set(self.keys.tags)
    else:
      for path in self.directory.glob("seed_*"):
        try:
          keys.add(int(path.name.removeprefix("seed_")))
        except ValueError:
          continue
    for key in sorted(keys):
      self._writer(key)

  def close(self) -> None:
    writers, self._writers = list(self._writers.values()), {}
    for writer in writers:
      self.path = writer.path
      writer.close()


def _session_start(values: Row):
  """The HParams plugin's session start info for a sweep run: its point's values as
  hyperparameters (lists, e.g. hidden sizes, as JSON text), session group `point_<p>`. What
  tensorboardX's `hparams()` writes, less the experiment summary: without one, TensorBoard
  infers the hyperparameters' domains and the metrics from all runs under its logdir."""
  import json

  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionStartInfo
  from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

  info = SessionStartInfo(group_name=f"point_{values['point']}")
  for name, value in values.items():
    if isinstance(value, bool):
      info.hparams[name].bool_value = value
    elif isinstance(value, int | float):
      info.hparams[name].number_value = float(value)
    else:
      info.hparams[name].string_value = value if isinstance(value, str) else json.dumps(value)
  content = HParamsPluginData(session_start_info=info, version=0).SerializeToString()
  metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                    content=content))
  return Summary(value=[Summary.Value(tag="_hparams_/session_start_info", metadata=metadata)])


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

  A sweep group (`run_tags`, spo_jax/sweep/) has one W&B run per (point, seed) (`RunKeys`),
  id `<id>-p<point>-seed<s>`, named `<name>/point_<p>/seed_<s>`, its point's values in its
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
    self._runs: dict[RunKey, Any] = {}
    self._keys = RunKeys(run_tags)
    try:
      if self._keys.tags is not None:
        for key in self._keys.tags:
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

  def _run(self, key: RunKey):
    if key not in self._runs:
      options, keys = self._options, self._keys
      name = options.wandb_name or self._run_dir.name
      # reinit="create_new": the runs of all seeds are open at once (the default,
      # "return_previous", would hand every seed the first seed's run).
      run = self._wandb.init(
          project=options.wandb_project, entity=options.wandb_entity,
          name=f"{name}/{keys.label(key)}", group=options.wandb_group or self._run_dir.name,
          mode=options.wandb_mode, dir=str(self._run_dir),
          config={**self._config, **keys.point_values(key), "run_seed": keys.seed(key)},
          id=f"{self._base_id}-{keys.id_suffix(key)}",
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
      self._run(self._keys.of(row)).log(data, step=int(row["iteration"]))

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
