"""spo_jax/signals.py: the first SIGINT/SIGTERM becomes a request to stop after the current
iteration; a second SIGINT stops at once; the previous handlers come back. Whole runs
stopped by a signal are in test_cli.py and test_crash_resume.py."""

import os
import signal
import threading

import pytest

from spo_jax.signals import StopSignal, TrainingInterrupted


def test_first_signal_is_recorded_a_second_sigint_interrupts_and_restore_undoes():
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers can only be installed from the main thread")
  before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
  stop = StopSignal()
  try:
    assert stop.received is None
    os.kill(os.getpid(), signal.SIGTERM)  # handled synchronously by the main thread
    assert stop.received == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  finally:
    stop.restore()
  assert {sig: signal.getsignal(sig) for sig in before} == before


def test_training_interrupted_is_a_keyboard_interrupt_that_names_the_iteration(tmp_path):
  stop = TrainingInterrupted("SIGTERM", 7, tmp_path)
  assert isinstance(stop, KeyboardInterrupt)
  assert str(stop) == "SIGTERM at iteration 7"
  assert (stop.signal_name, stop.iteration, stop.run_dir) == ("SIGTERM", 7, tmp_path)
