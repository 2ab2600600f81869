"""The preference network of the 'learned' teacher and its fit to labelled pairs.

The network (Christiano et al. 2017 fit preferences with a Bradley-Terry reward; this is the
pairwise generalisation TEACHERS.md asks for): an MLP g over the standardized pair
z = (x - mu) / sigma of two trajectories' feature vectors x [F] (`learned.TrajectoryFeatures`),

  P_theta(a > b) = sigmoid(g(z_a, z_b) - g(z_b, z_a)),

antisymmetric (P(a, b) + P(b, a) = 1) and a tie on itself (P(a, a) = 1/2) for every theta, by
construction. g sees both trajectories at once, so P_theta need not be transitive; the
Bradley-Terry reward model is the special case g(z_a, z_b) = r(z_a). mu and sigma are the
training pairs' feature statistics, stored beside the weights in `PreferenceModel`.

Fitting (`fit_preference_model`): binary cross-entropy against soft ([0, 1]) or hard
({0, 1}) labels, Adam, one jitted `lax.scan` over gradient steps, with a held-out split.
Apart from `learned.py` (the features, the labels file and the teacher) so that each file
holds one job.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from spo_jax.losses import preference_nll
from spo_jax.networks import MLP

# Features whose spread in the labels file is below this are constant there (e.g. the length
# when no episode terminates); they are centred but not scaled, so they cannot blow up.
_MIN_STD = 1e-6


# -------------------------------------------------------------------------------------
# The network
# -------------------------------------------------------------------------------------

@flax.struct.dataclass
class PreferenceModel:
  """Fitted preference network with its standardization: everything `prob` needs.

  params: flax parameters of g, an MLP [2F] -> [1].
  mean, std: [F] feature statistics of the training pairs (std floored at 1 where a
  feature is constant there).
  """

  params: Any
  mean: jax.Array  # [F]
  std: jax.Array  # [F]
  hidden_sizes: tuple[int, ...] = flax.struct.field(pytree_node=False, default=(64, 64))
  activation: str = flax.struct.field(pytree_node=False, default="tanh")

  @property
  def network(self) -> MLP:
    return MLP(self.hidden_sizes, 1, self.activation)

  def logit(self, x_a: jax.Array, x_b: jax.Array) -> jax.Array:
    """x_a, x_b [F] raw features -> d = g(z_a, z_b) - g(z_b, z_a) [], so d(b, a) = -d(a, b)."""
    z_a = (x_a - self.mean) / self.std
    z_b = (x_b - self.mean) / self.std
    both = jnp.stack([jnp.concatenate([z_a, z_b]), jnp.concatenate([z_b, z_a])])  # [2, 2F]
    g = self.network.apply(self.params, both)[:, 0]  # [2]
    return g[0] - g[1]

  def prob(self, x_a: jax.Array, x_b: jax.Array) -> jax.Array:
    """P_theta(a > b) = sigmoid(logit(x_a, x_b)) [] for ONE pair of feature vectors [F]."""
    return jax.nn.sigmoid(self.logit(x_a, x_b))


@functools.partial(jax.jit, static_argnames=("num_features", "hidden_sizes", "activation"))
def _init_params(key: jax.Array, *, num_features: int, hidden_sizes: tuple[int, ...],
                 activation: str) -> Any:
  # Jitted: flax's eager init (orthogonal kernels by QR) costs seconds of op-by-op dispatch.
  return MLP(hidden_sizes, 1, activation).init(key, jnp.zeros((1, 2 * num_features)))


def init_preference_model(key: jax.Array, num_features: int, *,
                          hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh",
                          mean: jax.Array | None = None,
                          std: jax.Array | None = None) -> PreferenceModel:
  """A random (unfitted) model; mean 0 and std 1 unless given."""
  params = _init_params(key, num_features=num_features, hidden_sizes=tuple(hidden_sizes),
                        activation=activation)
  mean = jnp.zeros((num_features,)) if mean is None else jnp.asarray(mean, jnp.float32)
  std = jnp.ones((num_features,)) if std is None else jnp.asarray(std, jnp.float32)
  return PreferenceModel(params, mean, std, tuple(hidden_sizes), activation)


# -------------------------------------------------------------------------------------
# Fitting
# -------------------------------------------------------------------------------------

def _bce(model: PreferenceModel, x_a: jax.Array, x_b: jax.Array, y: jax.Array) -> jax.Array:
  """Mean binary cross-entropy  -[y log P + (1 - y) log(1 - P)]  over pairs [B]."""
  return jnp.mean(preference_nll(jax.vmap(model.logit)(x_a, x_b), y))


@jax.jit
def _pair_stats(model: PreferenceModel, x_a: jax.Array, x_b: jax.Array,
                y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per pair [P]: the BCE, and whether P_theta and the label pick the same side,
  (P - 1/2)(y - 1/2) > 0 (a predicted 1/2 never agrees). One compiled call for all pairs;
  train and held-out metrics are numpy means over its rows."""
  logits = jax.vmap(model.logit)(x_a, x_b)
  return (preference_nll(logits, y),
          (jax.nn.sigmoid(logits) - 0.5) * (y - 0.5) > 0)


