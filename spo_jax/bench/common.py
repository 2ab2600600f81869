"""The benchmark's contenders, bad-input error, machine description and timing helpers."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# `spo_full_update`: SPO with num_microbatches = 1, every PPO minibatch over all its slots
# (masked ones included), to show in one process what following the valid steps saves.
CONTENDERS = ("raw", "spo", "spo_full_update", "ground_truth", "reward_model", "brax_ppo")
LEARNERS = ("spo", "ground_truth", "reward_model", "spo_full_update")


class BenchError(ValueError):
  """Bad benchmark arguments: one line naming the problem and the fix."""


def parse_contenders(text: str) -> tuple[str, ...]:
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  unknown = [n for n in names if n not in CONTENDERS]
  if unknown or not names:
    raise BenchError(f"unknown contender(s) {', '.join(unknown) or '(none given)'} in "
                     f"--contenders '{text}'; valid: {','.join(CONTENDERS)}")
  return names


def int_list(text: str, flag: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise BenchError(f"{flag} '{text}' must be comma-separated integers, e.g. 1,4,16") from None
  if not values or min(values) < 1:
    raise BenchError(f"{flag} '{text}' must list positive integers")
  return values


def cpu_model() -> str:
  """The CPU's model name from `lscpu` (else what `platform` knows)."""
  cpu = platform.processor() or platform.machine()
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                if ln.startswith("Model name")), cpu)
  except OSError:
    pass
  return cpu


def machine() -> dict[str, Any]:
  return {"cpu": cpu_model(), "cores": os.cpu_count(), "device": str(jax.devices()[0]),
          "jax": jax.__version__, "python": platform.python_version()}


def timed(fn: Callable, *args) -> tuple[float, Any]:
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - start, out


def raw_rollout_fn(env, num_envs: int, horizon: int):
  """A jitted scan of `env.step` with uniform random actions in [-1, 1]; returns a checksum
  of the observations (a constant reward would let XLA drop the physics as dead code)."""
  @jax.jit
  def run(key):
    state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

    def step(state, k):
      action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      state = jax.vmap(env.step)(state, action)
      return state, jnp.sum(state.obs) + jnp.sum(state.reward)

    _, checksums = jax.lax.scan(step, state, jax.random.split(key, horizon))
    return checksums.sum()

  return run


def median(xs: list[float]) -> float:
  return statistics.median(xs) if xs else float("nan")
