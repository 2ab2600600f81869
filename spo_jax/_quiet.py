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


@contextlib.contextmanager
def quiet_imports():
  previous = logging.root.manager.disable
  logging.disable(logging.WARNING)
  try:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
        contextlib.redirect_stderr(io.StringIO()):
      warnings.simplefilter("ignore")
      yield
  finally:
    logging.disable(previous)


with quiet_imports():
  import brax.envs.base  # noqa: F401  (first import happens here, quietly)
