"""The run directory's small pieces (spo_jax/run_dir.py): atomic files, the checks made before
the lock, --overwrite's clearing order and its leftovers. The lock itself and whole runs
are in test_faults.py."""

import errno
import os
from pathlib import Path

import pytest

from spo_jax import run_dir
from spo_jax.config import ConfigError


def _files(folder):
  return sorted(p.name for p in Path(folder).iterdir())


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "config.json"
  run_dir.write_text_atomic(path, "old")
  run_dir.write_text_atomic(path, b"\x89PNG new")  # bytes as they are
  assert path.read_bytes() == b"\x89PNG new" and _files(tmp_path) == ["config.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_temporary(tmp_path,
                                                                            monkeypatch):
  path = tmp_path / "config.json"
  run_dir.write_text_atomic(path, "old")

  def disk_full(src, dst):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "replace", disk_full)
  with pytest.raises(OSError, match="No space left"):
    run_dir.write_text_atomic(path, "new")
  assert path.read_text() == "old" and _files(tmp_path) == ["config.json"]


@pytest.mark.parametrize("resume, overwrite, setup, words", [
    (True, True, None, "--resume and --overwrite contradict each other"),
    (False, False, "file", "is a file; choose a directory path"),
    (True, False, None, "nothing to resume"),
])
def test_arguments_are_checked_before_anything_is_created(tmp_path, resume, overwrite, setup,
                                                          words):
  target = tmp_path / "run"
  if setup == "file":
    target.write_text("not a run")
  with pytest.raises(ConfigError, match=words):
    run_dir.check_arguments(target, resume, overwrite)
  assert _files(tmp_path) == (["run"] if setup == "file" else [])


def test_an_unwritable_place_is_named_with_its_nearest_existing_parent(tmp_path, monkeypatch):
  def read_only(self, *args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")

  monkeypatch.setattr(Path, "touch", read_only)
  with pytest.raises(ConfigError, match=f"cannot write to '{tmp_path}' .Read-only file system."):
    run_dir.check_arguments(tmp_path / "a" / "b", resume=False, overwrite=False)
  assert _files(tmp_path) == []


def test_a_run_is_a_config_or_checkpoints(tmp_path):
  assert not run_dir.holds_run(tmp_path)
  (tmp_path / run_dir.CHECKPOINTS).mkdir()
  assert run_dir.holds_run(tmp_path)


def _a_run(folder):
  (folder / run_dir.LOCK).write_text("holder")
  (folder / run_dir.CHECKPOINTS / "100").mkdir(parents=True)
  for name in (run_dir.CONFIG, run_dir.METRICS, run_dir.POLICY):
    (folder / name).write_text("{}")
  return folder


def test_clear_keeps_only_the_lock(tmp_path):
  run_dir.clear(_a_run(tmp_path))
  assert _files(tmp_path) == [run_dir.LOCK]
  run_dir.clear(tmp_path)  # nothing left to clear: no folder made
  assert _files(tmp_path) == [run_dir.LOCK]


def test_a_clear_killed_midway_never_leaves_a_run_that_looks_whole(tmp_path, monkeypatch):
  # checkpoints/ is moved aside first, then config.json: stopped after the first move, the
  # folder has a config but no checkpoint, which --resume refuses (and names --overwrite for)
  _a_run(tmp_path)
  moved, real_replace = [], os.replace

  def killed_after_one(src, dst):
    if moved:
      raise KeyboardInterrupt
    moved.append(Path(src).name)
    real_replace(src, dst)

  monkeypatch.setattr(os, "replace", killed_after_one)
  with pytest.raises(KeyboardInterrupt):
    run_dir.clear(tmp_path)
  assert moved == [run_dir.CHECKPOINTS]
  aside = f".deleting-{os.getpid()}"
  assert _files(tmp_path) == sorted([aside, run_dir.CONFIG, run_dir.LOCK, run_dir.METRICS,
                                     run_dir.POLICY])
  # the next run owns the leftovers and removes them (and only them)
  (tmp_path / ".deleting-x").mkdir()  # not a leftover's name: kept
  run_dir.remove_leftovers(tmp_path)
  assert aside not in _files(tmp_path) and ".deleting-x" in _files(tmp_path)
