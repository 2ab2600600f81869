"""The run directory: who may write it, which files it holds, how they are checked.

Layout (the names below are the contract; readers and writers use these constants):

  RUN_DIR/run.lock             the owner's lock (`RunLock`): present while a run holds it,
                               or stale after a crash (harmless: the OS lock is what counts)
  RUN_DIR/config.json          the run's Config, written once, atomically
  RUN_DIR/policy.json          what loading the policy needs besides its weights (network
                               factory arguments, ...; spo_jax/saved_policy.py), atomically
  RUN_DIR/provenance.json      the code, library versions, devices and command of the run's
                               start and of each resume (spo_jax/provenance.py), atomically
  RUN_DIR/metrics.jsonl        one JSON object per seed per evaluation (spo_jax/loggers.py)
  RUN_DIR/checkpoints/<step>/  Orbax checkpoints (spo_jax/checkpoint.py), each with a
     MANIFEST.json             size and SHA-256 of every file, written last
                               (spo_jax/digests.py, `write_manifest`)

Writers. Exactly one process writes a run directory: `train` takes `RunLock` (an exclusive
`fcntl.flock` on RUN_DIR/run.lock) before it checks or writes anything there and holds it until
it returns. The lock lives in the kernel, not in the file: it vanishes with the process however
that ends (SIGKILL, OOM kill), so it cannot go stale the way a PID file does. A second writer
(`spo-train`, `--resume`, `--overwrite`, a sweep or reproduction point) is refused with
`RunDirBusy`, whose one line names the holder (host, PID, start time: the holder writes them
into the lock file after taking the lock).

Readers (`spo-eval`, `spo-plot`, `load_policy`) take no lock. They never see half a file:
config.json, policy.json and provenance.json are replaced atomically (`write_text_atomic`),
metrics.jsonl only grows by whole flushed lines (a line cut short by a kill is skipped by its
reader), and a checkpoint folder gets its step name only once Orbax has written all of it.

Faults. A write that fails because of the file system (disk full, quota, read-only or vanished
directory; spo_jax/write_errors.py recognises them, also wrapped in Orbax's errors) stops
training with `RunWriteError`: one line naming what failed, the path and the last good checkpoint
(`spo-train` exits with code 4). A checkpoint whose files no longer match its manifest
(bit rot, a copy cut short, a hand edit) is skipped by every reader in favour of the newest one
that verifies (spo_jax/checkpoint.py).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from spo_jax.config import ConfigError

LOCK = "run.lock"
CONFIG = "config.json"
POLICY = "policy.json"
PROVENANCE = "provenance.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MANIFEST = "MANIFEST.json"


# -------------------------------------------------------------------------------------
# Atomic files
# -------------------------------------------------------------------------------------

def write_text_atomic(path: str | Path, text: str | bytes) -> None:
  """Write `text` (str, or bytes such as a PNG) to `path` so that a reader (or a crash) sees
  the old file or the new one, never half of it: write a sibling temporary file, flush it to
  disk, rename it over `path`. A failed write (disk full) removes its temporary file and
  raises the OSError; `path` is then untouched."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  try:
    with open(tmp, "wb") as file:
      file.write(text.encode() if isinstance(text, str) else text)
      file.flush()
      os.fsync(file.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      tmp.unlink()
    except OSError:
      pass
    raise


# -------------------------------------------------------------------------------------
# The owner's lock
# -------------------------------------------------------------------------------------

class RunDirBusy(ConfigError):
  """Another process holds the run directory's lock (a bad input: exit code 2)."""


# flock errors that mean "this file system cannot lock", not "someone holds the lock".
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
if hasattr(errno, "ENOTSUP"):
  _NO_LOCKING.add(errno.ENOTSUP)


class RunLock:
  """An exclusive, OS-level lock on a run directory, held from `acquire` to `release`.

  `acquire` creates the directory (and missing parents) if needed, opens RUN_DIR/run.lock and
  takes `fcntl.flock(LOCK_EX | LOCK_NB)`: it never waits. Refusals, each a `ConfigError`
  with one line (exit code 2 in `spo-train`):
    - `RunDirBusy` when another process holds it, naming its host, PID and start time;
    - the path is a file, or cannot be created or written;
    - the file system has no file locks (flock raises ENOLCK/EOPNOTSUPP, as some network
      file systems do).
  A refusal leaves the disk as it was: directories and lock file it created are removed.

  `release(remove_if_unused=True)` deletes the lock file (while still holding the lock) and
  closes it, which drops the lock; directories `acquire` created are removed again when
  nothing but the lock was written into them (a run refused for bad input leaves no trace).
  A holder killed without `release` leaves run.lock behind with its stale details; the kernel
  dropped the lock with the process, so the next `acquire` simply takes it.

  Races: a file unlinked by a releasing holder between our open and our flock is detected
  (the locked inode is no longer the one at the path) and the open is retried.
  """

  def __init__(self, run_dir: str | Path):
    self.run_dir = Path(run_dir)
    self.path = self.run_dir / LOCK
    self._fd: int | None = None
    self._created_dirs: list[Path] = []

  @property
  def held(self) -> bool:
    return self._fd is not None

  def acquire(self) -> RunLock:
    if self.run_dir.exists() and not self.run_dir.is_dir():
      raise ConfigError(f"run directory '{self.run_dir}' is a file; choose a directory path")
    missing, parent = [], self.run_dir
    while not parent.exists():
      missing.append(parent)
      parent = parent.parent
    try:
      self.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
      self._created_dirs = [d for d in missing if d.exists()]
      self._remove_created_dirs()
      raise _unwritable(self.run_dir, error) from error
    self._created_dirs = missing  # deepest first: the order to remove them in
    for _ in range(20):
      created_file = False
      try:
        try:
          fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
          created_file = True
        except FileExistsError:
          fd = os.open(self.path, os.O_RDWR)
      except FileNotFoundError:  # the directory or file vanished under us: try again
        self.run_dir.mkdir(parents=True, exist_ok=True)
        continue
      except OSError as error:
        self._remove_created_dirs()
        raise _unwritable(self.run_dir, error) from error
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        holder = self._read_holder()
        self._remove_created_dirs()
        raise RunDirBusy(
            f"run directory '{self.run_dir}' is in use by another run ({holder}); wait for "
            "it to finish or stop it, or choose another --run-dir") from None
      except OSError as error:
        os.close(fd)
        if created_file:
          self.path.unlink(missing_ok=True)
        self._remove_created_dirs()
        if error.errno in _NO_LOCKING:
          raise ConfigError(
              f"cannot lock run directory '{self.run_dir}': its file system does not support "
              f"file locks ({errno.errorcode.get(error.errno, error.errno)}: {error.strerror}),"
              " so two runs could write it at once; choose a --run-dir on a local disk") \
              from error
        raise _unwritable(self.run_dir, error) from error
      if _same_file(fd, self.path):
        self._fd = fd
        self._write_holder()
        return self
      os.close(fd)  # locked a file its releasing holder had just unlinked
    raise ConfigError(f"could not lock run directory '{self.run_dir}': its lock file kept "
                      "changing; is another program deleting it?")

  def _write_holder(self) -> None:
    """Who holds the lock, for the refusal another process prints. Best effort: the lock,
    not this text, is what excludes other writers (a full disk may refuse the text)."""
    info = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""}
    try:
      os.ftruncate(self._fd, 0)
      os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:
      pass

  def _read_holder(self) -> str:
    # The holder writes its details right after taking the lock: give it a moment.
    for _ in range(10):
      try:
        info = json.loads(self.path.read_text())
        return (f"host {info['host']}, PID {info['pid']}, started "
                f"{info['started'].replace('T', ' ')}")
      except (OSError, ValueError, KeyError, TypeError):
        time.sleep(0.05)
    return "a process that has not yet written its details to run.lock"

  def _remove_created_dirs(self) -> None:
    for directory in self._created_dirs:
      try:
        directory.rmdir()
      except OSError:
        break
    self._created_dirs = []

  def release(self, remove_if_unused: bool = True) -> None:
    if self._fd is None:
      return
    try:
      self.path.unlink()  # still locked: a process that opened it meanwhile will retry
    except OSError:
      pass  # a vanished or read-only directory: the stale file is harmless
    os.close(self._fd)
    self._fd = None
    if remove_if_unused:
      self._remove_created_dirs()
    self._created_dirs = []

  def __enter__(self) -> RunLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _same_file(fd: int, path: Path) -> bool:
  try:
    a, b = os.fstat(fd), os.stat(path)
  except OSError:
    return False
  return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _unwritable(path: Path, error: OSError) -> ConfigError:
  return ConfigError(f"cannot write to '{path}' ({error.strerror}); choose a --run-dir you "
                     "can write to")


