"""`python -m spo_jax.learning_bench ...` = `spo-learning-bench ...` (learning_bench/cli.py)."""

import sys

from spo_jax.learning_bench.cli import main

if __name__ == "__main__":
  sys.exit(main())
