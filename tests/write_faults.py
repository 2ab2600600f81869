"""A disk that fills up half way through a write, for the fault tests (test_faults.py,
test_provenance.py)."""

from spo_jax import run_dir as run_dir_lib


def half_write(monkeypatch, name: str, error: OSError) -> None:
  """From now on, the atomic writer (`run_dir`'s `open`) writes half of the first chunk of
  any file whose path contains `name` and then raises `error`."""
  real_open = open

  class HalfWritten:
    def __init__(self, path):
      self.file = real_open(path, "wb")

    def write(self, data):
      self.file.write(data[: len(data) // 2])
      raise error

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.file.close()

  def fake_open(path, mode="r", *args, **kwargs):
    if name in str(path) and "w" in mode:
      return HalfWritten(path)
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr(run_dir_lib, "open", fake_open, raising=False)
