"""Actor-critic networks, the policies' action distributions, and observation normalization.

Two action distributions, chosen from the environment (`action_distribution(env)`):

- Continuous actions (every Brax env): a = tanh(u), u ~ N(mu(s), diag(exp(log_std))^2), mu an
  MLP of the normalized observation and log_std a learned, state-independent vector.
  log pi(a|s) is computed on the pre-tanh sample u with the change-of-variables term
  - sum log(1 - tanh(u)^2)  (Haarnoja et al. 2018, App. C), so PPO's ratios are exact for the
  bounded action.
- Discrete actions (an env with `discrete_actions = True`, e.g. `matrix_game`): a categorical
  distribution over K = action_size actions, logits an MLP of the normalized observation.
  The sampled action is stored and sent to the env as a one-hot vector [K] of floats, so the
  Brax `Env` API, the trajectory layout and PPO's batches keep float arrays of width A = K.

Both are reached through one interface, `ActionDistribution`: the policy network's output
`dist` (the distribution's parameters), `sample(dist, key) -> raw`, `log_prob(dist, raw)`,
`entropy(dist, raw)`, `mode(dist) -> raw`, `mode_action(dist) -> env action`,
`to_env_action(raw) -> env action`. "raw" is what the trajectory stores: the pre-tanh u, or
the one-hot action.

Value: an MLP of [normalized observation, t / H]. The time feature makes the finite-horizon
return Markov: with episodes cut at H and no bootstrapping past H (see ppo.py), a critic
without it could not tell step 10 from step 990 of the same state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from spo_jax.envs import env_hook

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh, "relu": jax.nn.relu, "swish": jax.nn.swish}
# A Python float, not a jnp array: an array computed at import would start JAX's backend
# before `spo-train --deterministic` can set XLA_FLAGS (the value is the same in float32).
_LOG_2PI = math.log(2.0 * math.pi)


class MLP(nn.Module):
  hidden_sizes: Sequence[int]
  output_size: int
  activation: str = "tanh"
  output_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    for width in self.hidden_sizes:
      x = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x))
    return nn.Dense(self.output_size,
                    kernel_init=nn.initializers.orthogonal(self.output_scale))(x)


class PolicyNetwork(nn.Module):
  """obs [..., obs_size] -> (mean [..., A], log_std [A])."""

  action_size: int
  hidden_sizes: Sequence[int]
  activation: str = "tanh"
  init_log_std: float = -0.5

  @nn.compact
  def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = MLP(self.hidden_sizes, self.action_size, self.activation, 0.01)(obs)
    log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                         (self.action_size,))
    return mean, log_std


class CategoricalPolicyNetwork(nn.Module):
  """obs [..., obs_size] -> logits [..., K]; near-uniform at initialisation (output scale
  0.01, like the Gaussian mean), so early iterations explore every action."""

  num_actions: int
  hidden_sizes: Sequence[int]
  activation: str = "tanh"

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return MLP(self.hidden_sizes, self.num_actions, self.activation, 0.01)(obs)


class ValueNetwork(nn.Module):
  """[obs, t/H] [..., obs_size + 1] -> value [...]."""

  hidden_sizes: Sequence[int]
  activation: str = "tanh"

  @nn.compact
  def __call__(self, obs_and_time: jax.Array) -> jax.Array:
    return MLP(self.hidden_sizes, 1, self.activation, 1.0)(obs_and_time)[..., 0]


class Params(NamedTuple):
  policy: Any
  value: Any


class Networks(NamedTuple):
  """The factory's bundle: modules plus the arguments that rebuild them."""

  policy: nn.Module  # PolicyNetwork, or CategoricalPolicyNetwork for discrete actions
  value: ValueNetwork
  observation_size: int
  action_size: int
  distribution: ActionDistribution  # TANH_GAUSSIAN or CATEGORICAL


def make_networks(observation_size: int, action_size: int, policy_hidden_sizes=(64, 64),
                  value_hidden_sizes=(64, 64), activation: str = "tanh",
                  init_log_std: float = -0.5, discrete: bool = False) -> Networks:
  """Actor and critic; `discrete` gives a categorical policy over `action_size` actions
  (`init_log_std` is then unused), otherwise the tanh-Gaussian."""
  if discrete:
    policy = CategoricalPolicyNetwork(action_size, tuple(policy_hidden_sizes), activation)
  else:
    policy = PolicyNetwork(action_size, tuple(policy_hidden_sizes), activation, init_log_std)
  return Networks(policy, ValueNetwork(tuple(value_hidden_sizes), activation),
                  observation_size, action_size, CATEGORICAL if discrete else TANH_GAUSSIAN)


