"""The iterative Bradley-Terry reward-model baseline (reward_source = 'reward_model').

The approach Self-Play Preference Optimization (SPO; Swamy et al. 2024, "A Minimaximalist
Approach to Reinforcement Learning from Human Feedback") is compared against: learn a reward
r_theta(s, a) from the teacher's pairwise labels, then run ordinary RL on it (Christiano et
al. 2017, "Deep RL from Human Preferences"). Same rollout, same PPO, same networks, same
evaluation as SPO; only the reward source differs. Each iteration, inside one jit:

  1. draw Q = rm_queries_per_iteration pairs (i, j), i != j, uniformly from the batch of N;
  2. ask the teacher p = compare(s_i, s_j) and draw one label y ~ Bernoulli(p) per query (as a
     rater gives); pairs on which the teacher abstains are counted as queries, not as labels,
     and are not stored;
  3. measure the current model's pair accuracy on the new pairs (held out: not yet trained on);
  4. push them into a bounded FIFO label buffer;
  5. fit r_theta by the Bradley-Terry loss, rm_train_steps Adam steps on minibatches of
     rm_batch_size pairs drawn from the buffer,
       R_hat(xi) = sum_t m_t r_theta(s_t, a_t),
       loss      = -[y log sigma(R_hat_a - R_hat_b) + (1 - y) log sigma(R_hat_b - R_hat_a)]
                   + lambda mean_t r_theta(s_t, a_t)^2      (output penalty, see below);
     with an ensemble (rm_ensemble_size) each member has its own init and its own minibatches,
     and the reward is the ensemble mean;
  6. give PPO the per-step reward r_theta(s_t, a_t) on the current batch, rescaled (below).

Choices (and why):
- Reward input: (normalized observation, env action a = tanh(raw_action)). The bounded env
  action is what the environment and the teacher see; the pre-tanh action is unbounded and
  carries policy noise the preference cannot depend on. Discrete actions (`discrete_actions`,
  e.g. matrix_game) enter as the one-hot action [K], which is what the env receives.
- Observation normalization: the reward model keeps its OWN running mean/variance of raw
  observations (`nets.Normalizer`, updated with every batch), independent of the policy's
  normalizer and of `config.normalize_observations`. The buffer stores RAW observations and
  they are normalized when read, so every pair, old or new, goes through the same current
  statistics: storing observations normalized at push time would mix pairs normalized by
  different, drifting statistics.
- Buffer layout: each entry holds both trajectories, inputs [B, 2, H, D + A] float32, masks
  [B, 2, H], label [B] = y (1 = first preferred) and a valid flag [B]. Memory per pair is
  2 H (D + A + 1) * 4 bytes: for ant (D = 27, A = 8) at H = 1000, 288 kB, so the default 512
  pairs take 147 MB of accelerator memory. (Storing trajectories once and pairs as indices
  saves little: with Q << N most trajectories appear in one pair.)
- Reward rescaling for PPO: r / sqrt(mean over valid steps of r^2), zero on masked steps
  ('scale'). The Bradley-Terry return is identified only up to a positive scale (with
  near-deterministic labels the fitted scale keeps growing) and, when episode lengths differ,
  NOT up to an additive per-step constant: a constant c adds c T to a trajectory of T steps,
  and in survival tasks ("longer is better") that constant is the whole signal. Dividing by
  the root mean square keeps every return ordering and gives PPO rewards of order one
  whatever the model's drifting scale. Centring ('standardize': subtract the mean, divide by
  the std) erases the survival signal: on `balance` (preset, 60k steps, 2 seeds) it reached
  an eval return of 85-96 where 'scale' reached 192-200. 'none' passes r_theta through.
- Output penalty: where lengths are equal the constant is not identified at all, and an
  arbitrary offset (whatever the network drifts to) then dominates the rescaled reward and
  the critic's targets: on `point_reach` (32 envs, 30 iterations, 4 seeds) 'scale' alone
  reached -17 to -24 where 'standardize' reached -8 to -11. A small penalty
  lambda * mean_valid r^2 (`output_penalty`, default 0.01) added to the loss pins the
  unidentified offset near 0 and leaves the constant free to grow where the labels ask for
  it: with it, 'scale' reaches -8 to -11 on point_reach and 150-200 on balance (3 seeds
  each; the point_reach config is the one in tests/test_reward_model.py).
- Pairs are drawn with replacement across queries (the same pair may be asked twice in one
  iteration, as two independent rater labels); within a query i != j.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from spo_jax import networks as nets
from spo_jax.fifo import fifo_write
from spo_jax.losses import preference_nll
from spo_jax.packed_sums import sums_loss_and_grad
from spo_jax.rollout import RolloutResult
from spo_jax.teachers import EnvSpec, TeacherProtocol, ask, invalid_answer

REWARD_NORMALIZATIONS = ("scale", "standardize", "none")


class LabelBuffer(NamedTuple):
  """FIFO of labelled pairs; slot k holds one pair (a = inputs[k, 0], b = inputs[k, 1])."""

  inputs: jax.Array  # [B, 2, H, D + A] float32: raw observation ++ env action per step
  mask: jax.Array  # [B, 2, H] float32: 1 on valid steps
  label: jax.Array  # [B] float32: y = 1 when a was preferred, 0 when b was
  valid: jax.Array  # [B] bool: the slot holds a pair
  count: jax.Array  # [], int32: pairs pushed so far
  pointer: jax.Array  # [], int32: next slot to overwrite


class RewardModelState(NamedTuple):
  """Everything the reward model carries between iterations (and into the checkpoint)."""

  params: Any  # reward-network parameters, leaves with leading axis E (ensemble)
  opt_state: Any  # Adam state, leaves with leading axis E
  normalizer: nets.Normalizer  # running statistics of raw observations (the model's own)
  buffer: LabelBuffer


# -------------------------------------------------------------------------------------
# Label buffer
# -------------------------------------------------------------------------------------

def buffer_init(capacity: int, horizon: int, feature_size: int) -> LabelBuffer:
  """An empty buffer of `capacity` pairs of `horizon` steps with `feature_size` inputs."""
  return LabelBuffer(
      inputs=jnp.zeros((capacity, 2, horizon, feature_size), jnp.float32),
      mask=jnp.zeros((capacity, 2, horizon), jnp.float32),
      label=jnp.zeros((capacity,), jnp.float32),
      valid=jnp.zeros((capacity,), bool),
      count=jnp.zeros((), jnp.int32),
      pointer=jnp.zeros((), jnp.int32))


def buffer_push(buffer: LabelBuffer, inputs: jax.Array, mask: jax.Array, label: jax.Array,
                keep: jax.Array) -> LabelBuffer:
  """Append the pairs with `keep` set, in order, overwriting the oldest (FIFO).

  inputs: [Q, 2, H, F]; mask: [Q, 2, H]; label: [Q]; keep: [Q] bool. Kept pairs are written
  contiguously from `pointer` (pairs not kept leave no gap); when more than B are kept, only
  the last B are written, so no slot is written twice in one push.
  """
  stores = (buffer.inputs, buffer.mask, buffer.label, buffer.valid)
  # `keep` as the valid flag: only kept pairs are written, and a written slot stays valid.
  out = fifo_write(stores, buffer.pointer, (inputs, mask, label, keep), keep)
  new_inputs, new_mask, new_label, valid = out.stores
  return LabelBuffer(inputs=new_inputs, mask=new_mask, label=new_label, valid=valid,
                     count=buffer.count + out.num_kept, pointer=out.pointer)


def buffer_fill(buffer: LabelBuffer) -> jax.Array:
  """[] float32: fraction of the buffer's slots that hold a pair."""
  return jnp.mean(buffer.valid.astype(jnp.float32))


