"""A run's running totals, counted on the device inside the jitted iteration.

`Counters` is a field of the `TrainState`: every iteration adds its valid env steps, the
physics steps it simulated, the preference queries it put and the labels it received, so
the totals travel with the state through `vmap`, `scan`, sharding and checkpoints, and the
host only reads them.

Each total is a pair of int32 words [hi, lo] worth `hi * 2**30 + lo` (0 <= lo < 2**30):
JAX computes in 32-bit integers unless x64 is enabled, and one int32 would wrap at
2,147,483,647, which a long accelerator run's physics steps can pass. Adding an int32
increment x (0 <= x < 2**31) to lo stays below 2**31 before the carry moves to hi, so the
pair counts to 2**61 without wrapping.

Checkpoints keep the totals in their meta JSON as Python integers (the layout checkpoints
had when the host counted), one per seed: `to_meta` and `from_meta` convert.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LOW_BITS = 30
_LOW = 1 << LOW_BITS

# The meta JSON's names for the fields (what `metrics.jsonl` rows and older checkpoints use).
META_NAMES = {"env_steps": "env_steps", "physics_steps": "physics_steps",
              "queries": "total_queries", "labels": "total_feedback"}


class Counters(NamedTuple):
  """Running totals of one run; each leaf [..., 2] int32 (hi, lo), `...` the seed axes."""

  env_steps: jax.Array  # valid (unmasked) env steps: the budget `num_timesteps` counts these
  physics_steps: jax.Array  # env steps simulated, masked ones included (rollout.py)
  queries: jax.Array  # preference queries put to the teacher
  labels: jax.Array  # labels received (a query may go unanswered: teachers/__init__.py)


def zeros(batch_shape: tuple[int, ...] = ()) -> Counters:
  """All totals 0, with leading `batch_shape` (e.g. (S,) for S seeds)."""
  return Counters(*(jnp.zeros(batch_shape + (2,), jnp.int32) for _ in Counters._fields))


def add(total: jax.Array, increment: jax.Array) -> jax.Array:
  """total [..., 2] (hi, lo) plus increment [...] (int32, 0 <= increment < 2**31).

  lo + increment < 2**30 + 2**31 overflows int32, so the increment is split first: its high
  part goes straight to hi, its low part to lo, and lo's carry (at most 1) to hi.
  E.g. (0, 2**30 - 1) + 3 = (1, 2)."""
  increment = jnp.asarray(increment, jnp.int32)
  hi = total[..., 0] + (increment >> LOW_BITS)
  lo = total[..., 1] + (increment & (_LOW - 1))  # < 2**31: no overflow
  return jnp.stack([hi + (lo >> LOW_BITS), lo & (_LOW - 1)], axis=-1)


def advance(counters: Counters, env_steps: jax.Array, physics_steps: jax.Array,
            queries: jax.Array, labels: jax.Array) -> Counters:
  """`counters` plus one iteration's counts (each int32, the counters' batch shape)."""
  return Counters(add(counters.env_steps, env_steps),
                  add(counters.physics_steps, physics_steps),
                  add(counters.queries, queries), add(counters.labels, labels))


def value(total: Any) -> np.ndarray:
  """A total [..., 2] on the host as int64 [...] (exact)."""
  total = np.asarray(total, np.int64)
  return (total[..., 0] << LOW_BITS) + total[..., 1]


def to_meta(counters: Counters) -> dict[str, list[int]]:
  """The totals of every seed as Python integers, keyed by `META_NAMES` (counters [S, 2])."""
  return {META_NAMES[name]: [int(v) for v in np.ravel(value(total))]
          for name, total in zip(Counters._fields, jax.device_get(counters), strict=True)}


def from_meta(meta_counters: dict[str, Any] | None, batch_shape: tuple[int, ...]) -> Counters:
  """`to_meta`'s inverse, broadcast to `batch_shape`; a missing name counts from 0."""
  meta_counters = meta_counters or {}

  def words(name: str) -> np.ndarray:
    total = np.asarray(meta_counters.get(META_NAMES[name], 0), np.int64)
    # One per seed as `to_meta` wrote them (a run without a seed axis: a list of one), or one
    # number for all.
    total = (total.reshape(batch_shape) if total.size == np.prod(batch_shape, dtype=int)
             else np.broadcast_to(total, batch_shape))
    return np.stack([total >> LOW_BITS, total & (_LOW - 1)], axis=-1).astype(np.int32)

  return Counters(*(jnp.asarray(words(name)) for name in Counters._fields))