def init_params(networks: Networks, key: jax.Array) -> Params:
  k_policy, k_value = jax.random.split(key)
  obs = jnp.zeros((1, networks.observation_size))
  return Params(networks.policy.init(k_policy, obs),
                networks.value.init(k_value, jnp.zeros((1, networks.observation_size + 1))))


def value_input(obs: jax.Array, t: jax.Array, horizon: int) -> jax.Array:
  """[obs, t/H]: obs [..., D], t [...] -> [..., D + 1]."""
  return jnp.concatenate([obs, (t.astype(obs.dtype) / horizon)[..., None]], axis=-1)


# --- tanh-Gaussian ----------------------------------------------------------------------

def sample_raw_action(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> jax.Array:
  """Pre-tanh sample u ~ N(mean, exp(log_std)^2); the env action is tanh(u)."""
  return mean + jnp.exp(jnp.broadcast_to(log_std, mean.shape)) * jax.random.normal(key, mean.shape)


def log_prob(mean: jax.Array, log_std: jax.Array, raw_action: jax.Array) -> jax.Array:
  """log pi(tanh(u) | s) for pre-tanh u [..., A] -> [...].

  Gaussian log density minus the tanh Jacobian, using the stable identity
  log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
  """
  log_std = jnp.broadcast_to(log_std, mean.shape)
  z = (raw_action - mean) * jnp.exp(-log_std)
  gaussian = -0.5 * jnp.sum(z**2 + 2.0 * log_std + _LOG_2PI, axis=-1)
  log_det = jnp.sum(2.0 * (jnp.log(2.0) - raw_action - jax.nn.softplus(-2.0 * raw_action)),
                    axis=-1)
  return gaussian - log_det


def entropy(log_std: jax.Array, raw_action: jax.Array) -> jax.Array:
  """Entropy estimate of the tanh-Gaussian at the sampled u: H(N) + E[log(1 - tanh(u)^2)],
  the Gaussian entropy in closed form and the Jacobian term at the sample (as in Brax)."""
  gaussian = jnp.sum(0.5 + 0.5 * _LOG_2PI + log_std)
  log_det = jnp.sum(2.0 * (jnp.log(2.0) - raw_action - jax.nn.softplus(-2.0 * raw_action)),
                    axis=-1)
  return gaussian + log_det


# --- categorical -------------------------------------------------------------------------

def categorical_log_prob(logits: jax.Array, one_hot: jax.Array) -> jax.Array:
  """log pi(a | s) = sum_k onehot_k log_softmax(logits)_k: logits, one_hot [..., K] -> [...].

  An all-zero row (a masked slot) gives 0."""
  return jnp.sum(one_hot * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def categorical_entropy(logits: jax.Array) -> jax.Array:
  """Exact entropy - sum_k p_k log p_k, p = softmax(logits): [..., K] -> [...]."""
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


# --- action distributions ------------------------------------------------------------------

class ActionDistribution:
  """How a policy network's output `dist` becomes actions (see the module docstring)."""

  discrete: bool = False

  def sample(self, dist: Any, key: jax.Array) -> jax.Array:
    raise NotImplementedError

  def log_prob(self, dist: Any, raw_action: jax.Array) -> jax.Array:
    raise NotImplementedError

  def entropy(self, dist: Any, raw_action: jax.Array) -> jax.Array:
    raise NotImplementedError

  def mode(self, dist: Any) -> jax.Array:
    raise NotImplementedError

  def mode_action(self, dist: Any) -> jax.Array:
    raise NotImplementedError

  def to_env_action(self, raw_action: jax.Array) -> jax.Array:
    raise NotImplementedError


class TanhGaussian(ActionDistribution):
  """dist = (mean [..., A], log_std [A]); raw = pre-tanh u; env action tanh(u)."""

  def sample(self, dist, key):
    return sample_raw_action(*dist, key)

  def log_prob(self, dist, raw_action):
    return log_prob(*dist, raw_action)

  def entropy(self, dist, raw_action):
    return entropy(dist[1], raw_action)

  def mode(self, dist):
    # tanh(mean), taken back through arctanh with the action kept off +-1: where tanh
    # saturates in float32 the raw action stays finite.
    return jnp.arctanh(jnp.clip(jnp.tanh(dist[0]), -1 + 1e-6, 1 - 1e-6))

  def mode_action(self, dist):
    return jnp.tanh(dist[0])

  def to_env_action(self, raw_action):
    return jnp.tanh(raw_action)

  def __repr__(self) -> str:
    return "TanhGaussian()"


class Categorical(ActionDistribution):
  """dist = logits [..., K]; raw = the one-hot action [..., K] (float32), also the env action."""

  discrete = True

  def sample(self, dist, key):
    index = jax.random.categorical(key, dist, axis=-1)
    return jax.nn.one_hot(index, dist.shape[-1], dtype=jnp.float32)

  def log_prob(self, dist, raw_action):
    return categorical_log_prob(dist, raw_action)

  def entropy(self, dist, raw_action):
    del raw_action  # exact, no sample needed
    return categorical_entropy(dist)

  def mode(self, dist):
    return jax.nn.one_hot(jnp.argmax(dist, axis=-1), dist.shape[-1], dtype=jnp.float32)

  def mode_action(self, dist):
    return self.mode(dist)

  def to_env_action(self, raw_action):
    return raw_action

  def probs(self, dist: jax.Array) -> jax.Array:
    """The action probabilities softmax(logits) [..., K]."""
    return jax.nn.softmax(dist, axis=-1)

  def __repr__(self) -> str:
    return "Categorical()"


TANH_GAUSSIAN = TanhGaussian()
CATEGORICAL = Categorical()


def has_discrete_actions(env: Any) -> bool:
  """True for an env that declares `discrete_actions = True` (it takes one-hot actions [K])."""
  return bool(env_hook(env, "discrete_actions"))


def action_distribution(env: Any) -> ActionDistribution:
  """The action distribution for `env`: categorical for discrete actions, else tanh-Gaussian."""
  return CATEGORICAL if has_discrete_actions(env) else TANH_GAUSSIAN


# --- observation normalization -----------------------------------------------------------

class Normalizer(NamedTuple):
  """Running mean and variance (Chan et al. parallel update) over valid observations."""

  mean: jax.Array  # [D]
  var: jax.Array  # [D]
  count: jax.Array  # [], float32


def normalizer_init(size: int) -> Normalizer:
  return Normalizer(jnp.zeros(size), jnp.ones(size), jnp.zeros(()))


def normalizer_update(norm: Normalizer, obs: jax.Array, mask: jax.Array) -> Normalizer:
  """Fold the masked batch obs [..., D] (mask [...]) into the running statistics."""
  obs = obs.reshape(-1, obs.shape[-1])
  valid = mask.reshape(-1)[:, None] > 0
  n = jnp.sum(valid).astype(jnp.float32)
  # `where`, not multiplication: physics after termination may hold inf/nan, and nan * 0 = nan.
  batch_mean = jnp.sum(jnp.where(valid, obs, 0.0), 0) / jnp.maximum(n, 1.0)
  batch_var = jnp.sum(jnp.where(valid, (obs - batch_mean[None, :]) ** 2, 0.0), 0) / jnp.maximum(
      n, 1.0)
  total = norm.count + n
  delta = batch_mean - norm.mean
  mean = norm.mean + delta * n / jnp.maximum(total, 1.0)
  m2 = norm.var * norm.count + batch_var * n + delta**2 * norm.count * n / jnp.maximum(total, 1.0)
  var = jnp.where(total > 0, m2 / jnp.maximum(total, 1.0), norm.var)
  return Normalizer(mean, var, total)


def apply_policy(networks: Networks, policy_params: Any, normalizer: Normalizer,
                 obs: jax.Array, normalize_observations: bool = True) -> Any:
  """The policy's action-distribution parameters at obs [..., D]: obs normalised by
  `normalizer` (when `normalize_observations`), then the policy network. The one place a
  policy is applied to raw observations (acting, evaluation, the averaged policy); use
  `networks.distribution` to sample, score or take the mode, so it holds for any action
  distribution."""
  return networks.policy.apply(policy_params, normalize(normalizer, obs, normalize_observations))


def normalize(norm: Normalizer, obs: jax.Array, enabled: bool = True) -> jax.Array:
  if not enabled:
    return obs
  # Until the first update (count 0) the statistics are (0, 1): the identity.
  shape = (1,) * (obs.ndim - 1) + (-1,)
  mean, std = norm.mean.reshape(shape), jnp.sqrt(norm.var + 1e-8).reshape(shape)
  return jnp.clip((obs - mean) / std, -10.0, 10.0)
