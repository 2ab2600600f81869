"""Loss and gradient of per-trajectory step sums, computed over the valid steps only.

The reward model's Bradley-Terry fit scores whole trajectories by R_hat = sum_t m_t r(x_t). On
padded buffers [K, T, F] the dense computation evaluates r on all K T slots, valid or not, so
its cost follows the horizon T: at T = 1000 with episodes of ~170 steps, 83% of the network
evaluations (and of their gradients) are on padding. This module evaluates r only on the valid
steps, packed front to back and processed in chunks of C steps by a `while_loop` that stops
after the last valid one, so the cost follows the number of valid steps.

Reverse-mode differentiation cannot go through a `while_loop`, so the gradient is assembled by
hand, in two passes over the valid steps:

  pass 1 (forward):  S_k = sum_t m_kt r_kt,   Q_k = sum_t m_kt r_kt^2          (k < K)
                     L = objective(S, Q);  g_S = dL/dS [K], g_Q = dL/dQ [K]
  pass 2 (backward): dL/dtheta = sum_{k,t} m_kt (g_S_k + 2 r_kt g_Q_k) dr_kt/dtheta
                     (one vector-Jacobian product of r per chunk)

which is the chain rule through the sums, so it equals the dense autodiff gradient up to float
summation order (tests/test_packed_sums.py checks it against `jax.value_and_grad` of the dense
loss). Pass 2 recomputes r, so at full length one fit step costs about 4/3 of the dense one
(forward + forward + backward against forward + backward); at a useful fraction u it costs
about 4u/3 of it. Under `vmap` (ensemble members, seeds) the loop runs until the batch element
with the most valid steps is done, as the rollout's loop does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

DEFAULT_CHUNK = 1024  # steps per loop trip: large enough to keep the loop's overhead small


def packed_order(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Flat positions of the valid steps first, in their original order; no sort.

  mask: [M] (> 0 on valid steps). Returns (order [M] int32, count [] int32): order[:count]
  are the valid positions ascending, order[count:] the others ascending. A scatter by running
  counts, O(M): valid position i goes to slot (number of valid positions before i).
  """
  valid = mask > 0
  count = jnp.sum(valid.astype(jnp.int32))
  rank_valid = jnp.cumsum(valid.astype(jnp.int32)) - 1
  rank_other = count + jnp.cumsum((~valid).astype(jnp.int32)) - 1
  slot = jnp.where(valid, rank_valid, rank_other)
  order = jnp.zeros(mask.shape, jnp.int32).at[slot].set(jnp.arange(mask.size, dtype=jnp.int32))
  return order, count


def sums_loss_and_grad(step_fn: Callable[[Any, jax.Array], jax.Array], params: Any,
                       inputs: jax.Array, mask: jax.Array,
                       objective: Callable[[jax.Array, jax.Array], jax.Array],
                       chunk: int = DEFAULT_CHUNK) -> tuple[jax.Array, Any]:
  """(L, dL/dparams) for L = objective(S, Q), evaluating step_fn on valid steps only.

  step_fn(params, x [C, F]) -> r [C]: the per-step function (one network, inputs batched).
  inputs: [K, T, F]; mask: [K, T] (> 0 on valid steps; any pattern, not only prefixes).
  objective(S [K], Q [K]) -> []: S_k = sum_t m_kt r_kt and Q_k = sum_t m_kt r_kt^2 (m as a
  0/1 indicator). Returns the scalar loss and a gradient with params' structure.
  """
  num, horizon, features = inputs.shape
  size = num * horizon
  chunk = min(chunk, size)
  trips = -(-size // chunk)
  order, count = packed_order(mask.reshape(size))
  order = jnp.concatenate([order, jnp.zeros(trips * chunk - size, jnp.int32)])
  flat = inputs.reshape(size, features)

  def piece(trip):
    """The trip's positions, trajectory ids [C] and validity [C], and its inputs [C, F]."""
    index = jax.lax.dynamic_slice(order, (trip * chunk,), (chunk,))
    live = trip * chunk + jnp.arange(chunk) < count
    return index // horizon, live, flat[index]

  def more(carry):
    return carry[0] * chunk < count

  def forward(carry):
    trip, sums, squares = carry
    owner, live, x = piece(trip)
    r = jnp.where(live, step_fn(params, x), 0.0)
    return trip + 1, sums.at[owner].add(r), squares.at[owner].add(r * r)

  zeros = jnp.zeros((num,), jnp.float32)
  _, sums, squares = jax.lax.while_loop(more, forward, (jnp.zeros((), jnp.int32), zeros, zeros))
  loss, (grad_sums, grad_squares) = jax.value_and_grad(objective, argnums=(0, 1))(sums, squares)

  def backward(carry):
    trip, grads = carry
    owner, live, x = piece(trip)
    r, pullback = jax.vjp(lambda p: step_fn(p, x), params)
    cotangent = jnp.where(live, grad_sums[owner] + 2.0 * r * grad_squares[owner], 0.0)
    (step_grads,) = pullback(cotangent.astype(r.dtype))
    return trip + 1, jax.tree.map(jnp.add, grads, step_grads)

  _, grads = jax.lax.while_loop(
      more, backward, (jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params)))
  return loss, grads
