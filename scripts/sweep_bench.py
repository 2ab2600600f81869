"""A learning-rate sweep in one `spo-sweep` process against the same runs as separate
`spo-train` processes, on the same machine, one after the other (docs/performance.md,
"Sweeps"). Wall time includes each process's start-up, imports and compiles: what a user
pays.

  python scripts/sweep_bench.py                       # 8 learning rates x 4 seeds on balance
  python scripts/sweep_bench.py --points 2 --seeds 2 --iterations 2   # a smoke of it

Writes its runs under --work (default bench_results/sweep_bench, replaced) and a JSON line
with the times and their ratio to stdout (and --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def learning_rates(points: int) -> list[float]:
  """`points` learning rates spaced evenly in log between 1e-4 and 1e-2."""
  return [float(f"{x:.3g}") for x in np.geomspace(1e-4, 1e-2, points)]


def _run(argv: list[str]) -> float:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  start = time.perf_counter()
  subprocess.run([sys.executable, *argv], check=True, env=env, stdout=subprocess.DEVNULL)
  return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="balance")
  parser.add_argument("--points", type=int, default=8, help="learning rates (default 8)")
  parser.add_argument("--seeds", type=int, default=4, help="seeds per point (default 4)")
  parser.add_argument("--iterations", type=int, default=20,
                      help="iterations per run (default 20)")
  parser.add_argument("--work", default="bench_results/sweep_bench")
  parser.add_argument("--json", default=None, help="also write the result line here")
  args = parser.parse_args(argv)
  work = Path(args.work)
  shutil.rmtree(work, ignore_errors=True)
  work.mkdir(parents=True)
  rates = learning_rates(args.points)
  seeds = list(range(args.seeds))
  common = {"env": args.env, "max_iterations": args.iterations, "num_timesteps": 10**9,
            "checkpoint_every": 0}
  plan = work / "plan.toml"
  plan.write_text("\n".join(
      ["[sweep]", f"out = {json.dumps(str(work / 'sweep'))}", f"seeds = {seeds}", "[base]"]
      + [f"{k} = {json.dumps(v)}" for k, v in common.items()]
      + ["[grid]", f"learning_rate = {rates}"]) + "\n")
  sweep_s = _run(["-m", "spo_jax.sweep.cli", str(plan), "--quiet"])
  sequential_s = 0.0
  for rate in rates:
    for seed in seeds:
      sequential_s += _run(
          ["-m", "spo_jax.cli", "--env", args.env, "--learning-rate", str(rate),
           "--seed", str(seed), "--max-iterations", str(args.iterations),
           # Default logs (jsonl, CSV, TensorBoard) as the sweep's groups write: like for like.
           "--num-timesteps", str(10**9), "--checkpoint-every", "0", "--quiet",
           "--run-dir", str(work / "sequential" / f"lr{rate}-seed{seed}")])
  result = {"env": args.env, "points": args.points, "seeds": args.seeds,
            "iterations": args.iterations, "runs": args.points * args.seeds,
            "sweep_s": round(sweep_s, 1), "sequential_s": round(sequential_s, 1),
            "ratio": round(sweep_s / sequential_s, 3), "cpu_count": os.cpu_count()}
  line = json.dumps(result)
  print(line)
  if args.json:
    Path(args.json).write_text(line + "\n")


if __name__ == "__main__":
  main()
