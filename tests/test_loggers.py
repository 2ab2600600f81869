"""Tests for spo_jax/loggers.py: what a run writes (metrics.jsonl, metrics.csv and, through
spo_jax/log_sinks.py, TensorBoard), also across a resume."""

import csv
import json
import shutil
import struct

import pytest

from spo_jax.config import ConfigError
from spo_jax.loggers import LogOptions, MetricsLogger, check_options, read_jsonl
from spo_jax.presets import preset


def rows_of(iteration, seeds=(0,), extra=None):
  """One evaluation's rows: step = 100 * iteration env steps, reward = iteration + seed."""
  return [{"eval/episode_reward": float(iteration + s), "step": 100 * iteration,
           "iteration": iteration, "seed": s, **(extra or {})} for s in seeds]


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def tb_files(directory):
  """The events of each event file in `directory`, in the order TensorBoard reads the files
  (by name), read straight from the TFRecord files (length u64, crc u32, payload, crc u32)
  with tensorboardX's protos."""
  from tensorboardX.proto.event_pb2 import Event

  files = []
  for path in sorted(directory.glob("events.out.tfevents.*")):
    data, offset, events = path.read_bytes(), 0, []
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
      offset += 12 + length + 4
    files.append(events)
  return files


def _is_start(event):
  return event.HasField("session_log") and event.session_log.status == 1  # START


def tb_scalars(directory):
  """(step, tag, value) of every scalar and the steps of session-START events."""
  scalars, starts = [], []
  for events in tb_files(directory):
    for event in events:
      if _is_start(event):
        starts.append(event.step)
      for value in event.summary.value:
        if not value.metadata.plugin_data.plugin_name:  # a scalar, not plugin data (HParams)
          scalars.append((event.step, value.tag, value.simple_value))
  return scalars, starts


def tb_visible(directory):
  """{step: {tag: value}}: the scalars TensorBoard shows, i.e. with each session START at step
  s hiding the earlier events at steps >= s (what `purge_step` asks for)."""
  visible = {}
  for events in tb_files(directory):
    for event in events:
      if _is_start(event):
        visible = {step: v for step, v in visible.items() if step < event.step}
      for value in event.summary.value:
        if not value.metadata.plugin_data.plugin_name:
          assert value.tag not in visible.get(event.step, {}), "a scalar logged twice"
          visible.setdefault(event.step, {})[value.tag] = value.simple_value
  return visible


def tb_hparams(directory):
  """The HParams session start info of each event file in `directory`."""
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

  return [HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
          for events in tb_files(directory) for event in events for value in event.summary.value
          if value.tag == "_hparams_/session_start_info"]


def test_writes_jsonl_csv_and_one_tensorboard_run_per_seed(tmp_path):
  logger = MetricsLogger(tmp_path, LogOptions(), num_seeds=2)
  logger.log(rows_of(1, seeds=(0, 1)))
  logger.log(rows_of(2, seeds=(0, 1)))
  logger.close()
  jsonl = read_jsonl(tmp_path / "metrics.jsonl")
  assert [(r["iteration"], r["seed"]) for r in jsonl] == [(1, 0), (1, 1), (2, 0), (2, 1)]
  table = read_csv(tmp_path / "metrics.csv")
  assert list(table[0])[:3] == ["step", "iteration", "seed"]  # the columns read first
  assert [float(r["eval/episode_reward"]) for r in table] == [1.0, 2.0, 2.0, 3.0]
  scalars, starts = tb_scalars(tmp_path / "tensorboard" / "seed_1")
  # seed 1: reward = iteration + 1 at x = 100 * iteration env steps; step and seed are axes,
  # not scalars
  assert [(s, v) for s, t, v in scalars if t == "eval/episode_reward"] == [(100, 2.0),
                                                                          (200, 3.0)]
  assert {t for _, t, _ in scalars} == {"eval/episode_reward", "iteration"}
  assert starts == []


def test_a_key_that_appears_later_widens_the_csv_header(tmp_path):
  logger = MetricsLogger(tmp_path, LogOptions(tensorboard=False))
  logger.log(rows_of(1))
  logger.log(rows_of(2, extra={"train/winrate_std": 0.25}))
  logger.log(rows_of(3))
  logger.close()
  table = read_csv(tmp_path / "metrics.csv")
  assert [r["train/winrate_std"] for r in table] == ["", "0.25", ""]
  assert [r["iteration"] for r in table] == ["1", "2", "3"]


