"""`deterministic = True` (`spo-train --deterministic`): the XLA flag that makes GPU runs repeat
bit for bit, set where it can still take effect.

XLA reads `XLA_FLAGS` once, when JAX starts its backend (the first `jax.devices()` or the first
computation), not when `jax` is imported. `enable` therefore appends the flag to `XLA_FLAGS`
when the backend has not started yet, which is the case in `spo-train` (nothing in
`import spo_jax` computes anything: keep it so) and in a script that calls `spo_jax.train`
before any JAX computation of its own. Later, the flag can no longer change anything:
  - on CPU that does not matter (XLA:CPU computes the same bits run after run without it,
    docs/determinism.md), so `enable` does nothing;
  - on GPU the request cannot be honoured, and `enable` refuses the run (`ConfigError`, one
    line) rather than let it run non-deterministically while its config says otherwise.

What the flag does and costs: docs/determinism.md ("On GPU").
"""

from __future__ import annotations

import os

import jax

from spo_jax.config import Config, ConfigError

# `--xla_gpu_deterministic_ops` ("Guarantees run-to-run determinism on GPU", jaxlib 0.10.2's
# flag table) implies `--xla_gpu_exclude_nondeterministic_ops` (openxla/xla#12520): atomics-free
# reductions and scatters and deterministic autotuning. XLA:CPU accepts and ignores it.
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops"
_TRUE = ("", "true", "True", "1")


def flag_in(xla_flags: str | None) -> bool:
  """Whether `xla_flags` (an `XLA_FLAGS` value) turns deterministic ops on; the last mention
  of the flag wins, as in XLA's own parser, and a bare `--xla_gpu_deterministic_ops` means
  true."""
  value = None
  for token in (xla_flags or "").split():
    name, _, setting = token.partition("=")
    if name == DETERMINISTIC_FLAG:
      value = setting
  return value is not None and value in _TRUE


def backend_started() -> bool:
  """Whether JAX has started its backend (after which XLA_FLAGS is no longer read). JAX has no
  public question for this; if its private one moves, answer False: the flag is then set
  anyway, which costs nothing when it is too late and is right when it is not."""
  try:
    from jax._src import xla_bridge  # here, inside the try: a private module may move

    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def enable(config: Config) -> None:
  """Make `config.deterministic` take effect: append the flag to `XLA_FLAGS` while JAX's
  backend has not started; afterwards, nothing on CPU, `ConfigError` on an accelerator."""
  if not config.deterministic or flag_in(os.environ.get("XLA_FLAGS")):
    return
  if not backend_started():
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}=true".strip()
    return

  platforms = sorted({device.platform for device in jax.devices()})
  if platforms == ["cpu"]:
    return
  raise ConfigError(
      f"config field 'deterministic' = True cannot take effect: JAX already started its "
      f"{'/'.join(platforms)} backend in this process, and XLA reads XLA_FLAGS only at that "
      f"start; set XLA_FLAGS={DETERMINISTIC_FLAG}=true before the first JAX computation (or "
      "call spo_jax.train before any), or run spo-train --deterministic")
