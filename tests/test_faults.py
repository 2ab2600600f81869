"""Faults of the file system and of people, each injected once: what the user sees (exit
code, exactly one line on stderr, no traceback) and what survives (everything written before
the fault loads and equals what it was).

  - two writers on one run directory, a stale lock after SIGKILL, a file system without locks;
  - a write refused (disk full, quota, read-only) at each write site: config.json, a metrics
    row, TensorBoard events, a checkpoint; and a real full disk (a 3 MB tmpfs, where the
    machine lets the test mount one);
  - damaged files: a bit flipped or a file truncated in the newest checkpoint, every
    checkpoint damaged, a checkpoint this version cannot read, truncated config.json and
    metrics.jsonl.

Most cases run `train_main` in-process on the package's tiny `point_reach` env; the SIGKILL
and the real full disk run as subprocesses, because only a process of its own can be killed
or show what reaches a terminal.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from write_faults import half_write

import spo_jax
from spo_jax import digests
from spo_jax import run_dir as run_dir_lib
from spo_jax.checkpoint import Checkpointer, complete_steps
from spo_jax.cli import train_main
from spo_jax.config import ConfigError
from spo_jax.run_dir import RunDirBusy, RunLock

TINY = ["--env", "point_reach", "--num-envs", "4", "--episode-length", "8",
        "--num-minibatches", "1", "--update-epochs", "1", "--num-eval-envs", "2",
        "--eval-every", "1", "--policy-hidden-sizes", "8", "--value-hidden-sizes", "8",
        "--checkpoint-every", "1", "--quiet"]
ITERATIONS = 3


def _train(run_dir, *extra, iterations=ITERATIONS):
  """spo-train in this process; returns (exit code, stderr lines)."""
  code = 0
  try:
    train_main([*TINY, "--max-iterations", str(iterations), "--run-dir", str(run_dir), *extra])
  except SystemExit as stop:
    code = stop.code
  return code


def _one_line(capsys, *words):
  """The user's view of a fault: exactly one line on stderr, no traceback, the given words."""
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in err, err
  for word in words:
    assert word in lines[0], f"{word!r} not in: {lines[0]}"
  return lines[0]


def _snapshot(root):
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


def _rows(run_dir):
  return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
  """One finished tiny run (checkpoints 1, 2, 3 with manifests; 3 metrics rows), copied by
  every test that damages a run."""
  run_dir = tmp_path_factory.mktemp("template") / "run"
  assert _train(run_dir) == 0
  assert complete_steps(run_dir / "checkpoints") == [1, 2, 3]
  return run_dir


@pytest.fixture
def run(template, tmp_path):
  shutil.copytree(template, tmp_path / "run")
  return tmp_path / "run"


# -------------------------------------------------------------------------------------
# One writer per run directory
# -------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--resume"], ["--overwrite"]],
                         ids=["new", "resume", "overwrite"])
def test_a_second_writer_is_refused_naming_the_holder(run, capsys, extra):
  """While one run holds the directory (here: this process, through a second open file
  description of run.lock, which flock treats like another process), spo-train, --resume and
  --overwrite are refused in one line naming host, PID and start time, before anything is
  read, compiled or deleted: the holder's files stay byte for byte."""
  before = _snapshot(run)
  with RunLock(run):
    held = _snapshot(run)
    assert _train(run, *extra) == 2
    _one_line(capsys, "in use by another run", f"PID {os.getpid()}", "started",
              os.uname().nodename)
    assert _snapshot(run) == held
  # Released: the lock file is gone and the run is as it was.
  assert _snapshot(run) == before and not (run / run_dir_lib.LOCK).exists()


def test_an_empty_directory_being_claimed_is_not_taken_twice(tmp_path):
  """The issue's race: two starts two seconds apart into a fresh directory. The first one's
  lock exists before it has written anything, so the second is refused although the
  directory still holds no run."""
  first = RunLock(tmp_path / "same").acquire()
  try:
    with pytest.raises(RunDirBusy, match="in use"):
      spo_jax.train(spo_jax.preset("point_reach"), run_dir=tmp_path / "same")
  finally:
    first.release()
  assert not (tmp_path / "same").exists()  # nothing was written, so nothing is left


