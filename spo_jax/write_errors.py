"""Writes that fail because of the file system, turned into one line for the user.

A write that fails because of the place, not the program (disk full, quota, read-only or
vanished directory; `write_failure` recognises them, also wrapped in Orbax's errors), stops
training with `RunWriteError`: what failed, the path and the last good checkpoint
(`spo-train` exits with code 4). Any other error stays what it is: a bug must stay a bug.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable
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
  returns the function that unregisters it. `spo-train` quiets stderr there: the writes Orbax
  abandons print "Event loop is closed" tracebacks from background threads while the error
  unwinds, before the one-line report could be printed."""
  _FAILURE_HOOKS.append(hook)
  return lambda: _FAILURE_HOOKS.remove(hook)


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
    for hook in list(_FAILURE_HOOKS):
      hook()
    if isinstance(error, FailedWrite):
      what, path = error.what, error.path
    last = checkpointer.latest_step() if checkpointer is not None else None
    raise RunWriteError(what, path, *failure, last, run_path) from error
