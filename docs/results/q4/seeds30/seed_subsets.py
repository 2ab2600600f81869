"""IQM and 95% interval per measure for seeds 10-29, seeds 0-9 and all 30 of one Q4 setting:
the *_seed_subsets.txt files beside this one.

  cd docs/results/q4/seeds30 && python seed_subsets.py deadline_finals.csv deadline
"""

import sys

import pandas as pd

from spo_jax.reproduce.analysis import iqm_with_ci

finals, setting = pd.read_csv(sys.argv[1]), sys.argv[2]
print(finals.measure.unique())
for label, chosen in (("seeds 10-29 (fresh)", finals.seed >= 10), ("seeds 0-9", finals.seed < 10),
                      ("all 30", finals.seed >= 0)):
  print(label)
  for measure in finals.measure.unique():
    out = []
    for run in (f"{setting}-spo", f"{setting}-rm"):
      rows = finals[chosen & (finals.run == run) & (finals.measure == measure)]
      values = rows.sort_values("seed").value.to_numpy()
      point, low, high = iqm_with_ci(values)
      out.append(f"{run.split('-')[1]} {point:.3f} [{low:.3f}, {high:.3f}] (n={len(values)})")
    print(f"  {measure}: " + " | ".join(out))
