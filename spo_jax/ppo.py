"""PPO on fixed-horizon episodes: masked GAE, clipped surrogate, value loss, entropy bonus.

PPO never sees a teacher: it receives per-step rewards [H, N] and a validity mask, whatever
the reward source. Episodes end either when the environment terminates or at the horizon H;
in both cases nothing is bootstrapped past the last valid step, because the objective is the
return of the H-step episode (the critic sees t/H, so this stays Markov; networks.py).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
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
  num_microbatches: int = 1
  # Smallest piece (slots) a minibatch is cut into, unless the minibatch itself is smaller:
  # a `while_loop` trip costs ~0.1 ms on a CPU, more than a tiny piece's compute
  # (docs/performance.md).
  min_microbatch_size: int = 512


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
  chex.assert_rank(rewards, 2)
  chex.assert_equal_shape([rewards, values, mask])
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


def _masked_mean(x: jax.Array, mask: jax.Array, count: jax.Array | None = None) -> jax.Array:
  """sum(x over mask > 0) / count, count = the number of valid entries unless given (a
  microbatch divides by its whole minibatch's count, so that the pieces' sums add up)."""
  count = jnp.sum(mask) if count is None else count
  return jnp.sum(jnp.where(mask > 0, x, 0.0)) / jnp.maximum(count, 1.0)


def ppo_loss(params: nets.Params, networks: nets.Networks, batch: Batch, horizon: int,
             hp: PPOHyperparams, count: jax.Array | None = None
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Clipped surrogate + value_coef * value loss - entropy_coef * entropy, masked means.

  Means are sums over the valid entries of `batch` divided by `count` (default: their number).
  With `count` = the valid slots of a whole minibatch, the losses, metrics and gradients of its
  microbatches add up to those of the minibatch in one piece.
  """
  dist = networks.policy.apply(params.policy, batch.obs)
  new_log_prob = networks.distribution.log_prob(dist, batch.raw_action)
  log_ratio = jnp.where(batch.mask > 0, new_log_prob - batch.log_prob, 0.0)
  ratio = jnp.exp(log_ratio)
  clipped = jnp.clip(ratio, 1.0 - hp.clip_epsilon, 1.0 + hp.clip_epsilon)
  policy_loss = -_masked_mean(jnp.minimum(ratio * batch.advantage, clipped * batch.advantage),
                              batch.mask, count)
  value = networks.value.apply(params.value, nets.value_input(batch.obs, batch.time, horizon))
  value_loss = 0.5 * _masked_mean((value - batch.target) ** 2, batch.mask, count)
  entropy = _masked_mean(networks.distribution.entropy(dist, batch.raw_action), batch.mask,
                         count)
  loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
  approx_kl = _masked_mean((ratio - 1.0) - log_ratio, batch.mask, count)
  clip_fraction = _masked_mean((jnp.abs(ratio - 1.0) > hp.clip_epsilon).astype(jnp.float32),
                               batch.mask, count)
  return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def make_optimizer(learning_rate: float, max_grad_norm: float,
                   inject: bool = False) -> optax.GradientTransformation:
  """Global-norm clipping then Adam. `inject`: the learning rate is kept in the optimizer's
  state (`optax.inject_hyperparams`), where a sweep sets a different one per vmapped run."""
  def chain(learning_rate):
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))

  if inject:
    return optax.inject_hyperparams(chain)(learning_rate=learning_rate)
  return chain(learning_rate)


def valid_first_in_time_order(valid: jax.Array) -> jax.Array:
  """[B] int32: the valid slots in index order, then the masked ones in index order; equal to
  `argsort(~valid, stable=True)` in O(B) (a prefix sum and a scatter) instead of a sort."""
  size = valid.shape[0]
  ahead = jnp.cumsum(valid.astype(jnp.int32))  # valid slots up to and including each slot
  position = jnp.where(valid, ahead - 1, ahead[-1] + jnp.arange(size) - ahead)
  return jnp.zeros((size,), jnp.int32).at[position].set(jnp.arange(size, dtype=jnp.int32))


