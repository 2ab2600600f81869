"""`python -m spo_jax.learning_bench ...` = `spo-learning-bench ...`."""

import sys

from spo_jax.learning_bench import main

if __name__ == "__main__":
  sys.exit(main())
