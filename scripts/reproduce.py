"""Reproduce the SPO paper's four questions: `python scripts/reproduce.py ...` =
`spo-reproduce ...` (spo_jax/reproduce/; `--help` lists the arguments, docs/results.md the
results)."""

from __future__ import annotations

import sys

from spo_jax.reproduce.cli import main

if __name__ == "__main__":
  sys.exit(main(prog="reproduce.py", command="python scripts/reproduce.py"))