# -------------------------------------------------------------------------------------
# Checks before a run starts, and --overwrite
# -------------------------------------------------------------------------------------

def holds_run(run_dir: Path) -> bool:
  return (run_dir / CONFIG).exists() or (run_dir / CHECKPOINTS).exists()


def check_arguments(run_dir: Path, resume: bool, overwrite: bool) -> None:
  """What the arguments alone decide, before the lock (so that a refused command creates
  nothing): contradicting flags, a file in the way, nothing to resume, an unwritable place."""
  if resume and overwrite:
    raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
  if run_dir.exists() and not run_dir.is_dir():
    raise ConfigError(f"run directory '{run_dir}' is a file; choose a directory path")
  if resume and not run_dir.exists():
    raise ConfigError(f"nothing to resume: run directory '{run_dir}' does not exist; check "
                      "--run-dir, or drop --resume to start a new run there")
  parent = run_dir
  while not parent.exists():
    parent = parent.parent
  probe = parent / f".spo_jax_write_test_{time.time_ns()}"
  try:
    probe.touch()
    probe.unlink()
  except OSError as error:
    raise _unwritable(parent, error) from error


_ASIDE = re.compile(r"^\.deleting-\d+$")


def clear(run_dir: Path) -> None:
  """Delete everything in a locked run directory but its lock (--overwrite, and leftovers of
  an --overwrite killed midway before a new run starts).

  Entries are first moved into RUN_DIR/.deleting-<pid> (renames, each atomic), checkpoints/
  first: a kill midway then leaves at worst a run with no checkpoint, which --resume refuses
  and names --overwrite for, never half a run that --resume would take for a whole one.
  """
  entries = [p for p in run_dir.iterdir() if p.name != LOCK]
  if not entries:
    return
  aside = run_dir / f".deleting-{os.getpid()}"
  aside.mkdir(exist_ok=True)
  entries.sort(key=lambda p: (p.name != CHECKPOINTS, p.name != CONFIG, p.name))
  for entry in entries:
    if entry != aside:
      os.replace(entry, aside / entry.name)
  shutil.rmtree(aside)


def remove_leftovers(run_dir: Path) -> None:
  """Folders of an --overwrite killed midway (`.deleting-<pid>`): a new run owns them now."""
  for entry in run_dir.iterdir():
    if _ASIDE.match(entry.name) and entry.is_dir():
      shutil.rmtree(entry, ignore_errors=True)
