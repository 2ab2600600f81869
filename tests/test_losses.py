"""preference_nll: the one Bradley-Terry loss of the reward model and the learned teacher."""

import jax.numpy as jnp
import numpy as np
import optax

from spo_jax.losses import preference_nll


def test_worked_values():
  # d = 0: -log(1/2) = 0.6931 whatever the label; d = 100, y = 0: ~100 (no overflow).
  np.testing.assert_allclose(preference_nll(jnp.zeros(3), jnp.array([0.0, 0.5, 1.0])),
                             [np.log(2.0)] * 3, rtol=1e-6)
  np.testing.assert_allclose(preference_nll(jnp.float32(100.0), jnp.float32(0.0)), 100.0)


def test_equals_optax_binary_cross_entropy_on_logits():
  logits = jnp.linspace(-20.0, 20.0, 41)
  labels = jnp.linspace(0.0, 1.0, 41)
  np.testing.assert_array_equal(preference_nll(logits, labels),
                                optax.sigmoid_binary_cross_entropy(logits, labels))
