"""fifo_write: the slot arithmetic of the opponent queue and the reward model's label buffer."""

import jax.numpy as jnp
import numpy as np

from spo_jax.fifo import fifo_write


def _push(store, pointer, values, keep):
  out = fifo_write(jnp.asarray(store, jnp.float32), jnp.asarray(pointer, jnp.int32),
                   jnp.asarray(values, jnp.float32), jnp.asarray(keep, bool))
  return np.asarray(out.stores), int(out.pointer), int(out.num_kept), np.asarray(out.written)


def test_kept_items_go_to_consecutive_slots_from_the_pointer_and_wrap():
  # capacity 4, pointer 3: kept items 10 and 30 (20 is skipped) go to slots 3 and 0.
  store, pointer, kept, written = _push([0, 0, 0, 0], 3, [10, 20, 30], [True, False, True])
  np.testing.assert_array_equal(store, [30, 0, 0, 10])
  assert (pointer, kept) == (1, 2)
  np.testing.assert_array_equal(written, [True, False, True])


def test_more_kept_than_capacity_writes_only_the_last_ones_once():
  # capacity 2, six kept: only 5 and 6 are written; pointer advances by 6 (mod 2) = 0.
  store, pointer, kept, written = _push([0, 0], 0, [1, 2, 3, 4, 5, 6], [True] * 6)
  assert sorted(store.tolist()) == [5.0, 6.0]
  assert (pointer, kept) == (0, 6)
  np.testing.assert_array_equal(written, [False] * 4 + [True] * 2)


def test_matches_a_python_deque_on_random_pushes():
  from collections import deque

  rng = np.random.default_rng(0)
  capacity = 5
  store, pointer, reference = np.zeros(capacity), 0, deque(maxlen=capacity)
  for _ in range(20):
    values = rng.integers(1, 100, size=3).astype(float)
    keep = rng.random(3) < 0.6
    store, pointer, _, _ = _push(store, pointer, values, keep)
    reference.extend(values[keep])
    held = sorted(store[store > 0].tolist()) if len(reference) < capacity else sorted(store)
    assert held == sorted(reference)
