"""The numerical guard: flags computed inside the iteration, checked on the host.

Each iteration returns `guard/<quantity>` (1 where it went bad) for the quantities in
`GUARDED`, in the order they arise: a few reductions over arrays the iteration holds anyway,
so the check costs no extra host round trip (docs/performance.md measures it). The host loop
calls `check_guard` on every call's metrics before any evaluation or checkpoint and raises
`NumericalError` naming the first bad iteration, the seed and the quantities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax.config import Config

# What the numerical guard checks, in the order the quantities arise in an iteration.
GUARDED = ("teacher_outputs", "rewards", "loss", "gradients", "parameters")


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def guard_flags(reward_metrics, rewards, ppo_metrics, params) -> dict[str, jax.Array]:
  """`guard/<quantity>` = 1 where it went bad in this iteration: a handful of reductions over
  arrays the iteration has in hand anyway (docs/performance.md measures the cost)."""
  invalid = reward_metrics.get("teacher_invalid", jnp.zeros((), jnp.int32))
  loss_ok = _all_finite([ppo_metrics[k] for k in ("policy_loss", "value_loss", "entropy")])
  flags = {"teacher_outputs": invalid > 0, "rewards": ~_all_finite(rewards),
           "loss": ~loss_ok, "gradients": ~jnp.isfinite(ppo_metrics["grad_norm"]),
           "parameters": ~_all_finite(params)}
  return {f"guard/{k}": flags[k].astype(jnp.int32) for k in GUARDED}


class NumericalError(RuntimeError):
  """A guarded quantity became nan/inf (or a teacher answer left [0, 1]); training stopped
  and the state of that iteration was not saved."""

  def __init__(self, quantities: list[str], iteration: int, seed: int,
               last_checkpoint: int | None, run_dir: Path | None):
    where = f" (seed {seed})"
    saved = ("no checkpoint was written before it" if last_checkpoint is None else
             f"the last good checkpoint, iteration {last_checkpoint}, is kept in {run_dir}")
    names = ", ".join(q.replace("_", " ") for q in quantities)
    hint = ("a teacher answer must be a probability in [0, 1]: check the teacher"
            if quantities[0] == "teacher_outputs" else
            "lower learning_rate or reward_scale, or check the environment's rewards")
    what = ("nan/inf, or a teacher answer outside [0, 1]" if "teacher_outputs" in quantities
            else "nan/inf")
    super().__init__(f"numerical guard: bad {names} in iteration {iteration}{where} ({what}); "
                     f"training stopped and {saved}. Likely fix: {hint}.")
    self.quantities, self.iteration, self.seed = quantities, iteration, seed


def check_guard(stacked: dict[str, np.ndarray], config: Config, iteration: int,
                 seeds: list[int], checkpointer: Any, run_path: Path | None) -> None:
  """Raise `NumericalError` for the first guarded quantity that went bad in this call."""
  if not config.numerical_guard:
    return
  flags = np.stack([stacked[f"guard/{k}"] for k in GUARDED], axis=-1)  # [S, K, quantities]
  if not flags.any():
    return
  s, i = (int(v) for v in np.argwhere(flags.any(axis=-1))[0])
  bad = [GUARDED[q] for q in np.flatnonzero(flags[s, i])]
  first_iteration = iteration - config.iterations_per_call + 1
  last = checkpointer.latest_step() if checkpointer is not None else None
  raise NumericalError(bad, first_iteration + i, seeds[s], last, run_path)
