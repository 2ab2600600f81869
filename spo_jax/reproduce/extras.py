"""The `reproduce` extra (rliable, pandas, matplotlib): imported only where it is used.

`import spo_jax`, planning, `--dry-run` and `--help` need none of it; the statistics,
tables and figures do. `require` turns a missing package into one actionable error.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install -e '.[reproduce]'"
# What the tables, statistics and figures import. arch is not listed: rliable's bootstrap
# needs it, and without it `analysis` falls back to the same estimator in NumPy.
REQUIRED = ("pandas", "rliable", "matplotlib")


class MissingExtra(ImportError):
  """A package of the `reproduce` extra is not installed; the message says how to fix it."""


def require(name: str) -> ModuleType:
  """`importlib.import_module(name)`, or `MissingExtra` naming the package and the install
  command when it (or one of its own imports) is missing."""
  try:
    return importlib.import_module(name)
  except ImportError as error:
    missing = getattr(error, "name", None) or name
    raise MissingExtra(f"{missing} is not installed (needed for the statistics, tables and "
                       f"figures); install the extra with: {INSTALL_HINT}") from error


def check() -> None:
  """Raise `MissingExtra` unless every package in `REQUIRED` imports: called before any
  training, so that a long suite does not fail only when it comes to the tables."""
  for name in REQUIRED:
    require(name)