# -------------------------------------------------------------------------------------
# Bradley-Terry
# -------------------------------------------------------------------------------------

def predicted_returns(step_rewards: jax.Array, mask: jax.Array) -> jax.Array:
  """R_hat = sum_t m_t r_t over the last axis: step_rewards, mask [..., H] -> [...].

  `where`, not multiplication: a masked step must not leak inf/nan into the sum.
  """
  return jnp.sum(jnp.where(mask > 0, step_rewards, 0.0), axis=-1)


def bradley_terry_loss(return_a: jax.Array, return_b: jax.Array,
                       label: jax.Array) -> jax.Array:
  """Per-pair negative log-likelihood of the Bradley-Terry model (Bradley & Terry 1952).

  return_a, return_b, label: [...]; label y in [0, 1] is P(a preferred). With d = R_a - R_b,
    loss = -[y log sigma(d) + (1 - y) log sigma(-d)]      (log_sigmoid: stable for large |d|).
  """
  return preference_nll(return_a - return_b, label)


def pair_accuracy(return_a: jax.Array, return_b: jax.Array, label: jax.Array,
                  weight: jax.Array) -> jax.Array:
  """Weighted fraction of pairs the model orders as the label does.

  A pair counts y [R_a > R_b] + (1 - y) [R_a < R_b] + 1/2 [R_a = R_b]; weight [...] selects
  pairs. With no weight at all, 1/2 (chance: no information).
  """
  correct = jnp.where(return_a > return_b, label,
                      jnp.where(return_a < return_b, 1.0 - label, 0.5))
  total = jnp.sum(weight)
  return jnp.where(total > 0, jnp.sum(weight * correct) / jnp.maximum(total, 1e-12), 0.5)