def _split_metrics(loss: np.ndarray, agree: np.ndarray, y: np.ndarray,
                   rows: np.ndarray) -> tuple[float, float]:
  """(mean loss, accuracy) over `rows`; accuracy counts decisive pairs (label != 1/2) only
  and is nan without any."""
  if len(rows) == 0:
    return float("nan"), float("nan")
  decisive = y[rows] != 0.5
  accuracy = float(np.mean(agree[rows][decisive])) if decisive.any() else float("nan")
  return float(np.mean(loss[rows])), accuracy


@functools.partial(jax.jit, static_argnames=("steps", "batch_size", "learning_rate"))
def _fit_scan(model: PreferenceModel, x_a: jax.Array, x_b: jax.Array, y: jax.Array,
              key: jax.Array, *, steps: int, batch_size: int,
              learning_rate: float) -> tuple[PreferenceModel, jax.Array]:
  """`steps` Adam steps on the BCE; minibatches of `batch_size` pairs drawn with replacement,
  or the full batch when batch_size equals the number of pairs. Returns (model, losses [S])."""
  optimizer = optax.adam(learning_rate)
  num = y.shape[0]

  def loss_fn(params, key):
    if batch_size >= num:
      return _bce(model.replace(params=params), x_a, x_b, y)
    idx = jax.random.randint(key, (batch_size,), 0, num)
    return _bce(model.replace(params=params), x_a[idx], x_b[idx], y[idx])

  def step(carry, key):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  carry = (model.params, optimizer.init(model.params))
  (params, _), losses = jax.lax.scan(step, carry, jax.random.split(key, steps))
  return model.replace(params=params), losses


def fit_preference_model(features_a: Any, features_b: Any, labels: Any, *,
                         hidden_sizes: Sequence[int] = (64, 64), steps: int,
                         learning_rate: float = 1e-3, key: jax.Array,
                         holdout_fraction: float = 0.2, batch_size: int | None = None,
                         activation: str = "tanh") -> tuple[PreferenceModel, dict[str, float]]:
  """Fit P_theta to labelled pairs by binary cross-entropy with Adam.

  features_a, features_b: [P, F] raw features; labels: [P] in [0, 1] (soft or hard).
  A random `holdout_fraction` of the pairs (floor(P * fraction)) is kept out of the fit and
  out of the standardization statistics mean, std [F] (computed over both sides of the
  training pairs). batch_size None means full batch. Deterministic given `key`.

  Returns (model, metrics) with metrics: train_loss (BCE on all training pairs after the
  fit), initial_loss (before it), train_accuracy, holdout_loss, holdout_accuracy (nan
  without held-out pairs), num_train, num_holdout. Accuracy counts agreement of P > 1/2 with
  label > 1/2 on pairs whose label is not 1/2.
  """
  x_a = np.asarray(features_a, np.float32)
  x_b = np.asarray(features_b, np.float32)
  y = np.asarray(labels, np.float32)
  if x_a.ndim != 2 or x_a.shape != x_b.shape or y.shape != x_a.shape[:1]:
    raise ValueError(f"need features_a, features_b [P, F] and labels [P]; got shapes "
                     f"{x_a.shape}, {x_b.shape}, {y.shape}")
  if not 0.0 <= holdout_fraction < 1.0:
    raise ValueError(f"holdout_fraction = {holdout_fraction} must lie in [0, 1)")
  num, num_features = x_a.shape
  num_holdout = int(num * holdout_fraction)
  if num - num_holdout < 1:
    raise ValueError(f"no training pairs left: {num} pairs, holdout_fraction {holdout_fraction}")
  k_split, k_init, k_fit = jax.random.split(key, 3)
  order = np.asarray(jax.random.permutation(k_split, num))
  train, held = order[num_holdout:], order[:num_holdout]

  both = np.concatenate([x_a[train], x_b[train]])  # [2 P_train, F]
  mean = both.mean(axis=0)
  std = both.std(axis=0)
  std = np.where(std > _MIN_STD, std, 1.0).astype(np.float32)
  model = init_preference_model(k_init, num_features, hidden_sizes=hidden_sizes,
                                activation=activation, mean=mean, std=std)

  all_data = (jnp.asarray(x_a), jnp.asarray(x_b), jnp.asarray(y))
  initial_loss, _ = _split_metrics(*jax.device_get(_pair_stats(model, *all_data)), y, train)
  size = len(train) if batch_size is None else min(int(batch_size), len(train))
  if steps > 0:
    train_data = (jnp.asarray(x_a[train]), jnp.asarray(x_b[train]), jnp.asarray(y[train]))
    model, _ = _fit_scan(model, *train_data, k_fit, steps=int(steps), batch_size=size,
                         learning_rate=float(learning_rate))
  loss, agree = jax.device_get(_pair_stats(model, *all_data))
  train_loss, train_accuracy = _split_metrics(loss, agree, y, train)
  holdout_loss, holdout_accuracy = _split_metrics(loss, agree, y, held)
  metrics = {"initial_loss": initial_loss, "train_loss": train_loss,
             "train_accuracy": train_accuracy, "holdout_loss": holdout_loss,
             "holdout_accuracy": holdout_accuracy, "num_train": len(train),
             "num_holdout": num_holdout}
  return model, metrics
