"""PPO on fixed-horizon episodes: masked GAE, clipped surrogate, value loss, entropy bonus.

PPO never sees a teacher: it receives per-step rewards [H, N] and a validity mask, whatever
the reward source. Episodes end either when the environment terminates or at the horizon H;
in both cases nothing is bootstrapped past the last valid step, because the objective is the
return of the H-step episode (the critic sees t/H, so this stays Markov; networks.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from spo_jax import networks as nets


class PPOHyperparams(NamedTuple):
  discount: float
  gae_lambda: float
  clip_epsilon: float
  value_coef: float
  entropy_coef: float
  normalize_advantages: bool
  update_epochs: int
  num_minibatches: int
  normalize_observations: bool


def episode_ends(mask: jax.Array) -> jax.Array:
  """[H, N] 1.0 on each episode's last valid step (masks are prefixes: 1...1 0...0)."""
  next_mask = jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])], axis=0)
  return mask * (1.0 - next_mask)


def compute_gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, discount: float,
                gae_lambda: float) -> tuple[jax.Array, jax.Array]:
  """Generalized advantage estimation over masked, time-major episodes.

  rewards, values, mask: [H, N]. With e_t = 1 on an episode's last valid step,
    delta_t = r_t + gamma (1 - e_t) V_{t+1} - V_t
    A_t     = delta_t + gamma lambda (1 - e_t) A_{t+1}
  (Schulman et al. 2016, eq. 16), and A_t = 0 on masked steps.
  Returns (advantages [H, N], value targets A + V [H, N]).
  """
  mask = mask.astype(rewards.dtype)
  ends = episode_ends(mask)
  values = jnp.where(mask > 0, values, 0.0)
  next_values = jnp.concatenate([values[1:], jnp.zeros_like(values[:1])], axis=0)
  # `where`, not multiplication, on masked steps: a nan there must not leak (nan * 0 = nan).
  valid = mask > 0
  deltas = jnp.where(valid, rewards + discount * (1.0 - ends) * next_values - values, 0.0)

  def step(next_advantage, inputs):
    delta, end, valid = inputs
    carried = jnp.where(end > 0, 0.0, next_advantage)
    advantage = jnp.where(valid, delta + discount * gae_lambda * carried, 0.0)
    return advantage, advantage

  _, advantages = jax.lax.scan(step, jnp.zeros_like(rewards[0]), (deltas, ends, valid),
                               reverse=True)
  return advantages, advantages + values


class Batch(NamedTuple):
  obs: jax.Array  # [B, D] normalized observation
  time: jax.Array  # [B] step index t
  raw_action: jax.Array  # [B, A] pre-tanh action, or one-hot action (discrete)
  log_prob: jax.Array  # [B]
  advantage: jax.Array  # [B]
  target: jax.Array  # [B] value target
  mask: jax.Array  # [B]


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(jnp.where(mask > 0, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1.0)


def ppo_loss(params: nets.Params, networks: nets.Networks, batch: Batch, horizon: int,
             hp: PPOHyperparams) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Clipped surrogate + value_coef * value loss - entropy_coef * entropy, masked means."""
  dist = networks.policy.apply(params.policy, batch.obs)
  new_log_prob = networks.distribution.log_prob(dist, batch.raw_action)
  log_ratio = jnp.where(batch.mask > 0, new_log_prob - batch.log_prob, 0.0)
  ratio = jnp.exp(log_ratio)
  clipped = jnp.clip(ratio, 1.0 - hp.clip_epsilon, 1.0 + hp.clip_epsilon)
  policy_loss = -_masked_mean(jnp.minimum(ratio * batch.advantage, clipped * batch.advantage),
                              batch.mask)
  value = networks.value.apply(params.value, nets.value_input(batch.obs, batch.time, horizon))
  value_loss = 0.5 * _masked_mean((value - batch.target) ** 2, batch.mask)
  entropy = _masked_mean(networks.distribution.entropy(dist, batch.raw_action), batch.mask)
  loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
  approx_kl = _masked_mean((ratio - 1.0) - log_ratio, batch.mask)
  clip_fraction = _masked_mean((jnp.abs(ratio - 1.0) > hp.clip_epsilon).astype(jnp.float32),
                               batch.mask)
  return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def make_optimizer(learning_rate: float, max_grad_norm: float) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))


def ppo_update(params: nets.Params, opt_state: Any, optimizer: optax.GradientTransformation,
               networks: nets.Networks, normalizer: nets.Normalizer, obs: jax.Array,
               raw_action: jax.Array, log_prob: jax.Array, rewards: jax.Array, mask: jax.Array,
               key: jax.Array, hp: PPOHyperparams
               ) -> tuple[nets.Params, Any, dict[str, jax.Array]]:
  """One PPO update on an iteration's data (all arrays time-major [H, N, ...]).

  Values are computed here with the pre-update critic in one batched call; then
  `update_epochs` passes of `num_minibatches` shuffled minibatches over the H * N slots.
  """
  horizon, num_envs = mask.shape
  # Masked slots carry no data; zero them so that nan there cannot reach a gradient
  # (the gradient of `where` is 0 * d(branch), and 0 * nan = nan).
  valid = mask > 0
  obs = jnp.where(valid[..., None], obs, 0.0)
  raw_action = jnp.where(valid[..., None], raw_action, 0.0)
  log_prob = jnp.where(valid, log_prob, 0.0)
  rewards = jnp.where(valid, rewards, 0.0)
  norm_obs = nets.normalize(normalizer, obs, hp.normalize_observations)
  time = jnp.broadcast_to(jnp.arange(horizon)[:, None], (horizon, num_envs))
  values = networks.value.apply(params.value, nets.value_input(norm_obs, time, horizon))
  advantages, targets = compute_gae(rewards, values, mask, hp.discount, hp.gae_lambda)
  if hp.normalize_advantages:
    adv_mean = _masked_mean(advantages, mask)
    adv_std = jnp.sqrt(_masked_mean((advantages - adv_mean) ** 2, mask))
    advantages = jnp.where(mask > 0, (advantages - adv_mean) / (adv_std + 1e-8), 0.0)

  size = horizon * num_envs
  flat = Batch(norm_obs.reshape(size, -1), time.reshape(size), raw_action.reshape(size, -1),
               log_prob.reshape(size), advantages.reshape(size), targets.reshape(size),
               mask.reshape(size))
  grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)

  def minibatch_step(carry, minibatch):
    params, opt_state = carry
    (_, aux), grads = grad_fn(params, networks, minibatch, horizon, hp)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    aux["grad_norm"] = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    return (params, opt_state), aux

  def epoch_step(carry, epoch_key):
    perm = jax.random.permutation(epoch_key, size)
    shuffled = jax.tree.map(
        lambda x: x[perm].reshape((hp.num_minibatches, -1) + x.shape[1:]), flat)
    return jax.lax.scan(minibatch_step, carry, shuffled)

  (params, opt_state), aux = jax.lax.scan(
      epoch_step, (params, opt_state), jax.random.split(key, hp.update_epochs))
  metrics = jax.tree.map(jnp.mean, aux)
  metrics["value_mean"] = _masked_mean(values, mask)
  metrics["advantage_std"] = jnp.sqrt(_masked_mean(advantages**2, mask))
  return params, opt_state, metrics