def test_resume_drops_the_rows_after_the_checkpoint_everywhere(tmp_path):
  """Rows for iterations 1..5 were logged, then the process died mid-write (half a line);
  resuming from the checkpoint of iteration 3 recomputes 4 and 5: every file must end with
  the rows <= 3 followed by the new ones, each iteration once."""
  logger = MetricsLogger(tmp_path, LogOptions())
  for it in range(1, 6):
    logger.log(rows_of(it))
  logger.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"eval/episode_reward": 6.0, "st')  # killed while writing iteration 6
  with open(tmp_path / "metrics.csv", "a") as f:
    f.write("600,6")

  logger = MetricsLogger(tmp_path, LogOptions(), resume_iteration=3)
  assert logger.num_kept == 3
  logger.log(rows_of(3))  # a resume may evaluate the checkpoint's own iteration again
  for it in (4, 5, 6):
    logger.log(rows_of(it, extra={"resumed": 1}))
  logger.close()

  expected = [1, 2, 3, 4, 5, 6]
  jsonl = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["iteration"] for r in jsonl] == expected
  assert [r.get("resumed", 0) for r in jsonl] == [0, 0, 0, 1, 1, 1]
  assert [int(r["iteration"]) for r in read_csv(tmp_path / "metrics.csv")] == expected
  scalars, starts = tb_scalars(tmp_path / "tensorboard" / "seed_0")
  # The second writer starts with purge_step = 301 (last kept step 300, + 1): TensorBoard
  # hides the first writer's events at steps >= 301, i.e. iterations 4 and 5.
  assert starts == [301]
  steps = [s for s, t, _ in scalars if t == "eval/episode_reward"]
  assert steps == [100, 200, 300, 400, 500, 400, 500, 600]
  visible = [s for i, s in enumerate(steps) if not (i < 5 and s >= 301)]
  assert visible == [100, 200, 300, 400, 500, 600]


def test_resume_before_the_first_evaluation_hides_every_earlier_event(tmp_path):
  """A checkpoint older than the first logged row keeps no row: purge from step 0."""
  logger = MetricsLogger(tmp_path, LogOptions(csv=False))
  logger.log(rows_of(1))
  logger.close()
  MetricsLogger(tmp_path, LogOptions(csv=False), resume_iteration=0).close()
  assert read_jsonl(tmp_path / "metrics.jsonl") == []
  _, starts = tb_scalars(tmp_path / "tensorboard" / "seed_0")
  assert starts == [0]


def test_tensorboard_turned_on_at_resume_gets_the_kept_history(tmp_path):
  logger = MetricsLogger(tmp_path, LogOptions(tensorboard=False, csv=False))
  for it in (1, 2, 3):
    logger.log(rows_of(it))
  logger.close()
  logger = MetricsLogger(tmp_path, LogOptions(), resume_iteration=2)
  logger.log(rows_of(3))
  logger.close()
  scalars, starts = tb_scalars(tmp_path / "tensorboard" / "seed_0")
  assert [s for s, t, _ in scalars if t == "eval/episode_reward"] == [100, 200, 300]
  assert starts == []
  assert [int(r["iteration"]) for r in read_csv(tmp_path / "metrics.csv")] == [1, 2, 3]


