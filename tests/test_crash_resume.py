"""Crash safety: a kill at any moment leaves the last complete checkpoint loadable, `--resume`
picks it, and the resumed run ends bit for bit where an uninterrupted one does.

The SIGKILL test drives the real command line in subprocesses. Kills are aimed at the three
phases a run goes through, each after a seeded random delay:
  - start-up: after config.json is written (imports done, compiling), before any checkpoint;
  - mid-save: the moment Orbax's `<step>.orbax-checkpoint-tmp` folder appears;
  - mid-iteration: after a randomly chosen checkpoint is complete.
A JAX persistent compilation cache shared by the processes keeps the test short: a process reads
back the programs an earlier one compiled. The final comparison is bitwise. Every process
compiles without XLA's LLVM optimisations (all alike), which takes about 40% off each compile.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from spo_jax.checkpoint import Checkpointer, complete_steps, read_run_config, write_text_atomic
from spo_jax.cli import train_main
from spo_jax.config import ConfigError

ITERATIONS = 10
# matrix_game: one-step episodes, the smallest compile of the package's envs. The queue puts
# a FIFO of past summaries in the state, so it must travel through the checkpoints too.
FLAGS = ["--env", "matrix_game", "--num-envs", "4", "--episode-length", "1",
         "--num-minibatches", "1", "--update-epochs", "1", "--num-eval-envs", "2",
         "--eval-every", "1", "--policy-hidden-sizes", "4", "--value-hidden-sizes", "4",
         "--queue-size", "4", "--seed", "3", "--max-iterations", str(ITERATIONS),
         "--checkpoint-every", "1", "--quiet"]


def _save_two(directory):
  state = {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3), "k": np.uint32([1, 2])}
  checkpointer = Checkpointer(directory)
  checkpointer.save(1, state, {"step": 1})
  checkpointer.save(2, jax.tree.map(lambda x: x + 1, state), {"step": 2})
  checkpointer.close()
  return state


def test_a_real_save_is_complete_and_tmp_or_partial_folders_are_not(tmp_path):
  """What Orbax 0.12.8 leaves when killed: `3.orbax-checkpoint-tmp` (save cut short; the
  rename to `3` never happened) or a numbered folder with files missing (its in-place
  deletion of an old step cut short). Neither may be taken for the latest checkpoint."""
  ckpt = tmp_path / "checkpoints"
  state = _save_two(ckpt)
  assert complete_steps(ckpt) == [1, 2]  # the marker list matches what Orbax writes
  shutil.copytree(ckpt / "2", ckpt / "3.orbax-checkpoint-tmp")
  shutil.copytree(ckpt / "2", ckpt / "4")
  (ckpt / "4" / "_CHECKPOINT_METADATA").unlink()
  shutil.copytree(ckpt / "2", ckpt / "5")
  (ckpt / "5" / "state" / "manifest.ocdbt").unlink()
  shutil.copytree(ckpt / "2", ckpt / "6")
  shutil.rmtree(ckpt / "6" / "meta")

  checkpointer = Checkpointer(ckpt)
  assert complete_steps(ckpt) == [1, 2] and checkpointer.latest_step() == 2
  restored, meta = checkpointer.restore(2, state)
  np.testing.assert_array_equal(restored["w"], state["w"] + 1)
  assert meta == {"step": 2}
  # Saving a step whose folder is a broken leftover replaces it with a complete one.
  checkpointer.save(4, state, {"step": 4})
  assert checkpointer.latest_step() == 4
  restored, meta = checkpointer.restore(4, state)
  np.testing.assert_array_equal(restored["w"], state["w"])
  checkpointer.close()


def test_write_text_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "config.json"
  write_text_atomic(path, "old")
  write_text_atomic(path, "new")
  assert path.read_text() == "new" and os.listdir(tmp_path) == ["config.json"]


def test_a_run_killed_before_its_first_checkpoint(tmp_path, capsys):
  """What such a run leaves: config.json, metrics.jsonl, and at most a tmp checkpoint.
  --resume says there is nothing to resume and names --overwrite; so does a plain start."""
  run_dir = tmp_path / "run"
  (run_dir / "checkpoints" / "1.orbax-checkpoint-tmp").mkdir(parents=True)
  config = read_run_config_from_flags()
  write_text_atomic(run_dir / "config.json", config.to_json())
  (run_dir / "metrics.jsonl").write_text("")
  before = sorted(p.name for p in run_dir.rglob("*"))
  for extra, words in ((["--resume"], "nothing to resume"), ([], "before its first checkpoint")):
    with pytest.raises(SystemExit) as stop:
      train_main([*FLAGS, "--run-dir", str(run_dir), *extra])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and words in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
  assert sorted(p.name for p in run_dir.rglob("*")) == before
  with pytest.raises(ConfigError, match="does not exist"):
    from spo_jax.run_dir import check_arguments

    check_arguments(tmp_path / "missing", resume=True, overwrite=False)


def read_run_config_from_flags():
  from spo_jax.cli import parse_train_args

  return parse_train_args(FLAGS).config


# -------------------------------------------------------------------------------------
# SIGKILL at random moments
# -------------------------------------------------------------------------------------

def _env(cache_dir):
  env = dict(os.environ)
  env.update({"JAX_COMPILATION_CACHE_DIR": str(cache_dir),
              "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
              "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
              "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"})
  return env


def _launch(run_dir, env, *extra):
  return subprocess.Popen([sys.executable, "-m", "spo_jax.cli", *FLAGS, "--run-dir",
                           str(run_dir), *extra], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _kill_when(proc, event, delay, timeout=300):
  """SIGKILL `proc` `delay` seconds after `event()` first holds; returns whether it was killed
  (False: the run finished first, e.g. on a fast machine)."""
  deadline = time.monotonic() + timeout
  while not event():
    if proc.poll() is not None:
      return False
    assert time.monotonic() < deadline, "the run made no progress"
    time.sleep(0.002)
  time.sleep(delay)
  if proc.poll() is not None:
    return False
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return True


def _saving(ckpt):
  """Holds once a save is in flight: a tmp folder made after this call (an earlier kill may
  have left an old one behind; Orbax removes and remakes it when it saves that step)."""
  since = time.time()

  def event():
    try:
      return any(p.name.endswith(".orbax-checkpoint-tmp") and p.stat().st_mtime >= since
                 for p in ckpt.iterdir())
    except FileNotFoundError:  # not created yet, or renamed while we looked
      return False
  return event


def _checkpointed(ckpt, step):
  """Holds once checkpoint `step` or a later one is complete. A run started with --overwrite
  moves the old checkpoints/ aside while we look (run_dir.clear): nothing complete then."""

  def event():
    try:
      return max(complete_steps(ckpt), default=0) >= step
    except FileNotFoundError:
      return False
  return event


def _final_state(run_dir):
  from spo_jax.train import build, over_seeds, seed_keys

  config = read_run_config(run_dir)
  init = over_seeds(build(config).fns.init, config.num_seeds)
  checkpointer = Checkpointer(run_dir / "checkpoints")
  step = checkpointer.latest_step()
  state, meta = checkpointer.restore(step, jax.eval_shape(init, seed_keys(config)))
  checkpointer.close()
  meta["counters"].pop("wall_time")
  return step, state, meta


@pytest.mark.parametrize("trial_seed", [0])
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path, trial_seed):
  env = _env(tmp_path / "jax_cache")
  reference = subprocess.run(
      [sys.executable, "-m", "spo_jax.cli", *FLAGS, "--run-dir", str(tmp_path / "whole")],
      env=env, capture_output=True, text=True, timeout=600)
  assert reference.returncode == 0, reference.stderr

  rng = random.Random(trial_seed)
  run_dir = tmp_path / "killed"
  ckpt = run_dir / "checkpoints"
  target = rng.randint(2, ITERATIONS - 2)
  kills = [
      ("start-up", lambda: lambda: (run_dir / "config.json").exists(), rng.uniform(0.0, 1.5)),
      ("mid-save", lambda: _saving(ckpt), rng.uniform(0.0, 0.02)),
      ("mid-iteration", lambda: _checkpointed(ckpt, target), rng.uniform(0.0, 0.2)),
  ]
  killed = []
  for phase, make_event, delay in [*kills, ("to the end", None, 0.0)]:
    # What a user does after a crash: --resume; a run with no complete checkpoint yet is
    # started again with --overwrite (test_a_run_killed_before_its_first_checkpoint).
    if not run_dir.exists():
      extra = []
    elif complete_steps(ckpt):
      extra = ["--resume"]
    else:
      extra = ["--overwrite"]
    event = make_event() if make_event is not None else None
    proc = _launch(run_dir, env, *extra)
    if event is not None and _kill_when(proc, event, delay):
      killed.append((phase, sorted(p.name for p in ckpt.iterdir()) if ckpt.exists() else []))
      continue
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    break
  assert killed, "no kill landed: the run finished before the first event"
  print("killed:", killed)

  step_a, state_a, meta_a = _final_state(tmp_path / "whole")
  step_b, state_b, meta_b = _final_state(run_dir)
  assert step_a == step_b == ITERATIONS
  assert meta_a == meta_b  # config, env steps, queries, labels, file digests
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(a, b)
  # The metrics file survives the kills too: every evaluation logged once (rows after the
  # resumed checkpoint were dropped, a half-written line included), with the uninterrupted
  # run's values; only the wall-clock fields differ.
  rows_a, rows_b = (_metric_rows(d / "metrics.jsonl") for d in (tmp_path / "whole", run_dir))
  assert [(r["iteration"], r["seed"]) for r in rows_b] == [
      (r["iteration"], r["seed"]) for r in rows_a]
  assert rows_a == rows_b


def _metric_rows(path):
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]
