"""Stopping on SIGINT/SIGTERM between iterations, with a checkpoint."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class TrainingInterrupted(KeyboardInterrupt):
  """Training stopped on SIGINT/SIGTERM after saving a checkpoint at `iteration`."""

  def __init__(self, signal_name: str, iteration: int, run_dir: Path | None):
    super().__init__(f"{signal_name} at iteration {iteration}")
    self.signal_name, self.iteration, self.run_dir = signal_name, iteration, run_dir


class StopSignal:
  """Turns the first SIGINT/SIGTERM into a request to stop after the current iteration (an
  iteration in flight owns donated buffers, so stopping inside it could lose the state)."""

  def __init__(self):
    self.received: str | None = None
    self._previous = {}
    if threading.current_thread() is not threading.main_thread():
      return
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
