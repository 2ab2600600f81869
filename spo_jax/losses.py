"""Loss functions shared by the package's learned preference models."""

from __future__ import annotations

import jax


def preference_nll(logit: jax.Array, label: jax.Array) -> jax.Array:
  """Per-pair negative log-likelihood of a logistic (Bradley-Terry) preference model.

  logit d = log P(a > b) / P(b > a), label y in [0, 1] = P(a preferred), both [...]:
    loss = -[y log sigma(d) + (1 - y) log sigma(-d)]     (Bradley & Terry 1952)
  log_sigmoid keeps it finite for large |d|. The reward model uses d = R_a - R_b
  (`reward_model.bradley_terry_loss`); the learned teacher d = g(a, b) - g(b, a).
  """
  return -(label * jax.nn.log_sigmoid(logit) + (1.0 - label) * jax.nn.log_sigmoid(-logit))
