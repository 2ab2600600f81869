"""`python -m spo_jax.reproduce ...` = `spo-reproduce ...` (spo_jax/reproduce/cli.py)."""

import sys

from spo_jax.reproduce.cli import main

if __name__ == "__main__":
  sys.exit(main())
