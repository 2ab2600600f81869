"""`python -m spo_jax.bench`: the same as `spo-bench`."""

import sys

from spo_jax.bench.cli import main

sys.exit(main())
