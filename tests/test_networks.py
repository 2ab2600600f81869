"""Tests for spo_jax/networks.py: the tanh-Gaussian density and observation normalization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax import networks as nets

_log_prob = jax.jit(nets.log_prob)
_update = jax.jit(nets.normalizer_update)

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)  # 0.918939


def _log_prob_reference(mean, log_std, raw_action):
  """Gaussian log density of u, minus sum log(1 - tanh(u)^2) (change of variables to tanh u)."""
  std = np.exp(log_std)
  gaussian = np.sum(-0.5 * ((raw_action - mean) / std) ** 2 - log_std - HALF_LOG_2PI, axis=-1)
  return gaussian - np.sum(np.log(1.0 - np.tanh(raw_action) ** 2), axis=-1)


@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 4)])
def test_log_prob_matches_numpy(batch_shape):
  rng = np.random.default_rng(len(batch_shape))
  action_size = 3
  mean = rng.normal(size=batch_shape + (action_size,))
  log_std = rng.uniform(-1.0, 0.5, size=action_size)  # one per action dimension, like the policy
  raw_action = rng.uniform(-3.0, 3.0, size=batch_shape + (action_size,))
  got = _log_prob(jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32),
                  jnp.asarray(raw_action, jnp.float32))
  assert got.shape == batch_shape
  np.testing.assert_allclose(got, _log_prob_reference(mean, log_std, raw_action), rtol=1e-5,
                             atol=1e-5)


def test_log_prob_hand_values():
  # One dimension, mean 0, std 1, u = 0: N(0; 0, 1) density, tanh'(0) = 1:
  #   log pi = -1/2 log(2 pi) - log(1 - tanh(0)^2) = -0.918939 - 0
  np.testing.assert_allclose(_log_prob(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1)), -HALF_LOG_2PI,
                             rtol=1e-6)
  # Far in the tail, u = mean = 20: 1 - tanh(20)^2 = 1.7e-17 is 0 in float32, so the naive
  # formula gives +inf. The stable one: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))
  #   = 2 (0.693147 - 20 - 4e-18) = -38.613706,  log pi = -0.918939 + 38.613706 = 37.694767
  np.testing.assert_allclose(_log_prob(jnp.full(1, 20.0), jnp.zeros(1), jnp.full(1, 20.0)),
                             37.694767, rtol=1e-5)


def test_entropy_hand_value():
  # Gaussian entropy per dimension 1/2 + 1/2 log(2 pi) + log_std; at u = 0 the Jacobian term
  # log(1 - tanh(0)^2) is 0. Two dimensions, log_std = [0, -1]:
  #   (0.5 + 0.918939 + 0) + (0.5 + 0.918939 - 1) = 1.837877
  np.testing.assert_allclose(nets.entropy(jnp.array([0.0, -1.0]), jnp.zeros(2)), 1.837877,
                             rtol=1e-6)


def _prefix_mask(lengths, horizon):
  return (np.arange(horizon)[:, None] < np.asarray(lengths)[None, :]).astype(np.float32)


def test_normalizer_update_on_two_masked_batches():
  rng = np.random.default_rng(0)
  horizon, num, size = 6, 4, 3
  obs_a = rng.normal(1.0, 2.0, size=(horizon, num, size)).astype(np.float32)
  obs_b = rng.normal(-3.0, 0.5, size=(horizon, num, size)).astype(np.float32)
  mask_a = _prefix_mask([6, 1, 3, 2], horizon)
  mask_b = _prefix_mask([4, 6, 5, 1], horizon)
  norm = _update(nets.normalizer_init(size), obs_a, mask_a)
  norm = _update(norm, obs_b, mask_b)
  # The running statistics equal those of all valid rows of both batches taken at once.
  rows = np.concatenate([obs_a[mask_a > 0], obs_b[mask_b > 0]]).astype(np.float64)
  assert float(norm.count) == len(rows) == 12 + 16
  np.testing.assert_allclose(norm.mean, rows.mean(axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(norm.var, rows.var(axis=0), rtol=1e-5)


def test_masked_nan_rows_do_not_poison_the_statistics():
  # After termination the physics may hold nan or inf; those rows are masked.
  obs = np.array([[1.0, 2.0], [3.0, 6.0], [np.nan, np.inf], [-np.inf, np.nan]], np.float32)
  mask = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
  norm = _update(nets.normalizer_init(2), obs, mask)
  # Valid rows [1, 2] and [3, 6]: mean [2, 4], variance [1, 4], count 2.
  np.testing.assert_allclose(norm.mean, [2.0, 4.0])
  np.testing.assert_allclose(norm.var, [1.0, 4.0])
  assert float(norm.count) == 2.0


def test_normalizer_update_without_valid_rows_keeps_the_statistics():
  norm = nets.Normalizer(jnp.array([1.0, -1.0]), jnp.array([2.0, 0.5]), jnp.array(7.0))
  new = _update(norm, jnp.full((4, 2), np.nan), jnp.zeros(4))
  jax.tree.map(np.testing.assert_array_equal, new, norm)


def test_normalize_hand_values():
  norm = nets.Normalizer(jnp.array([1.0, 2.0]), jnp.array([4.0, 0.25]), jnp.array(5.0))
  obs = jnp.array([[3.0, 2.5], [1.0, 100.0]])
  # (obs - mean) / std with std = [2, 0.5]: [[2 / 2, 0.5 / 0.5], [0, 98 / 0.5 = 196 -> clip 10]]
  np.testing.assert_allclose(jax.jit(nets.normalize)(norm, obs), [[1.0, 1.0], [0.0, 10.0]],
                             rtol=1e-6)
  # Before the first update the statistics are (0, 1): the identity (up to the 1e-8).
  np.testing.assert_allclose(nets.normalize(nets.normalizer_init(2), obs[:1]), obs[:1],
                             rtol=1e-6)

