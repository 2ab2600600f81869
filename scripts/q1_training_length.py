"""Q1's control task at several training lengths: does SPO's time-averaged policy move toward
a Minimax Winner (exploitability 0) with more training?

For each factor F in --factors, trains the cpu plan's `control-spo` run (point_reach, the
spatial raters, the tuned settings, S seeds vmapped) with F times the plan's env-step budget
and iteration cap, then measures the best-response exploitability of its oldest kept iterate,
its last iterate and the uniform mixture of its iterates, exactly as `spo-reproduce
--question q1` does (spo_jax/reproduce/running.py, `measure_exploitability`). Finished runs
are skipped when the command is run again.

  python scripts/q1_training_length.py --factors 1,4 --seeds 10 --out runs/q1_length

Writes OUT/x{F}/q1/control-spo/ (the run and its final.json) and OUT/summary.csv (IQM and
95% interval per factor and measure), and prints the summary.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from spo_jax.reproduce import running
from spo_jax.reproduce.analysis import iqm_with_ci
from spo_jax.reproduce.plans import plan_runs, scale_plan

MEASURES = ("br_exploitability_first", "br_exploitability_last", "br_exploitability_mixture",
            "mixture_iterates", "final_eval_return")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--factors", default="1,4", help="training-length factors, e.g. 1,4")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--out", type=Path, default=Path("runs/q1_length"))
  args = parser.parse_args()
  factors = [int(f) for f in args.factors.split(",")]
  if not factors or min(factors) < 1:
    parser.error("--factors: positive integers, e.g. 1,4")
  episodes = scale_plan("cpu").final_episodes
  (run,) = [r for r in plan_runs("q1", "cpu", args.seeds) if r.name == "control-spo"]
  rows = []
  for factor in factors:
    config = run.config.replace(num_timesteps=factor * run.config.num_timesteps,
                                max_iterations=factor * run.config.max_iterations)
    out = args.out / f"x{factor}"
    running.execute([run._replace(config=config)], out, force=False, episodes=episodes)
    final = json.loads((out / "q1" / run.name / running.FINAL_FILE).read_text())
    for name in MEASURES:
      values = np.asarray(final["measures"][name], dtype=np.float64)
      point, low, high = iqm_with_ci(values)
      rows.append({"factor": factor, "max_iterations": config.max_iterations,
                   "num_timesteps": config.num_timesteps, "measure": name, "iqm": point,
                   "low": low, "high": high, "seeds": len(values)})
  args.out.mkdir(parents=True, exist_ok=True)
  with open(args.out / "summary.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  for row in rows:
    print(f"x{row['factor']} {row['measure']}: {row['iqm']:.3f} "
          f"[{row['low']:.3f}, {row['high']:.3f}] ({row['seeds']} seeds)")


if __name__ == "__main__":
  main()