def test_wandb_requested_but_not_installed_fails_before_training(monkeypatch, tmp_path, capsys):
  import importlib.util

  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "wandb" else real(name, *a))
  with pytest.raises(ConfigError, match="pip install wandb"):
    check_options(LogOptions(wandb=True))
  from spo_jax.cli import train_main

  with pytest.raises(SystemExit) as exit_info:
    train_main(["--env", "balance", "--wandb", "--run-dir", str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert "pip install wandb" in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "run").exists()


def test_training_and_resume_keep_every_file_consistent(tmp_path):
  """A real run of 2 seeds, 3 iterations, checkpoints at 2 and 3. Losing checkpoint 3 and
  resuming from 2 recomputes iteration 3: every file holds each (iteration, seed) once, the
  recomputed rows equal the first ones (resume is exact), TensorBoard purges from the last
  kept step + 1, and progress_fn is called at each evaluation."""
  from spo_jax.train import train

  config = preset("balance").replace(
      num_envs=4, episode_length=8, num_minibatches=1, update_epochs=1, num_eval_envs=2,
      eval_every=1, max_iterations=3, checkpoint_every=2, num_seeds=2,
      policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
  run = tmp_path / "run"
  seen = []
  train(config, run_dir=run, progress_fn=lambda step, m: seen.append(m["iteration"]))
  assert seen == [1, 2, 3]
  first = read_jsonl(run / "metrics.jsonl")
  shutil.rmtree(run / "checkpoints" / "3")
  train(config, run_dir=run, resume=True, progress_fn=lambda step, m: seen.append(m["iteration"]))
  assert seen == [1, 2, 3, 3]
  rows = read_jsonl(run / "metrics.jsonl")
  assert [(r["iteration"], r["seed"]) for r in rows] == [(i, s) for i in (1, 2, 3)
                                                         for s in (0, 1)]
  for old, new in zip(first, rows, strict=True):
    assert new["eval/episode_reward"] == old["eval/episode_reward"]
    assert new["step"] == old["step"]
  assert [(int(r["iteration"]), int(r["seed"])) for r in read_csv(run / "metrics.csv")] == [
      (r["iteration"], r["seed"]) for r in rows]
  for seed in (0, 1):
    scalars, starts = tb_scalars(run / "tensorboard" / f"seed_{seed}")
    kept = [r for r in rows if r["seed"] == seed]
    assert starts == [kept[1]["step"] + 1]
    steps = [s for s, t, _ in scalars if t == "eval/episode_reward"]
    assert steps == [kept[0]["step"], kept[1]["step"], kept[2]["step"], kept[2]["step"]]


def test_only_jsonl_when_csv_and_tensorboard_are_off(tmp_path):
  """--no-csv --no-tensorboard leaves metrics.jsonl alone in the directory."""
  logger = MetricsLogger(tmp_path, LogOptions(csv=False, tensorboard=False))
  logger.log(rows_of(1))
  logger.close()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
  assert json.loads((tmp_path / "metrics.jsonl").read_text())["iteration"] == 1


def test_a_sweep_groups_runs_are_point_and_seed_everywhere_and_resume_drops_rows(tmp_path):
  """A sweep group of 2 points x 2 seeds (the points share the seeds): one TensorBoard run per
  (point, seed) whose visible scalars are its rows (without the point's values, which are
  HParams instead), metrics.csv with the point's columns after step and iteration. Rows of
  iterations 1..3 logged, then a resume from the checkpoint of iteration 1: every file holds
  each (iteration, point, seed) once, the recomputed rows the new values."""
  tags = [{"point": p, "learning_rate": lr, "policy_hidden_sizes": [8], "seed": s}
          for p, lr in ((0, 1e-3), (1, 3e-2)) for s in (3, 4)]

  def group_rows(iteration, extra=None):
    # reward = iteration + seed + 10 * point: every (point, seed) its own curve
    return [{"eval/episode_reward": float(iteration + t["seed"] + 10 * t["point"]),
             **{k: v for k, v in t.items() if k != "seed"}, "step": 100 * iteration,
             "iteration": iteration, "seed": t["seed"], **(extra or {})} for t in tags]

  logger = MetricsLogger(tmp_path, LogOptions(), run_tags=tags)
  for it in (1, 2, 3):
    logger.log(group_rows(it))
  logger.close()
  logger = MetricsLogger(tmp_path, LogOptions(), resume_iteration=1, run_tags=tags)
  for it in (2, 3):
    logger.log(group_rows(it, extra={"resumed": 1}))
  logger.close()

  rows = read_jsonl(tmp_path / "metrics.jsonl")
  assert [(r["iteration"], r["point"], r["seed"]) for r in rows] == [
      (i, p, s) for i in (1, 2, 3) for p in (0, 1) for s in (3, 4)]
  assert [r.get("resumed", 0) for r in rows] == [0] * 4 + [1] * 8
  table = read_csv(tmp_path / "metrics.csv")
  assert list(table[0])[:6] == ["step", "iteration", "point", "learning_rate",
                                "policy_hidden_sizes", "seed"]
  assert [(int(r["iteration"]), int(r["point"]), int(r["seed"])) for r in table] == [
      (r["iteration"], r["point"], r["seed"]) for r in rows]
  assert {r["policy_hidden_sizes"] for r in table} == {"[8]"}  # JSON, as in results.csv
  assert [float(r["eval/episode_reward"]) for r in table] == [
      r["eval/episode_reward"] for r in rows]

  board = tmp_path / "tensorboard"
  assert sorted(str(p.relative_to(board)) for p in board.glob("*/*")) == [
      f"point_{p}/seed_{s}" for p in (0, 1) for s in (3, 4)]
  for tag in tags:
    run = board / f"point_{tag['point']}" / f"seed_{tag['seed']}"
    _, starts = tb_scalars(run)
    assert starts == [101]  # the last kept step (100) + 1: iterations 2 and 3 hidden
    mine = [r for r in rows if (r["point"], r["seed"]) == (tag["point"], tag["seed"])]
    # reward, iteration and `resumed`: step and seed are axes, the point's values HParams
    assert tb_visible(run) == {r["step"]: {k: v for k, v in r.items() if k in (
        "eval/episode_reward", "iteration", "resumed")} for r in mine}
    infos = tb_hparams(run)
    assert len(infos) == 2  # in each event file: a purge from step 0 would hide the first
    for info in infos:
      assert info.group_name == f"point_{tag['point']}"  # its seeds: one session group
      assert {k: v.WhichOneof("kind") for k, v in info.hparams.items()} == {
          "point": "number_value", "learning_rate": "number_value",
          "policy_hidden_sizes": "string_value"}
      assert info.hparams["learning_rate"].number_value == tag["learning_rate"]
      assert info.hparams["policy_hidden_sizes"].string_value == "[8]"
