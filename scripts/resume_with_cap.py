"""Continue finished runs past their iteration cap: resume each RUN_DIR with
`max_iterations` raised (a resumable field; a resumed run equals an uninterrupted one,
tests/test_checkpoint.py). Used on copies of Q3's beta = 1 runs, which stopped at the
plan's cap of 80 iterations before their env-step budget (docs/results.md, Q3).

    python scripts/resume_with_cap.py RUN_DIR [RUN_DIR ...] --max-iterations 400
"""
from __future__ import annotations

import argparse
import time

import spo_jax
from spo_jax.checkpoint import read_run_config


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+")
  parser.add_argument("--max-iterations", type=int, required=True)
  args = parser.parse_args()
  for run in args.runs:
    config = read_run_config(run).replace(max_iterations=args.max_iterations)
    start = time.perf_counter()
    spo_jax.train(config, run_dir=run, resume=True, verbose=False)
    print(f"{run}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
  main()
