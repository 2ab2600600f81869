"""OUT/curves.png: evaluation return against env steps and against wall time."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from spo_jax.checkpoint import write_text_atomic
from spo_jax.learning_bench.analysis import interpolate

# Fixed colours, so that a contender looks the same in every figure.
COLOURS = {"brax_ppo": "tab:blue", "ground_truth": "tab:orange", "spo": "tab:green"}
PLOT_POINTS = 101


def plot(path: Path, plan: dict[str, Any], runs: dict[tuple[str, int], dict[str, Any]]) -> None:
  """Return vs env steps and vs wall time: thin lines per seed, a thick line for the mean over
  seeds on a common grid, drawn only where every seed's curve reaches."""
  import matplotlib  # lazy: ~1 s with pyplot, only when the figure is drawn

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for ax, key, label in ((axes[0], "env_steps", "env steps"), (axes[1], "wall_s",
                                                                  "wall time (s)")):
    for name in plan["contenders"]:
      curves = [runs[(name, s)]["curve"] for s in plan["seeds"] if (name, s) in runs]
      curves = [c for c in curves if c]
      if not curves:
        continue
      colour = COLOURS.get(name)
      for curve in curves:
        ax.plot([p[key] for p in curve], [p["eval_return"] for p in curve], color=colour,
                lw=0.8, alpha=0.4)
      top = max(c[-1][key] for c in curves)
      grid = np.linspace(0.0, top, PLOT_POINTS)
      values = np.stack([interpolate([p[key] for p in c], [p["eval_return"] for p in c], grid)
                         for c in curves])
      ok = ~np.isnan(values).any(axis=0)
      ax.plot(grid[ok], values[:, ok].mean(axis=0), color=colour, lw=2.5,
              label=f"{name} (mean of {len(curves)})")
    ax.set_xlabel(label)
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
  backend = f", {plan['backend']}" if plan["backend"] else ""
  fig.suptitle(f"{plan['env']}{backend}: {plan['budget']:,d} env steps per run")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  write_text_atomic(path, buffer.getvalue())
