"""Writes that fail because of the file system, turned into one line for the user.

A write that fails because of the place, not the program (disk full, quota, read-only or
vanished directory; `write_failure` recognises them, also wrapped in Orbax's errors), stops
training with `RunWriteError`: what failed, the path and the last good checkpoint
(`spo-train` exits with code 4). Any other error stays what it is: a bug must stay a bug.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# errno values that mean the place, not the program, is at fault: disk full, quota, read-only
# file system, a directory that vanished or forbids writing, an I/O or stale-handle error.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOENT, errno.EACCES,
                          errno.EPERM, errno.EIO, errno.EFBIG, errno.ESTALE, errno.ENOTDIR})
# Orbax and TensorStore report OS errors inside their own exceptions' text, e.g.
# "RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']".
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


# Called, in order, the moment `failed_write` recognises a file-system failure, before the
# error unwinds through Orbax's cleanup (`on_write_failure`).
_FAILURE_HOOKS: list[Callable[[], None]] = []


def on_write_failure(hook: Callable[[], None]) -> Callable[[], None]:
  """Call `hook()` as soon as a write failure is recognised, before anything is cleaned up;
  returns the function that unregisters it. `QuietAfterWriteFailure` quiets stderr there: the
  writes Orbax abandons print "Event loop is closed" tracebacks from background threads while
  the error unwinds, before the one-line report could be printed."""
  _FAILURE_HOOKS.append(hook)
  return lambda: _FAILURE_HOOKS.remove(hook)


def notify_write_failure(error: BaseException) -> None:
  """Run the `on_write_failure` hooks now if `error` is a file-system failure of a write
  (`write_failure`). Called where the error first surfaces (inside the Orbax save, while its
  stderr is still captured), so that the hooks quiet stderr before the background threads of
  the abandoned write can print to it; `failed_write` runs them again (each hook acts once)."""
  if write_failure(error) is not None:
    _run_failure_hooks()


def _run_failure_hooks() -> None:
  for hook in list(_FAILURE_HOOKS):
    hook()


def silence_stderr() -> None:
  """Send the rest of the process's stderr to /dev/null: the writes Orbax abandoned finish on
  background threads and may print "Event loop is closed" tracebacks until the interpreter
  exits, at a time no context manager covers."""
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (open until exit, on purpose)


class QuietAfterWriteFailure:
  """A hook for `on_write_failure`: at the first recognised write failure, keep a handle on the
  real stderr for the one-line report (`stream`), then silence the rest, so the tracebacks
  Orbax's abandoned writes print while the error unwinds never reach the user."""

  def __init__(self):
    self.stream = None  # where the one-line report goes once stderr is silenced

  def __call__(self) -> None:
    if self.stream is None:
      try:  # the process's own stderr (fd 2) is about to be silenced: keep a copy of it
        own = sys.stderr.fileno() == 2
      except (AttributeError, OSError, io.UnsupportedOperation):
        own = False  # a stream someone else installed (a test's capture): keep it as is
      self.stream = os.fdopen(os.dup(2), "w") if own else sys.stderr
      silence_stderr()

  @contextlib.contextmanager
  def watching(self) -> Iterator[None]:
    """Registered as a write-failure hook for the `with` block's duration: `spo-train` and
    `spo-reproduce` wrap their training in it and report a `RunWriteError` with `report`."""
    unregister = on_write_failure(self)
    try:
      yield
    finally:
      unregister()

  def report(self, line: str) -> None:
    """Print the one-line report on the real stderr, then keep stderr silent until exit."""
    print(line, file=self.stream or sys.stderr, flush=True)
    silence_stderr()


def write_failure(error: BaseException) -> tuple[int, str] | None:
  """(errno, description) when `error`, or an exception it was raised from, is a file-system
  failure of a write (`WRITE_ERRNOS`); None for anything else (a bug must stay a bug)."""
  seen: set[int] = set()
  pending: list[BaseException | None] = [error]
  while pending:
    e = pending.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
      return e.errno, e.strerror or os.strerror(e.errno)
    match = _OS_ERROR_CODE.search(str(e))
    if match and int(match.group(1)) in WRITE_ERRNOS:
      code = int(match.group(1))
      return code, os.strerror(code)
    pending.extend([e.__cause__, e.__context__])
    pending.extend(x for x in getattr(e, "exceptions", ()) if isinstance(x, BaseException))
  return None


class FailedWrite(Exception):
  """A write to `path` failed; `what` names the file for the user ("metrics row",
  "TensorBoard events", ...). Raised from the OSError, so `write_failure` sees its cause."""

  def __init__(self, what: str, path: Path):
    super().__init__(f"could not write the {what} '{path}'")
    self.what, self.path = what, path


_FIXES = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free space within your quota",
          errno.EROFS: "make the file system writable", errno.EACCES: "make it writable",
          errno.EPERM: "make it writable", errno.ENOENT: "restore the directory"}


class RunWriteError(RuntimeError):
  """Training stopped because the file system refused a write (`spo-train` exit code 4).

  `what` names the file (checkpoint, metrics row, TensorBoard events, config), `path` where,
  `last_checkpoint` the newest complete checkpoint left (None: none was made)."""

  def __init__(self, what: str, path: Path, code: int, reason: str,
               last_checkpoint: int | None, run_dir: Path):
    name = errno.errorcode.get(code, str(code))
    fix = _FIXES.get(code, "fix the problem")
    if last_checkpoint is None:
      kept = (f"no checkpoint was complete yet: {fix} and start again with --overwrite")
    else:
      kept = (f"the last good checkpoint is iteration {last_checkpoint}; earlier checkpoints "
              f"and metrics rows are intact: {fix} and continue with --resume "
              f"--run-dir {run_dir}")
    super().__init__(f"could not write the {what} '{path}' ({name}: {reason}); training "
                     f"stopped and {kept}")
    self.what, self.path, self.code, self.last_checkpoint = what, path, code, last_checkpoint


@contextlib.contextmanager
def failed_write(what: str, path: Path, checkpointer: Any, run_path: Path):
  """Turn a file-system failure of the write inside (disk full, quota, read-only or vanished
  directory; `write_failure`) into `RunWriteError`, naming the file (a logger's
  `FailedWrite` names its own), the path and the newest checkpoint left. Other errors pass."""
  try:
    yield
  except Exception as error:
    failure = write_failure(error)
    if failure is None:
      raise
    _run_failure_hooks()
    if isinstance(error, FailedWrite):
      what, path = error.what, error.path
    last = checkpointer.latest_step() if checkpointer is not None else None
    raise RunWriteError(what, path, *failure, last, run_path) from error
