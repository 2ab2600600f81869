"""--wandb against the real `wandb` package in offline mode (no network): one W&B run per seed,
grouped by run directory, each with only its own seed's rows, continued on resume.

What a run logged is read back from the transaction log W&B leaves offline,
RUN_DIR/wandb/offline-run-<time>-<id>/run-<id>.wandb (what `wandb sync` uploads). wandb 0.2x+
ships no Python reader for it, and offline runs write no wandb-summary.json, so `records`
below parses it: a 7-byte header (":W&B", magic 0xBEE1, version 0), then LevelDB-log records
in 32 KiB blocks, each chunk a 7-byte header (crc32c u32, length u16, type u8: 1 full,
2 first, 3 middle, 4 last) and its bytes; a whole record is one `wandb_internal_pb2.Record`.
"""

import json
import shutil
import struct

import pytest

from spo_jax.loggers import read_jsonl

wandb = pytest.importorskip("wandb")

_BLOCK = 32 * 1024


def records(path):
  """Every `Record` of a .wandb file, in order."""
  from wandb.proto import wandb_internal_pb2

  data = path.read_bytes()
  assert data[:4] == b":W&B"
  offset, chunks = 7, b""
  while offset + 7 <= len(data):
    left = _BLOCK - offset % _BLOCK
    if left < 7:  # a block's tail too short for a chunk header is padding
      offset += left
      continue
    _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
    if kind == 0 and length == 0:  # zero padding up to the block's end
      offset += left
      continue
    chunks += data[offset + 7:offset + 7 + length]
    offset += 7 + length
    if kind in (1, 4):
      yield wandb_internal_pb2.Record.FromString(chunks)
      chunks = b""


def offline_runs(run_dir):
  """{folder name: (RunRecord, [history rows as dicts], finished)} of every offline run."""
  # `run.finish()` can return before wandb's service has written the run's last records to
  # its .wandb file (seen with wandb 0.31 on a loaded machine: one of several concurrent
  # runs read back empty). Tearing the service down waits for every file to be complete.
  import wandb

  wandb.teardown()
  runs = {}
  for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
    (path,) = folder.glob("run-*.wandb")
    run, history, finished = None, [], False
    for record in records(path):
      kind = record.WhichOneof("record_type")
      if kind == "run":
        run = record.run
      elif kind == "history":
        history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item})
      elif kind == "exit":
        finished = True
    runs[folder.name] = (run, history, finished)
  return runs


def logged(history_row):
  """A history row without W&B's own bookkeeping (`_step` kept: it is the iteration)."""
  return {k: v for k, v in history_row.items() if k not in ("_timestamp", "_runtime")}


def expected(row):
  """What the sink logs of a metrics.jsonl row: its scalars, `step`, W&B step = iteration."""
  out = {k: v for k, v in row.items() if k not in ("seed", "iteration")
         and not isinstance(v, bool) and isinstance(v, int | float)}
  out["_step"] = row["iteration"]
  return out


def test_one_offline_run_per_seed_grouped_and_continued_on_resume(monkeypatch, tmp_path):
  """2 vmapped seeds, 3 iterations (checkpoints at 2 and 3): two offline W&B runs, group = the
  run directory's name, named and id'd by seed, each holding exactly its seed's rows of
  metrics.jsonl. Losing checkpoint 3 and resuming opens the same two ids again, which log the
  recomputed iteration 3 only; every run is finished."""
  from spo_jax.cli import train_main

  # Offline by W&B's own WANDB_MODE (no --wandb-mode given), quiet, nothing under $HOME: W&B
  # never reaches the network (were the mode ignored, init would stop for want of an API key).
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_DIR", str(tmp_path))
  monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
  monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  run_dir = tmp_path / "hopper_sweep"
  flags = ["--env", "balance", "--num-envs", "4", "--episode-length", "8",
           "--num-minibatches", "1", "--update-epochs", "1", "--num-eval-envs", "2",
           "--eval-every", "1", "--max-iterations", "3", "--checkpoint-every", "2",
           "--num-seeds", "2", "--seed", "5", "--policy-hidden-sizes", "8",
           "--value-hidden-sizes", "8", "--no-csv", "--no-tensorboard", "--quiet", "--wandb",
           "--run-dir", str(run_dir)]
  train_main(flags)

  rows = read_jsonl(run_dir / "metrics.jsonl")
  base = (run_dir / "wandb_id.txt").read_text().strip()
  first = offline_runs(run_dir)
  assert len(first) == 2
  by_seed = {}
  for run, history, finished in first.values():
    seed = int(run.run_id.removeprefix(f"{base}-seed"))
    by_seed[seed] = history
    assert run.run_group == "hopper_sweep" and run.display_name == f"hopper_sweep/seed_{seed}"
    assert finished
  assert sorted(by_seed) == [5, 6]  # config.seed + i
  for seed, history in by_seed.items():
    mine = [r for r in rows if r["seed"] == seed]
    assert [r["iteration"] for r in mine] == [1, 2, 3]
    assert [logged(h) for h in history] == [expected(r) for r in mine]
  # The seeds are distinct curves (different seeds, different returns).
  assert by_seed[5] != by_seed[6]

  shutil.rmtree(run_dir / "checkpoints" / "3")
  train_main([*flags, "--resume"])
  rows = read_jsonl(run_dir / "metrics.jsonl")
  resumed = {k: v for k, v in offline_runs(run_dir).items() if k not in first}
  assert sorted(run.run_id for run, _, _ in resumed.values()) == [f"{base}-seed5",
                                                                   f"{base}-seed6"]
  for run, history, finished in resumed.values():
    seed = int(run.run_id.removeprefix(f"{base}-seed"))
    assert finished and run.run_group == "hopper_sweep"
    assert [logged(h) for h in history] == [
        expected(r) for r in rows if r["seed"] == seed and r["iteration"] == 3]


def test_wandb_first_given_on_a_resume_logs_the_kept_rows_first(monkeypatch, tmp_path):
  """A run resumed from iteration 2 with --wandb for the first time: each seed's new W&B run
  gets that seed's rows of iterations 1 and 2 from metrics.jsonl (not those of iteration 3,
  which the resume recomputes), as TensorBoard is backfilled."""
  from spo_jax.loggers import LogOptions, MetricsLogger

  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  rows = [{"eval/episode_reward": float(it + s), "step": 100 * it + s, "iteration": it,
           "seed": s} for it in (1, 2, 3) for s in (0, 1)]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  options = LogOptions(csv=False, tensorboard=False, wandb=True, wandb_mode="offline")
  MetricsLogger(tmp_path, options, {"seed": 0}, num_seeds=2, resume_iteration=2).close()
  runs = offline_runs(tmp_path)
  assert len(runs) == 2
  for run, history, finished in runs.values():
    seed = int(run.run_id[-1])
    assert finished
    assert [logged(h) for h in history] == [
        expected(r) for r in rows if r["seed"] == seed and r["iteration"] <= 2]
