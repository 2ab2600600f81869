"""Silence library notices users cannot act on while Brax and MuJoCo are imported.

mujoco prints "Failed to import warp" to stdout when the optional NVIDIA Warp backend is
absent, and Brax warns that its own physics pipelines are no longer actively developed.
Neither changes what spo_jax computes, so they are hidden from our users.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

_log = logging.getLogger("spo_jax")


@contextlib.contextmanager
def quiet_imports():
  """Hide Python warnings, log records, prints, and MuJoCo's C-level model warnings (which it
  otherwise prints and appends to MUJOCO_LOG.TXT in the working directory, e.g. Brax's
  models use the deprecated 'settotalmass' attribute). They are discarded: MuJoCo's are
  handed to the `spo_jax` debug log, but `logging.disable` drops that record too while the
  block runs, and the prints and warnings are thrown away."""
  previous = logging.root.manager.disable
  logging.disable(logging.WARNING)
  mujoco, previous_hook = None, None
  try:
    import mujoco  # here, under logging.disable; an absent or older MuJoCo is skipped

    previous_hook = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda message: _log.debug("mujoco: %s", message))
  except (ImportError, AttributeError):
    mujoco = None
  try:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
        contextlib.redirect_stderr(io.StringIO()):
      warnings.simplefilter("ignore")
      yield
  finally:
    logging.disable(previous)
    if mujoco is not None:
      mujoco.set_mju_user_warning(previous_hook)


with quiet_imports():
  import brax.envs.base  # noqa: F401  (first import happens here, quietly)
