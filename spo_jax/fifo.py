"""A bounded first-in-first-out store of fixed-shape items, as pure functions on arrays.

Used for SPO's queue of past opponents (`winrate.OpponentQueue`) and the reward model's label
buffer (`reward_model.LabelBuffer`): each keeps its own NamedTuple (so its checkpoint layout
is its own) and writes through `fifo_write`, the one implementation of the slot arithmetic.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class FifoWrite(NamedTuple):
  stores: Any  # pytree, leaves [C, ...]: the stores with the new items written
  written: jax.Array  # [Q] bool: which of the offered items were written
  num_kept: jax.Array  # [] int32: items offered with keep set (written or not)
  pointer: jax.Array  # [] int32: the next slot to overwrite


def fifo_write(stores: Any, pointer: jax.Array, items: Any, keep: jax.Array) -> FifoWrite:
  """Append the items with `keep` set, in order, from slot `pointer`, overwriting the oldest.

  stores: leaves [C, ...]; items: leaves [Q, ...] (same trailing shapes); keep: [Q] bool.
  Kept items go to consecutive slots (items not kept leave no gap); when more than C are
  kept only the last C are written, so no slot is written twice in one call. Items not
  written are sent to slot C and dropped by the scatter.
  """
  capacity = jax.tree.leaves(stores)[0].shape[0]
  keep = keep.astype(bool)
  rank = jnp.cumsum(keep.astype(jnp.int32)) - 1  # position among the kept items
  num_kept = jnp.sum(keep.astype(jnp.int32))
  write = keep & (rank >= num_kept - capacity)
  slots = jnp.where(write, (pointer + rank) % capacity, capacity)
  new = jax.tree.map(lambda store, item: store.at[slots].set(item.astype(store.dtype),
                                                             mode="drop"), stores, items)
  return FifoWrite(new, write, num_kept, (pointer + num_kept) % capacity)