def test_a_sigkilled_holder_leaves_a_stale_lock_file_that_is_harmless(tmp_path):
  """SIGKILL gives the holder no chance to release: run.lock stays on disk with its details,
  but the kernel dropped the flock with the process, so the next run takes it at once."""
  run = tmp_path / "run"
  child = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from spo_jax.run_dir import RunLock; "
       "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)",
       str(run)], stdout=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(RunDirBusy, match=f"PID {child.pid}"):
      RunLock(run).acquire()
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
  stale = json.loads((run / run_dir_lib.LOCK).read_text())
  assert stale["pid"] == child.pid  # left behind, naming a dead process
  with RunLock(run) as lock:
    assert lock.held and json.loads((run / run_dir_lib.LOCK).read_text())["pid"] == os.getpid()


def test_a_file_system_without_locks_is_refused_before_anything_is_written(tmp_path, capsys,
                                                                          monkeypatch):
  """NFS without a lock daemon answers flock with ENOLCK: running anyway would let two writers
  in, so the run is refused (exit 2) and the directory it created is removed again."""
  import fcntl

  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

  monkeypatch.setattr(fcntl, "flock", no_locks)
  assert _train(tmp_path / "run") == 2
  _one_line(capsys, "does not support file locks", "ENOLCK", "--run-dir")
  assert os.listdir(tmp_path) == []


# -------------------------------------------------------------------------------------
# Writes the file system refuses
# -------------------------------------------------------------------------------------

def _no_space(code=errno.ENOSPC):
  return OSError(code, os.strerror(code))


def _fail_config(monkeypatch, code):
  """config.json: the atomic writer's temporary file hits a full disk half way."""
  half_write(monkeypatch, "config.json", _no_space(code))


def _fail_metrics(monkeypatch, code, after=2):
  """metrics.jsonl: the third row is cut short by a full disk (half its bytes written)."""
  real_write = os.write
  calls = {"n": 0}

  def fake_write(fd, data):
    try:
      target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
      target = ""
    if target.endswith("metrics.jsonl"):
      calls["n"] += 1
      if calls["n"] > after:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise _no_space(code)
    return real_write(fd, data)

  monkeypatch.setattr(os, "write", fake_write)


def _fail_tensorboard(monkeypatch, code, after=2):
  """TensorBoard: the third evaluation's flush finds the disk full."""
  from tensorboardX import record_writer

  real_flush = record_writer.RecordWriter.flush
  calls = {"n": 0}

  def fake_flush(self):
    calls["n"] += 1
    if calls["n"] > after:
      raise _no_space(code)
    return real_flush(self)

  monkeypatch.setattr(record_writer.RecordWriter, "flush", fake_flush)


def _fail_checkpoint(monkeypatch, code, after=2):
  """The third checkpoint: Orbax has made its temporary folder and part of a file when
  TensorStore's write fails; Orbax raises the ValueError it wraps the OS error in (the text
  is what Orbax 0.12.8 raised on a full 3 MB tmpfs, see test_a_real_full_disk)."""
  import orbax.checkpoint as ocp

  real_save = ocp.CheckpointManager.save
  calls = {"n": 0}

  def fake_save(self, step, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] > after:
      tmp = self.directory / f"{step}.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
      tmp.mkdir(parents=True)
      (tmp / "partial").write_bytes(b"\0" * 100)
      raise ValueError(f"{'RESOURCE_EXHAUSTED' if code == errno.ENOSPC else 'UNKNOWN'}: "
                       f"Error writing \"params\" in OCDBT database at local file \"{tmp}\": "
                       f"Failed to write 24898 bytes to file 18: {os.strerror(code)} "
                       f"[os_error_code='{code}']")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", fake_save)


