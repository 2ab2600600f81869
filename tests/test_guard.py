"""spo_jax/guard.py: the numerical guard's flags (computed under jit, as in the iteration)
and the host-side check that names the first bad iteration, seed and quantities."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax.guard import GUARDED, NumericalError, check_guard, guard_flags
from spo_jax.presets import preset

GOOD_PPO = {"policy_loss": jnp.zeros(()), "value_loss": jnp.zeros(()),
            "entropy": jnp.zeros(()), "grad_norm": jnp.ones(())}


@pytest.mark.parametrize("bad, expected", [
    ({}, []),
    ({"teacher_invalid": jnp.asarray(2, jnp.int32)}, ["teacher_outputs"]),
    ({"rewards": jnp.asarray([0.0, jnp.nan])}, ["rewards"]),
    ({"value_loss": jnp.inf}, ["loss"]),
    ({"grad_norm": jnp.nan}, ["gradients"]),
    ({"params": {"w": jnp.asarray([1.0, -jnp.inf])}}, ["parameters"]),
    ({"rewards": jnp.asarray([jnp.inf]), "grad_norm": jnp.inf}, ["rewards", "gradients"]),
])
def test_each_flag_catches_its_quantity_and_no_other(bad, expected):
  reward_metrics = {k: v for k, v in bad.items() if k == "teacher_invalid"}
  rewards = bad.get("rewards", jnp.zeros(2))
  ppo = {**GOOD_PPO, **{k: jnp.asarray(v) for k, v in bad.items() if k in GOOD_PPO}}
  params = bad.get("params", {"w": jnp.ones(2)})
  flags = jax.jit(guard_flags)(reward_metrics, rewards, ppo, params)
  assert set(flags) == {f"guard/{k}" for k in GUARDED}  # (jit returns dicts key-sorted)
  assert [k for k in GUARDED if int(flags[f"guard/{k}"])] == expected


def _stacked(bad_at=None):
  """Flags of one call: S = 2 seeds x K = 3 iterations; `bad_at` = {(s, i): [quantities]}."""
  stacked = {f"guard/{k}": np.zeros((2, 3), np.int32) for k in GUARDED}
  for (s, i), names in (bad_at or {}).items():
    for name in names:
      stacked[f"guard/{name}"][s, i] = 1
  return stacked


def test_the_first_bad_iteration_is_named_with_its_seed_and_quantities(tmp_path):
  """One call of K = 3 iterations ending at iteration 12 covers iterations 10, 11, 12. Seed
  index 1 went bad at its iteration 11 (loss and gradients) and seed index 0 at 12: the first
  in iteration order within the first bad seed, seed index 1 (seed 8) at iteration 11, is
  named; the checkpointer's last step (9) is the checkpoint kept."""
  config = preset("point_reach").replace(iterations_per_call=3)
  checkpointer = types.SimpleNamespace(latest_step=lambda: 9)
  check_guard(_stacked(), config, 12, [7, 8], checkpointer, tmp_path)  # all good: no error
  with pytest.raises(NumericalError) as error:
    check_guard(_stacked({(1, 1): ["loss", "gradients"], (0, 2): ["rewards"]}), config, 12,
                [7, 8], checkpointer, tmp_path)
  assert (error.value.quantities, error.value.iteration, error.value.seed) == (
      ["rewards"], 12, 7)
  with pytest.raises(NumericalError) as error:
    check_guard(_stacked({(1, 1): ["loss", "gradients"]}), config, 12, [7, 8], checkpointer,
                tmp_path)
  assert (error.value.quantities, error.value.iteration, error.value.seed) == (
      ["loss", "gradients"], 11, 8)
  assert "bad loss, gradients in iteration 11 (seed 8)" in str(error.value)
  assert f"the last good checkpoint, iteration 9, is kept in {tmp_path}" in str(error.value)
  # Switched off, the guard says nothing.
  check_guard(_stacked({(0, 0): ["loss"]}), config.replace(numerical_guard=False), 12,
              [7, 8], checkpointer, tmp_path)


def test_a_teacher_answer_outside_the_unit_interval_points_at_the_teacher():
  error = NumericalError(["teacher_outputs"], 4, 0, None, None)
  assert "a teacher answer outside [0, 1]" in str(error)
  assert "no checkpoint was written before it" in str(error)
  assert "check the teacher" in str(error)