def pearson(x: jax.Array, y: jax.Array) -> jax.Array:
  """Pearson correlation of x, y [N]; 0 where either has (numerically) zero variance."""
  x = x - jnp.mean(x)
  y = y - jnp.mean(y)
  sxx, syy = jnp.sum(x * x), jnp.sum(y * y)
  ok = (sxx > 1e-12) & (syy > 1e-12)
  return jnp.where(ok, jnp.sum(x * y) / jnp.sqrt(jnp.where(ok, sxx * syy, 1.0)), 0.0)


def normalize_rewards(rewards: jax.Array, mask: jax.Array, mode: str = "scale") -> jax.Array:
  """Rescale per-step rewards [H, N] over the valid steps (mask [H, N]); 0 on masked steps.

  'scale':       r / sqrt(mean_valid r^2)   keeps every return ordering (see module doc)
  'standardize': (r - mean_valid r) / std_valid r
  'none':        r
  """
  valid = mask > 0
  count = jnp.maximum(jnp.sum(valid), 1)
  r = jnp.where(valid, rewards, 0.0)
  if mode == "scale":
    r = r / jnp.sqrt(jnp.sum(r * r) / count + 1e-8)
  elif mode == "standardize":
    mean = jnp.sum(r) / count
    centred = jnp.where(valid, r - mean, 0.0)
    r = centred / jnp.sqrt(jnp.sum(centred * centred) / count + 1e-8)
  elif mode != "none":
    raise ValueError(f"reward normalization {mode!r}: must be one of {REWARD_NORMALIZATIONS}")
  return jnp.where(valid, r, 0.0)


