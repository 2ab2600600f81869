"""`spo-bench`: throughput against the raw physics, Brax PPO, the win-rate share, many seeds
(`python -m spo_jax.bench`; cli.py describes the sections)."""

from spo_jax.bench.cli import build_parser, main
from spo_jax.bench.common import CONTENDERS, LEARNERS, BenchError, parse_contenders

__all__ = ["CONTENDERS", "LEARNERS", "BenchError", "build_parser", "main", "parse_contenders"]
