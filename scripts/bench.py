"""Benchmark command: `python scripts/bench.py ...` = `spo-bench ...` (spo_jax/bench.py)."""

from __future__ import annotations

import sys

from spo_jax.bench import main

if __name__ == "__main__":
  sys.exit(main())