# -------------------------------------------------------------------------------------
# The reward source
# -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RewardModelSource:
  """Reward source: PPO on an MLP reward r_theta(s, a) fit to the teacher's labels."""

  teacher: TeacherProtocol
  observation_size: int
  action_size: int
  horizon: int
  queries_per_iteration: int = 64
  buffer_size: int = 512
  hidden_sizes: tuple[int, ...] = (64, 64)
  activation: str = "tanh"
  ensemble_size: int = 1
  learning_rate: float = 3e-4
  train_steps: int = 50
  batch_size: int = 32
  reward_normalization: str = "scale"
  output_penalty: float = 0.01
  discrete_actions: bool = False  # raw actions are one-hot env actions, not pre-tanh
  uses_teacher = True
  segment_length = 0  # the model is fit to labels of whole episodes

  def __post_init__(self):
    if self.reward_normalization not in REWARD_NORMALIZATIONS:
      raise ValueError(f"reward_normalization = {self.reward_normalization!r} is invalid: must "
                       f"be one of {list(REWARD_NORMALIZATIONS)}")
    if not self.output_penalty >= 0.0:
      raise ValueError(f"output_penalty = {self.output_penalty!r} is invalid: must be >= 0")

  @classmethod
  def from_config(cls, config, teacher: TeacherProtocol, spec: EnvSpec) -> RewardModelSource:
    return cls(teacher, spec.observation_size, spec.action_size, config.episode_length,
               queries_per_iteration=config.rm_queries_per_iteration,
               buffer_size=config.rm_buffer_size, hidden_sizes=tuple(config.rm_hidden_sizes),
               activation=config.activation, ensemble_size=config.rm_ensemble_size,
               learning_rate=config.rm_learning_rate, train_steps=config.rm_train_steps,
               batch_size=config.rm_batch_size,
               # Not Config fields (yet): the module's defaults unless a config carries them.
               reward_normalization=config.rm_reward_normalization,
               output_penalty=config.rm_output_penalty,
               discrete_actions=spec.discrete_actions)

  # --- pieces ------------------------------------------------------------------------

  def env_action(self, raw_action: jax.Array) -> jax.Array:
    """The action the env received: tanh(u), or the one-hot action itself (discrete)."""
    return raw_action if self.discrete_actions else jnp.tanh(raw_action)

  @property
  def feature_size(self) -> int:
    return self.observation_size + self.action_size

  @property
  def network(self) -> nets.MLP:
    return nets.MLP(self.hidden_sizes, 1, self.activation)

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.adam(self.learning_rate)

  def step_rewards(self, params: Any, normalizer: nets.Normalizer,
                   inputs: jax.Array) -> jax.Array:
    """r_theta for ONE member: inputs [..., D + A] (raw obs ++ action) -> [...]."""
    obs = nets.normalize(normalizer, inputs[..., :self.observation_size])
    x = jnp.concatenate([obs, inputs[..., self.observation_size:]], axis=-1)
    return self.network.apply(params, x)[..., 0]

  def ensemble_rewards(self, params: Any, normalizer: nets.Normalizer,
                       inputs: jax.Array) -> jax.Array:
    """Ensemble-mean r_theta: inputs [..., D + A] -> [...]."""
    per_member = jax.vmap(self.step_rewards, (0, None, None))(params, normalizer, inputs)
    return jnp.mean(per_member, axis=0)

  def init(self, key: jax.Array, summary_template: Any) -> RewardModelState:
    del summary_template  # the model reads steps, not teacher summaries
    keys = jax.random.split(key, self.ensemble_size)
    dummy = jnp.zeros((1, self.feature_size))
    # One member after another: vmapped, the orthogonal initialisers become batched QR calls,
    # which can deadlock jaxlib's CPU thread pool (setup.init_over_seeds).
    params = jax.lax.map(lambda k: self.network.init(k, dummy), keys)
    return RewardModelState(params, jax.vmap(self.optimizer.init)(params),
                            nets.normalizer_init(self.observation_size),
                            buffer_init(self.buffer_size, self.horizon, self.feature_size))

  def query(self, result: RolloutResult, key: jax.Array):
    """Draw Q pairs of the batch and label them.

    Returns (inputs [Q, 2, H, F], mask [Q, 2, H], label [Q] in {0, 1}, answered [Q] bool,
    the number [] of answers that were not probabilities).
    """
    traj = result.trajectory
    num = traj.mask.shape[1]
    k_first, k_offset, k_pref, k_label = jax.random.split(key, 4)
    q = self.queries_per_iteration
    first = jax.random.randint(k_first, (q,), 0, num)
    second = (first + jax.random.randint(k_offset, (q,), 1, num)) % num  # uniform over j != i

    def pair(i, j, index):
      a = jax.tree.map(lambda x: x[i], result.summaries)
      b = jax.tree.map(lambda x: x[j], result.summaries)
      return ask(self.teacher, a, b, k_pref, index)

    p, abstain = jax.vmap(pair)(first, second, jnp.arange(q))
    label = (jax.random.uniform(k_label, (q,)) < p).astype(jnp.float32)
    # Time-major [H, N, .] -> trajectory-major [N, H, .], then gather both sides of each pair.
    features = jnp.concatenate([traj.obs, self.env_action(traj.raw_action)], axis=-1)
    features = jnp.swapaxes(features, 0, 1)
    mask = jnp.swapaxes(traj.mask, 0, 1)
    inputs = jnp.stack([features[first], features[second]], axis=1)
    pair_mask = jnp.stack([mask[first], mask[second]], axis=1)
    return inputs, pair_mask, label, ~abstain, jnp.sum(invalid_answer(p) & ~abstain)

  def pair_returns(self, params: Any, normalizer: nets.Normalizer, inputs: jax.Array,
                   mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Ensemble-mean (R_hat_a, R_hat_b) [P] for pairs inputs [P, 2, H, F], mask [P, 2, H]."""
    returns = predicted_returns(self.ensemble_rewards(params, normalizer, inputs), mask)
    return returns[:, 0], returns[:, 1]

  def fit(self, state: RewardModelState, key: jax.Array) -> tuple[RewardModelState, jax.Array]:
    """`train_steps` Adam steps of the Bradley-Terry loss on buffer minibatches.

    Each member draws its own minibatch of `batch_size` valid slots (with replacement); its
    loss is the mean Bradley-Terry loss plus `output_penalty` times the mean of r^2 over the
    minibatch's valid steps, evaluated on those steps only (`packed_sums`). Returns the new
    state and the loss (penalty included) averaged over steps and members.
    """
    buffer, normalizer, optimizer = state.buffer, state.normalizer, self.optimizer
    has_data = jnp.any(buffer.valid)
    logits = jnp.where(buffer.valid, 0.0, -jnp.inf)

    def member_loss_and_grad(params, key):
      # Loss and gradient over the minibatch's valid steps only (packed_sums): the cost
      # follows the pairs' lengths, not the horizon H.
      index = jax.random.categorical(key, logits, shape=(self.batch_size,))
      weight = buffer.valid[index].astype(jnp.float32)  # [b]
      mask = buffer.mask[index] * weight[:, None, None]  # [b, 2, H]: no steps of empty slots
      label = buffer.label[index]
      num_steps = jnp.maximum(jnp.sum(mask), 1.0)

      def objective(sums, squares):  # sums, squares [2b]: R_hat and sum of r^2 per side
        returns = sums.reshape(self.batch_size, 2)
        losses = bradley_terry_loss(returns[:, 0], returns[:, 1], label)
        loss = jnp.sum(weight * losses) / jnp.maximum(jnp.sum(weight), 1.0)
        return loss + self.output_penalty * jnp.sum(squares) / num_steps

      inputs = buffer.inputs[index]
      return sums_loss_and_grad(
          lambda p, x: self.step_rewards(p, normalizer, x), params,
          inputs.reshape((2 * self.batch_size,) + inputs.shape[2:]),
          mask.reshape(2 * self.batch_size, -1), objective)

    def step(carry, key):
      params, opt_state = carry
      keys = jax.random.split(key, self.ensemble_size)
      loss, grads = jax.vmap(member_loss_and_grad)(params, keys)
      updates, new_opt_state = jax.vmap(optimizer.update)(grads, opt_state, params)
      new_params = optax.apply_updates(params, updates)
      # An empty buffer (every query so far abstained) leaves the model as it is.
      keep = lambda new, old: jnp.where(has_data, new, old)
      return (jax.tree.map(keep, new_params, params),
              jax.tree.map(keep, new_opt_state, opt_state)), jnp.mean(loss)

    if self.train_steps == 0:
      return state, jnp.zeros(())
    (params, opt_state), losses = jax.lax.scan(
        step, (state.params, state.opt_state), jax.random.split(key, self.train_steps))
    return state._replace(params=params, opt_state=opt_state), jnp.mean(losses)

  # --- the seam ------------------------------------------------------------------------

  def rewards(self, state: RewardModelState, result: RolloutResult, key: jax.Array):
    """Label Q new pairs, fit the model, and return PPO's rewards [H, N] on this batch."""
    traj = result.trajectory
    k_query, k_fit = jax.random.split(key)
    normalizer = nets.normalizer_update(state.normalizer, traj.obs, traj.mask)
    state = state._replace(normalizer=normalizer)

    inputs, pair_mask, label, answered, invalid = self.query(result, k_query)
    ra, rb = self.pair_returns(state.params, normalizer, inputs, pair_mask)
    heldout = pair_accuracy(ra, rb, label, answered.astype(jnp.float32))
    state = state._replace(buffer=buffer_push(state.buffer, inputs, pair_mask, label, answered))
    state, loss = self.fit(state, k_fit)

    features = jnp.concatenate([traj.obs, self.env_action(traj.raw_action)], axis=-1)
    learned = self.ensemble_rewards(state.params, state.normalizer, features)  # [H, N]
    learned = jnp.where(traj.mask > 0, learned, 0.0)
    rewards = normalize_rewards(learned, traj.mask, self.reward_normalization)
    metrics = {
        "num_queries": jnp.asarray(self.queries_per_iteration, jnp.int32),
        "num_labels": jnp.sum(answered.astype(jnp.int32)),
        "teacher_invalid": invalid.astype(jnp.int32),
        "rm_loss": loss,
        "rm_heldout_accuracy": heldout,
        "rm_return_correlation": pearson(predicted_returns(learned.T, traj.mask.T),
                                         jnp.sum(traj.reward, axis=0)),
        "rm_buffer_fill": buffer_fill(state.buffer),
    }
    return rewards, state, metrics
