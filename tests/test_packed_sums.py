"""packed_sums: loss and gradient of step sums over the valid steps only.

The reference is the dense computation differentiated by JAX itself (`jax.value_and_grad`
over all K T slots with `where` masks), an independent route to the same numbers: the
module assembles its gradient by hand from two loops of vector-Jacobian products.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax import networks as nets
from spo_jax.packed_sums import packed_order, sums_loss_and_grad


def test_packed_order_by_hand():
  # mask 0 1 1 0 1: valid positions 1, 2, 4 come first in order, then 0, 3.
  order, count = jax.jit(packed_order)(jnp.array([0.0, 1.0, 1.0, 0.0, 1.0]))
  np.testing.assert_array_equal(order, [1, 2, 4, 0, 3])
  assert int(count) == 3
  order, count = packed_order(jnp.zeros(4))
  np.testing.assert_array_equal(order, [0, 1, 2, 3])
  assert int(count) == 0


def _problem(seed, num=6, horizon=11, features=3, prefix=True):
  rng = np.random.default_rng(seed)
  inputs = rng.normal(size=(num, horizon, features)).astype(np.float32)
  if prefix:  # episodes: a valid prefix of random length, 0 to horizon
    lengths = rng.integers(0, horizon + 1, size=num)
    mask = (np.arange(horizon)[None, :] < lengths[:, None]).astype(np.float32)
  else:
    mask = (rng.uniform(size=(num, horizon)) < 0.4).astype(np.float32)
  target = rng.uniform(size=num // 2).astype(np.float32)
  return jnp.asarray(inputs), jnp.asarray(mask), jnp.asarray(target)


def _objective(target, penalty=0.3):
  """A Bradley-Terry loss over consecutive pairs plus penalty * mean of r^2 (as the RM fit)."""
  def objective(sums, squares):
    pairs = sums.reshape(-1, 2)
    d = pairs[:, 0] - pairs[:, 1]
    nll = -(target * jax.nn.log_sigmoid(d) + (1 - target) * jax.nn.log_sigmoid(-d))
    return jnp.mean(nll) + penalty * jnp.sum(squares)
  return objective


def _dense(step_fn, params, inputs, mask, objective):
  def loss(p):
    r = jnp.where(mask > 0, step_fn(p, inputs), 0.0)  # [K, T]
    return objective(jnp.sum(r, -1), jnp.sum(r * r, -1))
  return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize("chunk, prefix", [(7, True), (7, False), (1024, True), (1, True)])
def test_matches_dense_autodiff(chunk, prefix):
  # chunk 7 over 66 slots: several trips and a partial last one; chunk 1: one step per trip;
  # 1024 > K T: one chunk of all slots.
  inputs, mask, target = _problem(0, prefix=prefix)
  net = nets.MLP((8, 8), 1, "tanh")
  params = net.init(jax.random.PRNGKey(1), inputs[0])
  step_fn = lambda p, x: net.apply(p, x)[..., 0]
  objective = _objective(target)
  want_loss, want_grads = _dense(step_fn, params, inputs, mask, objective)
  got_loss, got_grads = jax.jit(
      lambda p, x, m: sums_loss_and_grad(step_fn, p, x, m, objective, chunk))(
          params, inputs, mask)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               got_grads, want_grads)


def test_vmapped_members_with_different_lengths_match_dense():
  # Two "ensemble members": own parameters and own minibatches, one with every step valid
  # and one with none, so the loop runs to the longer member and the other stays exact.
  net = nets.MLP((8,), 1, "tanh")
  inputs, mask, target = _problem(2)
  masks = jnp.stack([jnp.ones_like(mask), jnp.zeros_like(mask)])
  inputs2 = jnp.stack([inputs, inputs[::-1]])
  params = jax.vmap(lambda k: net.init(k, inputs[0]))(jax.random.split(jax.random.PRNGKey(3)))
  step_fn = lambda p, x: net.apply(p, x)[..., 0]
  objective = _objective(target)
  got = jax.jit(jax.vmap(lambda p, x, m: sums_loss_and_grad(step_fn, p, x, m, objective, 5)))(
      params, inputs2, masks)
  for e in range(2):
    member = jax.tree.map(lambda leaf, e=e: leaf[e], params)
    want = _dense(step_fn, member, inputs2[e], masks[e], objective)
    np.testing.assert_allclose(got[0][e], want[0], rtol=1e-5)
    jax.tree.map(lambda a, b, e=e: np.testing.assert_allclose(a[e], b, rtol=1e-4, atol=1e-6),
                 got[1], want[1])
  # The empty member: every sum is 0, so d = 0 and the loss is log 2 per pair.
  np.testing.assert_allclose(got[0][1], np.log(2.0), rtol=1e-6)


def test_padding_is_never_evaluated():
  # NaN on every masked slot: the dense gradient turns it into NaN (0 * NaN in the backward
  # pass of the network); the packed one never reads those slots, so it stays finite.
  inputs, mask, target = _problem(4)
  inputs = jnp.where(mask[..., None] > 0, inputs, jnp.nan)
  net = nets.MLP((8,), 1, "tanh")
  params = net.init(jax.random.PRNGKey(5), inputs[0, :1])
  step_fn = lambda p, x: net.apply(p, x)[..., 0]
  objective = _objective(target)
  _, dense_grads = _dense(step_fn, params, inputs, mask, objective)
  assert not all(np.all(np.isfinite(g)) for g in jax.tree.leaves(dense_grads))
  loss, grads = sums_loss_and_grad(step_fn, params, inputs, mask, objective, 4)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
