"""spo_jax/write_errors.py: which errors are file-system failures of a write, the hooks that
run the moment one is recognised, and the stderr quieting `spo-train` and `spo-reproduce`
build on them. Whole runs that hit a full disk are in test_faults.py."""

import errno
import io
import os
import sys

import pytest

from spo_jax import write_errors


def _no_space(code=errno.ENOSPC):
  return OSError(code, os.strerror(code))


def test_write_failure_recognises_wrapped_os_errors():
  """Only file-system failures of a write become exit code 4; anything else stays a bug."""
  orbax_text = ValueError("RESOURCE_EXHAUSTED: Failed to write 24898 bytes to file 18: No "
                          "space left on device [os_error_code='28']")
  assert write_errors.write_failure(orbax_text) == (errno.ENOSPC, os.strerror(errno.ENOSPC))
  try:
    try:
      raise _no_space(errno.EROFS)
    except OSError as cause:
      raise RuntimeError("wrapped") from cause
  except RuntimeError as wrapped:
    assert write_errors.write_failure(wrapped)[0] == errno.EROFS
  assert write_errors.write_failure(_no_space(errno.EDQUOT))[0] == errno.EDQUOT  # over quota
  assert write_errors.write_failure(ValueError("shapes do not match")) is None
  assert write_errors.write_failure(OSError(errno.EAGAIN, "again")) is None




def test_failed_write_runs_the_hooks_once_then_raises_run_write_error(tmp_path):
  """A full disk inside `failed_write`: every registered hook runs once, before the error
  becomes `RunWriteError` naming the file, the path and errno; an unregistered hook does
  not run, and a bug passes through untouched, with no hook run."""
  calls = []
  unregister = write_errors.on_write_failure(lambda: calls.append("a"))
  with pytest.raises(write_errors.RunWriteError) as stop:
    with write_errors.failed_write("metrics row", tmp_path / "metrics.jsonl", None, tmp_path):
      raise _no_space()
  assert calls == ["a"]
  assert "metrics row" in str(stop.value) and "ENOSPC" in str(stop.value)
  with pytest.raises(KeyError):
    with write_errors.failed_write("metrics row", tmp_path / "m", None, tmp_path):
      raise KeyError("a bug")
  assert calls == ["a"]
  unregister()
  with pytest.raises(write_errors.RunWriteError):
    with write_errors.failed_write("config", tmp_path / "config.json", None, tmp_path):
      raise _no_space(errno.EROFS)
  assert calls == ["a"]


def test_quiet_after_write_failure_keeps_the_report_stream_and_silences_once(monkeypatch,
                                                                            tmp_path):
  """Inside `watching`, the first recognised failure silences stderr once, keeping the stream
  the report goes to (here a stream that is not the process's fd 2, so it is kept as is);
  `report` prints there and silences again; after the block the hook is gone."""
  silenced = []
  monkeypatch.setattr(write_errors, "silence_stderr", lambda: silenced.append(1))
  captured = io.StringIO()
  monkeypatch.setattr(sys, "stderr", captured)

  def full_disk():
    with pytest.raises(write_errors.RunWriteError):
      with write_errors.failed_write("checkpoint", tmp_path / "c", None, tmp_path):
        raise _no_space()

  quiet = write_errors.QuietAfterWriteFailure()
  with quiet.watching():
    full_disk()
    full_disk()  # a second failure while unwinding: nothing more to do
  assert quiet.stream is captured and silenced == [1]
  full_disk()  # no longer registered
  assert silenced == [1]
  quiet.report("spo-train: error: could not write the checkpoint")
  assert captured.getvalue() == "spo-train: error: could not write the checkpoint\n"
  assert silenced == [1, 1]


def test_the_report_says_what_is_kept_and_how_to_go_on(tmp_path):
  """With a checkpoint: resume from it (the run directory named); without: start again; the
  fix follows errno (ENOSPC: free disk space; EROFS: make the file system writable)."""
  kept = write_errors.RunWriteError("checkpoint", tmp_path / "ckpt", errno.ENOSPC,
                                    os.strerror(errno.ENOSPC), 3, tmp_path)
  assert str(kept).startswith(f"could not write the checkpoint '{tmp_path / 'ckpt'}' (ENOSPC")
  assert "last good checkpoint is iteration 3" in str(kept)
  assert f"free disk space and continue with --resume --run-dir {tmp_path}" in str(kept)
  none = write_errors.RunWriteError("config", tmp_path / "config.json", errno.EROFS,
                                    os.strerror(errno.EROFS), None, tmp_path)
  assert "make the file system writable and start again with --overwrite" in str(none)