# (what the line names, injector, errno, last good checkpoint in the line, rows kept).
# Each evaluation writes its row (JSONL, CSV, then TensorBoard) before the checkpoint of that
# iteration is saved: a run that fails writing row 3 has checkpoints 1 and 2; one that fails
# writing checkpoint 3 has rows 1..3. The config fails before anything else exists. A full
# disk at the checkpoint is test_after_a_full_disk_resume_continues_as_if_nothing_happened
# (and test_a_real_full_disk); other errno values are test_write_failure_recognises_*.
SITES = [
    ("config", _fail_config, errno.ENOSPC, None, 0),
    ("metrics row", _fail_metrics, errno.ENOSPC, 2, 2),
    ("TensorBoard events", _fail_tensorboard, errno.ENOSPC, 2, 3),
    ("checkpoint", _fail_checkpoint, errno.EROFS, 2, 3),  # a read-only file system
]


@pytest.mark.parametrize("what, inject, code, last, kept_rows", SITES,
                         ids=[f"{s[0]}-{errno.errorcode[s[2]]}" for s in SITES])
def test_a_refused_write_stops_the_run_in_one_line_and_keeps_what_was_written(
    tmp_path, capsys, monkeypatch, what, inject, code, last, kept_rows):
  run = tmp_path / "run"
  inject(monkeypatch, code)
  assert _train(run, iterations=5) == 4
  line = _one_line(capsys, f"could not write the {what}", errno.errorcode[code],
                   str(run), "training stopped")
  monkeypatch.undo()
  if last is None:
    assert "start again with --overwrite" in line
    # Nothing was written: no config.json, no temporary file, no lock, and the directory the
    # run created for its lock is removed again.
    assert not run.exists() and os.listdir(tmp_path) == []
    return
  assert f"last good checkpoint is iteration {last}" in line and "--resume" in line
  checkpoints = run / "checkpoints"
  assert complete_steps(checkpoints, verify=True) == list(range(1, last + 1))
  assert not list(checkpoints.glob("*orbax-checkpoint-tmp*"))  # no leftover temporaries
  assert not (run / run_dir_lib.LOCK).exists()
  # Whole rows only, the rows of iterations 1..kept_rows: a row cut short was truncated away.
  assert [r["iteration"] for r in _rows(run)] == list(range(1, kept_rows + 1))


def test_after_a_full_disk_resume_continues_as_if_nothing_happened(tmp_path, capsys,
                                                                   monkeypatch, template):
  """The fault costs time, not results: the run stopped by a full disk at checkpoint 3,
  resumed, ends with the rows and final state of the uninterrupted template run."""
  run = tmp_path / "run"
  _fail_checkpoint(monkeypatch, errno.ENOSPC)
  assert _train(run) == 4
  monkeypatch.undo()
  _one_line(capsys, "could not write the checkpoint", "ENOSPC", "free disk space",
            "last good checkpoint is iteration 2", "--resume")
  checkpoints = run / "checkpoints"
  assert complete_steps(checkpoints, verify=True) == [1, 2]
  assert not list(checkpoints.glob("*orbax-checkpoint-tmp*"))  # Orbax's temporary: removed
  assert _train(run, "--resume") == 0
  assert capsys.readouterr().err == ""
  strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
  assert strip(_rows(run)) == strip(_rows(template))
  a, b = (_restore(d, 3)[0] for d in (run, template))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def _restore(run, step):
  from spo_jax.checkpoint import read_run_config
  from spo_jax.train import build, over_seeds, seed_keys

  config = read_run_config(run)
  init = over_seeds(build(config).fns.init, config.num_seeds)
  checkpointer = Checkpointer(run / "checkpoints")
  try:
    return checkpointer.restore(step, jax.eval_shape(init, seed_keys(config)))
  finally:
    checkpointer.close()


def _mount_tmpfs(path, size):
  path.mkdir()
  try:
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return out.returncode == 0