# Widths of the sorted prefix (fractions of B) that `valid_first_order` chooses from.
SHUFFLE_WIDTH_FACTOR = 8
SMALLEST_SHUFFLE_WIDTH = 4096


def shuffle_widths(size: int) -> tuple[int, ...]:
  """B, B / 8, B / 64, ... while at least 4096: the sizes of the prefix that is sorted."""
  widths = [size]
  while widths[-1] // SHUFFLE_WIDTH_FACTOR >= SMALLEST_SHUFFLE_WIDTH:
    widths.append(widths[-1] // SHUFFLE_WIDTH_FACTOR)
  return tuple(reversed(widths))


def valid_first_order(key: jax.Array, valid: jax.Array,
                      in_time_order: jax.Array | None = None) -> jax.Array:
  """[B] int32: a permutation of the B slots with the valid ones first, in uniformly random
  order, then the masked ones (ties between random floats have probability ~0).

  Equal to argsort(where(valid, u, 2)) for u = uniform(key, [B]), but the sort covers only the
  smallest of `shuffle_widths(B)` that holds the V valid slots (gathered to the front in index
  order first): its cost follows V (within a factor of 8), not B. Under `vmap` the choice of
  width becomes a select and every width is sorted (about 1.14x one sort of B).
  `in_time_order`: `valid_first_in_time_order(valid)` if the caller already has it.
  """
  size = valid.shape[0]
  u = jax.random.uniform(key, (size,))
  if in_time_order is None:
    in_time_order = valid_first_in_time_order(valid)
  count = jnp.sum(valid.astype(jnp.int32))
  widths = shuffle_widths(size)

  def sorted_prefix(width: int):
    def sort(order):
      head = order[:width]
      keys = jnp.where(jnp.arange(width) < count, u[head], 2.0)
      # Stable, as argsort over all B: ties keep index order, as the prefix is in index order.
      return order.at[:width].set(head[jnp.argsort(keys, stable=True)])
    return sort

  choice = jnp.sum(jnp.asarray(widths[:-1]) < count)  # the first width that holds V slots
  return jax.lax.switch(choice, [sorted_prefix(w) for w in widths],
                        in_time_order).astype(jnp.int32)


def _pieces(count: jax.Array, piece: int) -> jax.Array:
  """Pieces of `piece` slots needed to hold `count` slots: ceil(count / piece)."""
  return (count + piece - 1) // piece


def _piece_slots(order: jax.Array, first: jax.Array, piece: int, end: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """The slots at positions first .. first + piece - 1 of `order` ([piece] int32, clamped to
  the last position) and which of those positions lie before `end` ([piece] bool)."""
  position = first + jnp.arange(piece)
  return order[jnp.minimum(position, order.shape[0] - 1)], position < end


def map_valid(fn, data: Any, order: jax.Array, count: jax.Array, piece: int) -> jax.Array:
  """fn over the first `count` slots of `order`, `piece` slots at a time; zeros elsewhere.

  data: pytree of [B, ...] arrays; fn: that pytree with leaves [piece, ...] -> [piece]. Runs
  ceil(count / piece) pieces in a `while_loop`, so the cost follows the valid slots, not B.
  """
  size = order.shape[0]

  def body(loop):
    i, out = loop
    slot, inside = _piece_slots(order, i * piece, piece, count)
    values = fn(jax.tree.map(lambda x: x[slot], data))
    # Positions past `count` write nowhere (index `size` is out of bounds and dropped).
    return i + 1, out.at[jnp.where(inside, slot, size)].set(values, mode="drop")

  out = jnp.zeros((size,), jnp.float32)
  _, out = jax.lax.while_loop(lambda loop: loop[0] < _pieces(count, piece), body,
                              (jnp.zeros((), jnp.int32), out))
  return out


def ppo_update(params: nets.Params, opt_state: Any, optimizer: optax.GradientTransformation,
               networks: nets.Networks, normalizer: nets.Normalizer, obs: jax.Array,
               raw_action: jax.Array, log_prob: jax.Array, rewards: jax.Array, mask: jax.Array,
               key: jax.Array, hp: PPOHyperparams
               ) -> tuple[nets.Params, Any, dict[str, jax.Array]]:
  """One PPO update on an iteration's data (all arrays time-major [H, N, ...]).

  Work proportional to the valid steps V, not to the B = H * N slots: each epoch orders the
  slots valid-first at random and splits the V valid ones into `num_minibatches` minibatches
  of ceil(V / M) slots (M gradient steps per epoch, whatever V). A minibatch runs as
  microbatches of p = B / (M * num_microbatches) slots (at least `min_microbatch_size`, or the
  whole minibatch if smaller), only as many as it needs, in a `while_loop`, and their
  gradients add up to the minibatch's (each divides its sums by the
  minibatch's count): early in training, when episodes end after tens of steps, an update
  costs about V / B of a pass over all slots (in steps of one piece). The critic's
  values before the update are computed the same way, on the valid slots only. Under `vmap`
  over seeds the loops run as many pieces as the seed that needs most.
  """
  horizon, num_envs = mask.shape
  size = horizon * num_envs
  valid = mask > 0
  obs, raw_action, log_prob, rewards = _zero_masked(valid, obs, raw_action, log_prob, rewards)
  norm_obs = nets.normalize(normalizer, obs, hp.normalize_observations)
  time = jnp.broadcast_to(jnp.arange(horizon)[:, None], (horizon, num_envs))
  flat_obs, flat_time = norm_obs.reshape(size, -1), time.reshape(size)
  flat_valid = valid.reshape(size)
  num_valid = jnp.sum(flat_valid.astype(jnp.int32))
  piece, max_pieces = _piece_size(size, hp)

  # Values with the pre-update critic, valid slots only (in time order, pieces of M * p).
  value_fn = lambda d: networks.value.apply(params.value, nets.value_input(*d, horizon))
  in_time_order = valid_first_in_time_order(flat_valid)
  values = map_valid(value_fn, (flat_obs, flat_time), in_time_order, num_valid,
                     piece * hp.num_minibatches).reshape(horizon, num_envs)
  advantages, targets = _advantages(rewards, values, mask, hp)

  flat = Batch(flat_obs, flat_time, raw_action.reshape(size, -1), log_prob.reshape(size),
               advantages.reshape(size), targets.reshape(size), mask.reshape(size))
  update = _Update(optimizer, networks, hp, flat, horizon, num_valid, piece,
                   jax.grad(ppo_loss, has_aux=True),
                   _pieces(num_valid, hp.num_minibatches),  # ceil(V / M) valid slots each
                   {k: jnp.zeros(()) for k in
                    ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")})
  epoch_step = functools.partial(_epoch_step, update, flat_valid, in_time_order)
  (params, opt_state), aux = jax.lax.scan(
      epoch_step, (params, opt_state), jax.random.split(key, hp.update_epochs))
  return params, opt_state, _update_metrics(aux, values, advantages, mask, max_pieces)


def _zero_masked(valid: jax.Array, *arrays: jax.Array) -> tuple[jax.Array, ...]:
  """Each [H, N, ...] array with its masked slots ([H, N] `valid` False) set to 0.

  Masked slots carry no data; zeroing them keeps a nan there from reaching a gradient (the
  gradient of `where` is 0 * d(branch), and 0 * nan = nan)."""
  return tuple(jnp.where(valid[..., None] if x.ndim > valid.ndim else valid, x, 0.0)
               for x in arrays)


def _piece_size(size: int, hp: PPOHyperparams) -> tuple[int, int]:
  """(p, pieces of a full minibatch): a microbatch holds p = ceil(ceil(B / M) /
  num_microbatches) slots, but at least `min_microbatch_size` (or the whole minibatch)."""
  minibatch_slots = -(-size // hp.num_minibatches)
  piece = max(-(-minibatch_slots // max(1, hp.num_microbatches)),  # slots per microbatch
              min(hp.min_microbatch_size, minibatch_slots))
  return piece, -(-minibatch_slots // piece)


def _advantages(rewards: jax.Array, values: jax.Array, mask: jax.Array, hp: PPOHyperparams
                ) -> tuple[jax.Array, jax.Array]:
  """GAE advantages [H, N] (standardized over the valid steps if `normalize_advantages`) and
  value targets [H, N]."""
  advantages, targets = compute_gae(rewards, values, mask, hp.discount, hp.gae_lambda)
  if hp.normalize_advantages:
    adv_mean = _masked_mean(advantages, mask)
    adv_std = jnp.sqrt(_masked_mean((advantages - adv_mean) ** 2, mask))
    advantages = jnp.where(mask > 0, (advantages - adv_mean) / (adv_std + 1e-8), 0.0)
  return advantages, targets


class _Update(NamedTuple):
  """What every minibatch of one `ppo_update` reads (fixed for the whole update)."""

  optimizer: optax.GradientTransformation
  networks: nets.Networks
  hp: PPOHyperparams
  flat: Batch  # leaves [B, ...], the iteration's slots
  horizon: int
  num_valid: jax.Array  # [] int32, V
  piece: int  # p, slots per microbatch
  grad_fn: Any  # grad of `ppo_loss`, with its metrics
  per_minibatch: jax.Array  # [] int32, ceil(V / M) valid slots per minibatch
  zero_aux: dict[str, jax.Array]  # ppo_loss's metrics, zeros


def _minibatch_step(u: _Update, carry: tuple, j: jax.Array) -> tuple[tuple, dict]:
  """Minibatch j of an epoch: the slots at positions [j ceil(V / M), ...) of `order`, its
  gradient summed over microbatches in a `while_loop`, then one optimizer step."""
  params, opt_state, order = carry
  start = j * u.per_minibatch
  count = jnp.clip(u.num_valid - start, 0, u.per_minibatch)
  piece = u.piece

  def micro_step(loop):
    i, grads, aux = loop
    slots, inside = _piece_slots(order, start + i * piece, piece, start + count)
    batch = jax.tree.map(lambda x: x[slots], u.flat)._replace(
        mask=inside.astype(jnp.float32))
    micro_grads, micro_aux = u.grad_fn(params, u.networks, batch, u.horizon, u.hp,
                                       count.astype(jnp.float32))
    return (i + 1, jax.tree.map(jnp.add, grads, micro_grads),
            jax.tree.map(jnp.add, aux, micro_aux))

  zeros = jax.tree.map(jnp.zeros_like, params)
  num_pieces, grads, aux = jax.lax.while_loop(
      lambda loop: loop[0] < _pieces(count, piece), micro_step,
      (jnp.zeros((), jnp.int32), zeros, u.zero_aux))
  updates, opt_state = u.optimizer.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  aux = dict(aux, grad_norm=jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))),
             pieces=num_pieces.astype(jnp.float32))
  return (params, opt_state, order), aux


def _epoch_step(u: _Update, flat_valid: jax.Array, in_time_order: jax.Array, carry: tuple,
                epoch_key: jax.Array) -> tuple[tuple, dict]:
  """One epoch: the slots ordered valid-first at random, then M minibatch steps."""
  params, opt_state = carry
  order = valid_first_order(epoch_key, flat_valid, in_time_order)
  (params, opt_state, _), aux = jax.lax.scan(functools.partial(_minibatch_step, u),
                                             (params, opt_state, order),
                                             jnp.arange(u.hp.num_minibatches))
  return (params, opt_state), aux


def _update_metrics(aux: dict, values: jax.Array, advantages: jax.Array, mask: jax.Array,
                    max_pieces: int) -> dict[str, jax.Array]:
  """The loss metrics averaged over epochs and minibatches, the share of a full pass that
  ran, and the critic's mean value and the advantages' scale on the valid steps."""
  pieces = aux.pop("pieces")
  metrics = jax.tree.map(jnp.mean, aux)
  # Share of a full pass over all B slots that the update ran (1.0 when every slot is valid).
  metrics["work_fraction"] = jnp.mean(pieces) / max_pieces
  metrics["value_mean"] = _masked_mean(values, mask)
  metrics["advantage_std"] = jnp.sqrt(_masked_mean(advantages**2, mask))
  return metrics