def test_a_real_full_disk(tmp_path):
  """The issue's case on a real 3 MB file system: 256-wide networks make each checkpoint about
  1 MB, so the second or third save meets a full disk inside Orbax. The user sees one line
  and exit code 4 (before: ~500 lines of Orbax and asyncio tracebacks and exit 1), no
  temporary folder is left, and the checkpoints before it still verify."""
  disk = tmp_path / "disk"
  if not _mount_tmpfs(disk, "3m"):
    pytest.skip("cannot mount a tmpfs here (needs root); the injected faults above cover it")
  try:
    run = disk / "run"
    out = subprocess.run(
        [sys.executable, "-m", "spo_jax.cli", *TINY, "--max-iterations", "20",
         "--policy-hidden-sizes", "256", "256", "--value-hidden-sizes", "256", "256",
         "--run-dir", str(run)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 4, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "ENOSPC" in lines[0] and "last good checkpoint is iteration" in lines[0]
    checkpoints = run / "checkpoints"
    last = int(lines[0].split("last good checkpoint is iteration ")[1].split(";")[0])
    assert complete_steps(checkpoints, verify=True)[-1] == last
    assert not list(checkpoints.glob("*orbax-checkpoint-tmp*"))
    assert [r["iteration"] for r in _rows(run)] == list(range(1, len(_rows(run)) + 1))
  finally:
    subprocess.run(["umount", str(disk)], capture_output=True, timeout=30)


# -------------------------------------------------------------------------------------
# Damaged files: detected, not trusted
# -------------------------------------------------------------------------------------

def _flip_bytes(path, offset=0, count=8):
  data = bytearray(path.read_bytes())
  for i in range(offset, min(offset + count, len(data))):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def _largest_state_file(step_dir):
  return max((p for p in (step_dir / "state").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)


def _damage(step_dir, how):
  if how == "bit-flip":
    _flip_bytes(_largest_state_file(step_dir), offset=100)
  elif how == "truncate-meta":
    meta = step_dir / "meta" / "metadata"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
  else:  # a few hundred bytes overwritten in place: the size stays, the contents do not
    sharding = step_dir / "state" / "_sharding"
    data = sharding.read_bytes()
    sharding.write_bytes(b"\xff\xfe" * 150 + data[300:])


@pytest.mark.parametrize("how", ["truncate-meta", "overwrite-sharding"])
def test_every_kind_of_damage_is_caught_by_the_manifest(run, capsys, how):
  """meta/metadata cut in half (Orbax: invalid JSON) and state/_sharding overwritten (the
  issue's case: Orbax raised FAILED_PRECONDITION): the folder still looks complete, but its
  files no longer match the manifest, so load_policy falls back to checkpoint 2 with one
  line naming 3 and why."""
  _damage(run / "checkpoints" / "3", how)
  assert complete_steps(run / "checkpoints") == [1, 2, 3]  # every folder looks whole
  assert complete_steps(run / "checkpoints", verify=True) == [1, 2]
  spo_jax.load_policy(run)
  # Same size, other bytes: the SHA-256 differs; half the bytes: already the size differs.
  _one_line(capsys, "skipped checkpoint 3", "SHA-256" if how != "truncate-meta"
            else "bytes, its manifest says", "using checkpoint 2")


def test_a_damaged_newest_checkpoint_is_skipped_by_every_reader(run, capsys):
  """Bytes of checkpoint 3's parameters flipped: Orbax would load them without a word; the
  manifest's SHA-256 notices. load_policy and spo-eval fall back to checkpoint 2 with one line
  naming 3 and why (an explicit --step 3 is refused); --resume continues from 2, and its save
  of iteration 3 replaces the damaged folder with one that verifies."""
  _damage(run / "checkpoints" / "3", "bit-flip")
  assert complete_steps(run / "checkpoints") == [1, 2, 3]  # the folder looks whole
  assert complete_steps(run / "checkpoints", verify=True) == [1, 2]

  spo_jax.load_policy(run)
  _one_line(capsys, "skipped checkpoint 3", "SHA-256", "using checkpoint 2")

  from spo_jax.eval_cli import main as eval_main

  eval_main([str(run), "--episodes", "2"])
  captured = capsys.readouterr()
  assert "(iteration 2," in captured.out
  assert captured.err.count("\n") == 1 and "skipped checkpoint 3" in captured.err
  with pytest.raises(SystemExit) as stop:
    eval_main([str(run), "--step", "3"])
  assert stop.value.code == 2
  _one_line(capsys, "checkpoint 3", "is damaged")

  assert _train(run, "--resume", iterations=4) == 0
  _one_line(capsys, "skipped checkpoint 3", "using checkpoint 2")
  assert complete_steps(run / "checkpoints", verify=True)[-2:] == [3, 4]
  assert [r["iteration"] for r in _rows(run)] == [1, 2, 3, 4]


def test_when_no_checkpoint_verifies_resume_refuses_and_changes_nothing(run, capsys):
  for step in (1, 2, 3):
    _flip_bytes(_largest_state_file(run / "checkpoints" / str(step)))
  before = _snapshot(run)
  assert _train(run, "--resume", iterations=4) == 2
  _one_line(capsys, "no usable checkpoint", "3: ", "2: ", "1: ", "--overwrite")
  assert _snapshot(run) == before
  with pytest.raises(ConfigError, match="no usable checkpoint"):
    spo_jax.load_policy(run)


def test_a_checkpoint_this_version_cannot_read_is_refused_not_skipped(run, capsys):
  """A checkpoint whose files match their manifest but whose state Orbax cannot fit into the
  TrainState this version builds (here: a foreign pytree saved as step 4, standing in for a
  state written by another spo_jax release). Skipping to an older checkpoint would fail the
  same way, so --resume refuses at once (exit 2) and overwrites nothing."""
  checkpointer = Checkpointer(run / "checkpoints")
  checkpointer.save(4, {"weights": np.zeros(3, np.float32)}, {"counters": {}})
  checkpointer.close()
  before = _snapshot(run)
  assert _train(run, "--resume", iterations=5) == 2
  _one_line(capsys, "checkpoint 4", "intact", "cannot be read by this spo_jax",
            "version that wrote it")
  assert _snapshot(run) == before


def test_legacy_checkpoints_without_a_manifest_still_load(run, capsys):
  for manifest in (run / "checkpoints").glob("*/MANIFEST.json"):
    manifest.unlink()
  assert complete_steps(run / "checkpoints", verify=True) == [1, 2, 3]
  spo_jax.load_policy(run)
  assert capsys.readouterr().err == ""


@pytest.mark.parametrize("how", ["truncate-meta", "overwrite-sharding"])
def test_a_damaged_legacy_checkpoint_is_skipped_when_orbax_cannot_read_it(run, capsys, how):
  """Without manifests (checkpoints from before them) damage shows only when Orbax fails to
  read the files: that failure, hidden from the terminal, is the reason in the one line, and
  the previous checkpoint is used. Such a run predates policy.json too, so it loads through
  the whole restore (a policy.json run reads only the policy's arrays, not the sharding
  file damaged here, and its manifests catch the damage first)."""
  for manifest in (run / "checkpoints").glob("*/MANIFEST.json"):
    manifest.unlink()
  (run / "policy.json").unlink()
  _damage(run / "checkpoints" / "3", how)
  spo_jax.load_policy(run)
  _one_line(capsys, "skipped checkpoint 3", "Orbax cannot read it", "using checkpoint 2")


def test_truncated_config_and_metrics(run, capsys):
  """metrics.jsonl cut in the middle of its last row (iteration 3; damage from outside, since
  our own writes truncate a row they could not finish): a reader skips the half row, and a
  resumed run's logger (here: resuming checkpoint 3) rewrites the file with the whole rows
  before it, byte for byte; iteration 3's row is lost, it was never whole on disk. A
  truncated config.json cannot be trusted to rebuild the networks: --resume, load_policy and
  spo-eval refuse it in one line, exit code 2, and change nothing."""
  from spo_jax.loggers import LogOptions, MetricsLogger, read_jsonl

  metrics = run / "metrics.jsonl"
  text = metrics.read_text()
  whole = "".join(text.splitlines(keepends=True)[:2])
  metrics.write_text(text[: len(text) - 40])
  assert [r["iteration"] for r in read_jsonl(metrics)] == [1, 2]
  logger = MetricsLogger(run, LogOptions(csv=False, tensorboard=False), resume_iteration=3)
  logger.close()
  assert metrics.read_text() == whole

  config = run / "config.json"
  config.write_text(config.read_text()[:50])
  before = _snapshot(run)
  assert _train(run, "--resume", iterations=5) == 2
  _one_line(capsys, "config.json", "not valid JSON")
  with pytest.raises(ConfigError, match="not valid JSON"):
    spo_jax.load_policy(run)
  assert _snapshot(run) == before


def test_manifest_lists_every_file_and_catches_a_single_flipped_bit(tmp_path):
  """The manifest covers every file Orbax wrote (so no file escapes the check) and a
  one-bit change anywhere is a mismatch that names the file."""
  checkpointer = Checkpointer(tmp_path / "checkpoints")
  checkpointer.save(1, {"w": np.arange(1000, dtype=np.float32)}, {"step": 1})
  checkpointer.close()
  step_dir = tmp_path / "checkpoints" / "1"
  manifest = digests.read_manifest(step_dir)
  on_disk = {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file()}
  assert set(manifest["files"]) == on_disk - {run_dir_lib.MANIFEST}
  assert digests.manifest_problem(step_dir) is None
  victim = _largest_state_file(step_dir)
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0x01
  victim.write_bytes(bytes(data))
  problem = digests.manifest_problem(step_dir)
  assert problem is not None and victim.name in problem and "SHA-256" in problem


def test_overwrite_clears_the_run_under_its_lock(run):
  """--overwrite deletes the old run only while holding the lock, by moving its entries into
  a hidden folder inside the run directory (checkpoints first) and deleting that: only the
  lock is left, and no hidden folder. (The command line's --overwrite runs in
  tests/test_crash_resume.py.)"""
  (run / ".deleting-12345").mkdir()  # the leftover of an --overwrite killed midway
  with RunLock(run):
    run_dir_lib.clear(run)
    assert os.listdir(run) == [run_dir_lib.LOCK]
  assert os.listdir(run) == []


def test_lock_holder_details_are_written_after_the_lock_is_taken(tmp_path):
  with RunLock(tmp_path / "run") as lock:
    info = json.loads(lock.path.read_text())
    assert info["pid"] == os.getpid() and info["host"] == os.uname().nodename
    assert abs(time.time() - time.mktime(time.strptime(info["started"],
                                                       "%Y-%m-%dT%H:%M:%S"))) < 60


@pytest.mark.parametrize("error, quieted", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (ValueError("a bug, not the disk"), False),
])
def test_a_full_disk_quiets_stderr_inside_the_orbax_block(error, quieted):
  """The write-failure hooks (`QuietAfterWriteFailure` silences stderr) run the moment a
  disk-full error leaves Orbax, inside `_quiet_orbax`, not later in `failed_write`: in between,
  the abandoned write's threads printed an "Event loop is closed" traceback into the one-line
  report once in CI. The hook sees the caller's stderr (where the report goes), not the
  block's capture. Any other error runs no hook."""
  from spo_jax import write_errors
  from spo_jax.checkpoint import _quiet_orbax

  seen = []
  unregister = write_errors.on_write_failure(lambda: seen.append(sys.stderr))
  outer = sys.stderr
  try:
    with pytest.raises(type(error)), _quiet_orbax(writing=True):
      raise error
  finally:
    unregister()
  assert seen == ([outer] if quieted else [])


def test_a_failed_read_does_not_quiet_stderr():
  """A restore that fails with a file-system error (a damaged checkpoint missing a file, which
  resuming skips) runs no write-failure hook: silencing stderr there would hide the rest of
  the resumed run."""
  from spo_jax import write_errors
  from spo_jax.checkpoint import _quiet_orbax

  seen = []
  unregister = write_errors.on_write_failure(lambda: seen.append(sys.stderr))
  try:
    with pytest.raises(FileNotFoundError), _quiet_orbax():
      raise FileNotFoundError(errno.ENOENT, "No such file or directory")
  finally:
    unregister()
  assert seen == []
