"""Tests for spo_jax/ppo.py: masked GAE and the PPO update on masked, time-major batches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spo_jax import networks as nets
from spo_jax import ppo
from spo_jax.ppo import (
    Batch,
    PPOHyperparams,
    compute_gae,
    episode_ends,
    make_optimizer,
    ppo_loss,
    ppo_update,
)

KEY = jax.random.PRNGKey(0)
_gae = jax.jit(compute_gae)


def _prefix_mask(lengths, horizon):
  return (np.arange(horizon)[:, None] < np.asarray(lengths)[None, :]).astype(np.float32)


def _gae_reference(rewards, values, lengths, discount, gae_lambda):
  """GAE episode by episode, step by step; nothing bootstrapped past an episode's last step."""
  horizon, num = rewards.shape
  advantages = np.zeros((horizon, num))
  targets = np.zeros((horizon, num))
  for i in range(num):
    next_advantage = 0.0
    for t in reversed(range(lengths[i])):
      next_value = values[t + 1, i] if t + 1 < lengths[i] else 0.0
      delta = rewards[t, i] + discount * next_value - values[t, i]
      next_advantage = delta + discount * gae_lambda * next_advantage
      advantages[t, i] = next_advantage
      targets[t, i] = next_advantage + values[t, i]
  return advantages, targets


def test_episode_ends_hand_example():
  # Episode lengths 2, 1, 3 in a horizon of 3: each episode ends on step length - 1.
  mask = jnp.array([[1.0, 1.0, 1.0],
                    [1.0, 0.0, 1.0],
                    [0.0, 0.0, 1.0]])
  np.testing.assert_array_equal(episode_ends(mask), [[0.0, 1.0, 0.0],
                                                     [1.0, 0.0, 0.0],
                                                     [0.0, 0.0, 1.0]])


def test_gae_hand_example():
  # gamma = 0.9, lambda = 0.5, gamma lambda = 0.45.
  # Column 0 lasts 2 steps; its step-2 reward 7 and value 9 are garbage and must be ignored:
  #   t=1 (last): delta = 2 - 1.0 = 1.0                      A_1 = 1.0
  #   t=0:        delta = 1 + 0.9 * 1.0 - 0.5 = 1.4          A_0 = 1.4 + 0.45 * 1.0 = 1.85
  #   targets A + V = [1.85 + 0.5, 1.0 + 1.0, 0] = [2.35, 2.0, 0]
  # Column 1 runs the full horizon with V = 0; nothing is bootstrapped past t = 2:
  #   delta = r = [1, 1, 1];  A_2 = 1,  A_1 = 1 + 0.45 * 1 = 1.45,  A_0 = 1 + 0.45 * 1.45 = 1.6525
  rewards = jnp.array([[1.0, 1.0], [2.0, 1.0], [7.0, 1.0]])
  values = jnp.array([[0.5, 0.0], [1.0, 0.0], [9.0, 0.0]])
  mask = jnp.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
  advantages, targets = _gae(rewards, values, mask, 0.9, 0.5)
  np.testing.assert_allclose(advantages, [[1.85, 1.6525], [1.0, 1.45], [0.0, 1.0]], rtol=1e-6)
  np.testing.assert_allclose(targets, [[2.35, 1.6525], [2.0, 1.45], [0.0, 1.0]], rtol=1e-6)


@pytest.mark.parametrize("discount", [0.9, 0.99, 1.0])
@pytest.mark.parametrize("gae_lambda", [0.0, 0.95, 1.0])
def test_gae_matches_loop_reference(discount, gae_lambda):
  horizon = 9
  rng = np.random.default_rng(0)
  lengths = np.concatenate([[horizon, 1, horizon, 1], rng.integers(1, horizon + 1, size=6)])
  # Rewards and values are random on masked steps too: whatever is there must not matter.
  rewards = rng.normal(size=(horizon, 10)).astype(np.float32)
  values = rng.normal(size=(horizon, 10)).astype(np.float32)
  mask = _prefix_mask(lengths, horizon)
  advantages, targets = _gae(rewards, values, mask, discount, gae_lambda)
  expected_advantages, expected_targets = _gae_reference(rewards, values, lengths, discount,
                                                         gae_lambda)
  np.testing.assert_allclose(advantages, expected_advantages, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(targets, expected_targets, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(advantages)[mask == 0], 0.0)


def test_gae_refuses_misshaped_inputs():
  # values one step short of the rewards (a common off-by-one) is refused at trace time.
  with pytest.raises(AssertionError):
    _gae(jnp.zeros((3, 2)), jnp.zeros((2, 2)), jnp.ones((3, 2)), 0.9, 0.5)


def test_gae_ignores_nan_on_masked_steps():
  # PPO takes rewards from any reward source; what sits after an episode's end must not
  # leak into it, not even nan (nan * 0 = nan, so masking must use `where`).
  # Same column as in the hand example: A = [1.85, 1.0, 0] whatever follows step 1.
  rewards = jnp.array([[1.0], [2.0], [jnp.nan]])
  values = jnp.array([[0.5], [1.0], [jnp.nan]])
  mask = jnp.array([[1.0], [1.0], [0.0]])
  advantages, targets = _gae(rewards, values, mask, 0.9, 0.5)
  np.testing.assert_allclose(advantages[:, 0], [1.85, 1.0, 0.0], rtol=1e-6)
  np.testing.assert_allclose(targets[:, 0], [2.35, 2.0, 0.0], rtol=1e-6)


def test_gae_lambda_zero_is_the_one_step_td_error():
  # lambda = 0: A_t = r_t + gamma V_{t+1} - V_t inside the episode, r_t - V_t at its end.
  rewards = jnp.array([[1.0], [2.0], [3.0]])
  values = jnp.array([[0.5], [0.25], [4.0]])
  advantages, _ = _gae(rewards, values, jnp.ones((3, 1)), 0.5, 0.0)
  # [1 + 0.5 * 0.25 - 0.5,  2 + 0.5 * 4 - 0.25,  3 - 4] = [0.625, 3.75, -1]
  np.testing.assert_allclose(advantages[:, 0], [0.625, 3.75, -1.0])


def test_ppo_update_ignores_masked_steps():
  horizon, num_envs, obs_size, action_size = 4, 4, 3, 2
  lengths = [4, 1, 2, 3]
  mask = jnp.asarray(_prefix_mask(lengths, horizon))
  networks = nets.make_networks(obs_size, action_size, (8,), (8,))
  params = nets.init_params(networks, KEY)
  optimizer = make_optimizer(3e-3, 0.5)
  opt_state = optimizer.init(params)
  normalizer = nets.Normalizer(jnp.array([0.1, -0.2, 0.3]), jnp.array([1.5, 0.5, 2.0]),
                               jnp.array(10.0))
  hp = PPOHyperparams(discount=0.99, gae_lambda=0.95, clip_epsilon=0.2, value_coef=0.5,
                      entropy_coef=0.01, normalize_advantages=True, update_epochs=2,
                      num_minibatches=2, normalize_observations=True)

  @jax.jit
  def update(obs, raw_action, log_prob, rewards):
    return ppo_update(params, opt_state, optimizer, networks, normalizer, obs, raw_action,
                      log_prob, rewards, mask, KEY, hp)

  rng = np.random.default_rng(0)
  valid = np.asarray(mask) > 0
  data = [rng.normal(size=(horizon, num_envs, obs_size)),
          rng.normal(size=(horizon, num_envs, action_size)),
          rng.normal(size=(horizon, num_envs)) - 2.0,
          rng.normal(size=(horizon, num_envs))]

  def with_garbage(scale):
    """The same valid steps; large, different, finite values on the masked ones."""
    out = []
    for x in data:
      garbage = scale * rng.normal(size=x.shape)
      keep = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
      out.append(jnp.asarray(np.where(keep, x, garbage), jnp.float32))
    return out

  params_a, _, metrics_a = update(*with_garbage(10.0))
  params_b, _, metrics_b = update(*with_garbage(100.0))
  # The update does something...
  changed = jax.tree.map(lambda new, old: bool(jnp.any(new != old)), params_a, params)
  assert all(jax.tree.leaves(changed))
  # ...and what sits in the masked slots changes nothing, bit for bit.
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
  jax.tree.map(np.testing.assert_array_equal, metrics_a, metrics_b)
  assert all(np.isfinite(float(v)) for v in metrics_a.values())


def test_ppo_loss_hand_example():
  """The clipped surrogate, value loss and entropy bonus on five valid samples and one masked
  one, with every number worked out by hand (not by calling `ppo_loss` again).

  A one-layer categorical policy over K = 2 actions whose logits are obs[:2] and a one-layer
  critic whose value is obs[2]; old log-probs are chosen so that the ratio
  r = pi_new / pi_old takes the listed values. clip_epsilon = 0.2: the clip range [0.8, 1.2].

    sample  logits     action  pi_new  r    A    r A   clip(r) A  min    V    target  (V-R)^2
    1       (0, 0)     0       1/2     1.1  +3   3.3   3.3        3.3    0.5  1.5     1
    2       (0, 0)     1       1/2     1.5  +1   1.5   1.2        1.2    0    2       4
    3       (ln 3, 0)  0       3/4     0.5  -1  -0.5  -0.8       -0.8    1    1       0
    4       (ln 3, 0)  1       1/4     1.5  -2  -3.0  -2.4       -3.0   -1    0       1
    5       (0, 0)     0       1/2     0.5  +1   0.5   0.8        0.5    2   -1       9
    6       masked: large garbage everywhere, must count for nothing

  Sample 1 lies inside the clip range; 2 is clipped above with A > 0 (the gain is capped);
  3 is clipped below with A < 0 (the loss is kept at its worse, clipped value); 4 and 5 lie
  outside but min() keeps the unclipped, more pessimistic term.
    policy loss = -mean(min) = -(3.3 + 1.2 - 0.8 - 3.0 + 0.5) / 5 = -1.2 / 5 = -0.24
    value loss  = 0.5 * mean((V - target)^2) = 0.5 * (1 + 4 + 0 + 1 + 9) / 5 = 0.5 * 3 = 1.5
                  (no value clipping in ppo.py: the plain squared error)
    entropy: H(1/2, 1/2) = ln 2 = 0.693147 (samples 1, 2, 5);
             H(3/4, 1/4) = 0.75 ln(4/3) + 0.25 ln 4 = 0.215762 + 0.346574 = 0.562335 (3, 4);
             mean = (3 * 0.693147 + 2 * 0.562335) / 5 = 3.204113 / 5 = 0.640823
    loss = policy + 0.5 value - 0.1 entropy = -0.24 + 0.75 - 0.0640823 = 0.4459177
    approx_kl = mean((r - 1) - ln r): r = 1.1 gives 0.1 - 0.0953102 = 0.0046898,
                1.5 gives 0.5 - 0.4054651 = 0.0945349, 0.5 gives -0.5 + 0.6931472 = 0.1931472;
                (0.0046898 + 2 * 0.0945349 + 2 * 0.1931472) / 5 = 0.5800540 / 5 = 0.1160108
    clip_fraction = 4 / 5 = 0.8 (all but sample 1 have |r - 1| > 0.2)
  Given count = 10 (a microbatch of a 10-slot minibatch), every term halves.
  """
  networks = nets.make_networks(3, 2, (), (), discrete=True)
  params = nets.Params(
      policy={"params": {"MLP_0": {"Dense_0": {
          "kernel": jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), "bias": jnp.zeros(2)}}}},
      value={"params": {"MLP_0": {"Dense_0": {
          "kernel": jnp.array([[0.0], [0.0], [1.0], [0.0]]), "bias": jnp.zeros(1)}}}})
  ln3 = np.log(3.0)
  logits = np.array([[0, 0], [0, 0], [ln3, 0], [ln3, 0], [0, 0], [5, -5]])
  values = np.array([0.5, 0.0, 1.0, -1.0, 2.0, 0.0])
  actions = np.eye(2)[[0, 1, 0, 1, 0, 0]]
  pi_new = np.array([1 / 2, 1 / 2, 3 / 4, 1 / 4, 1 / 2, 1.0])
  ratio = np.array([1.1, 1.5, 0.5, 1.5, 0.5, 1.0])
  batch = Batch(
      obs=jnp.asarray(np.concatenate([logits, values[:, None]], axis=1), jnp.float32),
      time=jnp.zeros(6, jnp.int32),
      raw_action=jnp.asarray(actions, jnp.float32),
      # log pi_old = log pi_new - log r; the masked slot's is far off (ratio e^50).
      log_prob=jnp.asarray(np.append(np.log(pi_new[:5] / ratio[:5]), -50.0), jnp.float32),
      advantage=jnp.array([3.0, 1.0, -1.0, -2.0, 1.0, 100.0]),
      target=jnp.array([1.5, 2.0, 1.0, 0.0, -1.0, 100.0]),
      mask=jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0]))
  # Only clip_epsilon, value_coef and entropy_coef enter the loss.
  hp = PPOHyperparams(discount=0.99, gae_lambda=0.95, clip_epsilon=0.2, value_coef=0.5,
                      entropy_coef=0.1, normalize_advantages=False, update_epochs=1,
                      num_minibatches=1, normalize_observations=False)
  loss_fn = jax.jit(ppo_loss, static_argnums=(1, 3, 4))
  expected = {"policy_loss": -0.24, "value_loss": 1.5, "entropy": 0.640823,
              "approx_kl": 0.1160108, "clip_fraction": 0.8}
  for count, scale in ((None, 1.0), (jnp.asarray(10.0), 0.5)):
    loss, aux = loss_fn(params, networks, batch, 1, hp, count)
    np.testing.assert_allclose(loss, scale * 0.4459177, rtol=1e-5)
    for name, value in expected.items():
      np.testing.assert_allclose(aux[name], scale * value, rtol=1e-5, err_msg=name)


# --- The update's cost follows the valid steps -------------------------------------------

def _update_setup(lengths, horizon, seed=0):
  """Networks, optimizer and data for a PPO update on episodes of the given lengths."""
  obs_size, action_size = 3, 2
  mask = jnp.asarray(_prefix_mask(lengths, horizon))
  networks = nets.make_networks(obs_size, action_size, (8,), (8,))
  params = nets.init_params(networks, KEY)
  optimizer = make_optimizer(3e-3, 0.5)
  normalizer = nets.normalizer_init(obs_size)
  rng = np.random.default_rng(seed)
  num_envs = len(lengths)
  data = (jnp.asarray(rng.normal(size=(horizon, num_envs, obs_size)), jnp.float32),
          jnp.asarray(rng.normal(size=(horizon, num_envs, action_size)), jnp.float32),
          jnp.asarray(rng.normal(size=(horizon, num_envs)) - 2.0, jnp.float32),
          jnp.asarray(rng.normal(size=(horizon, num_envs)), jnp.float32))
  return networks, params, optimizer, normalizer, mask, data


def _hp(**changes):
  base = PPOHyperparams(discount=0.99, gae_lambda=0.95, clip_epsilon=0.2, value_coef=0.5,
                        entropy_coef=0.01, normalize_advantages=True, update_epochs=2,
                        num_minibatches=2, normalize_observations=False,
                        min_microbatch_size=1)  # pieces of a few slots: these tiny batches
  return base._replace(**changes)


def _run_update(setup, hp, key=KEY):
  networks, params, optimizer, normalizer, mask, data = setup
  fn = jax.jit(lambda *d: ppo_update(params, optimizer.init(params), optimizer, networks,
                                     normalizer, *d, mask, key, hp))
  return fn(*data)


def test_microbatches_add_up_to_the_whole_minibatch():
  """Splitting each minibatch into 1, 2, 3 or 5 pieces gives the same update (same key, hence
  the same minibatches): each piece divides its sums by the whole minibatch's count."""
  setup = _update_setup([9, 1, 5, 7, 2, 9], horizon=9)  # 33 valid of 54 slots
  params_1, _, metrics_1 = _run_update(setup, _hp(num_microbatches=1))
  for pieces in (2, 3, 5):
    params_k, _, metrics_k = _run_update(setup, _hp(num_microbatches=pieces))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                 params_1, params_k)
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm"):
      np.testing.assert_allclose(metrics_k[name], metrics_1[name], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize(("lengths", "minibatches", "pieces", "expected"), [
    # work_fraction = pieces run / pieces a minibatch has, averaged over minibatches and epochs.
    # 16 slots, V = 10 valid, M = 2: 5 valid per minibatch; a piece holds
    # ceil(16 / (2 * 4)) = 2 slots, so a minibatch runs ceil(5 / 2) = 3 of its 4 pieces: 0.75.
    ([4, 1, 2, 3], 2, 4, 3 / 4),
    # Every slot valid: 8 per minibatch, all 4 pieces run.
    ([4, 4, 4, 4], 2, 4, 1.0),
    # V = 4 (episodes of one step), M = 1, 8 pieces of 2 slots: 2 of 8 pieces run.
    ([1, 1, 1, 1], 1, 8, 2 / 8),
    # One piece per minibatch: always the full pass.
    ([1, 1, 1, 1], 2, 1, 1.0),
])
def test_the_update_runs_only_the_pieces_holding_valid_steps(lengths, minibatches, pieces,
                                                             expected):
  setup = _update_setup(lengths, horizon=4)
  _, _, metrics = _run_update(setup, _hp(num_minibatches=minibatches, num_microbatches=pieces))
  assert float(metrics["work_fraction"]) == pytest.approx(expected)


def test_pieces_are_never_smaller_than_the_minimum():
  """64 slots, M = 2: minibatches of 32. 8 pieces would hold 4 slots; with a minimum of 16
  they hold 16, two per minibatch. V = 4 + 3 * 1 = 7 valid: 4 per minibatch (the second gets
  3), one piece each: 1 of 2 pieces, work 0.5."""
  setup = _update_setup([16, 1, 1, 1], horizon=16)
  _, _, metrics = _run_update(setup, _hp(num_microbatches=8, min_microbatch_size=16))
  assert float(metrics["work_fraction"]) == pytest.approx(0.5)


def test_one_minibatch_is_one_adam_step_on_the_valid_steps():
  """M = 1, one epoch: the update is exactly one optimizer step on the masked-mean loss of
  the valid steps alone, gathered by hand (a plain reference without any masking), whatever
  the number of pieces."""
  lengths, horizon = [5, 2, 4], 5
  setup = _update_setup(lengths, horizon)
  networks, params, optimizer, normalizer, mask, (obs, raw_action, log_prob, rewards) = setup
  hp = _hp(num_minibatches=1, update_epochs=1, num_microbatches=3, normalize_advantages=False)
  new_params, _, metrics = _run_update(setup, hp)

  # Reference: the critic's values and GAE by episode (NumPy), then the valid slots only.
  time = np.broadcast_to(np.arange(horizon)[:, None], mask.shape)
  values = np.asarray(networks.value.apply(params.value,
                                           nets.value_input(obs, jnp.asarray(time), horizon)))
  advantages, targets = _gae_reference(np.asarray(rewards), values, lengths, 0.99, 0.95)
  valid = np.asarray(mask) > 0
  batch = Batch(obs[valid], jnp.asarray(time[valid]), raw_action[valid], log_prob[valid],
                jnp.asarray(advantages[valid], jnp.float32),
                jnp.asarray(targets[valid], jnp.float32), jnp.ones((int(valid.sum()),)))
  grads, aux = jax.grad(ppo_loss, has_aux=True)(params, networks, batch, horizon, hp)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  expected = optax.apply_updates(params, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               new_params, expected)
  np.testing.assert_allclose(metrics["policy_loss"], aux["policy_loss"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["value_loss"], aux["value_loss"], rtol=1e-5, atol=1e-6)


def test_valid_first_in_time_order_is_a_stable_partition():
  """Slots 0..5 with valid = [0, 1, 1, 0, 1, 0]: the valid ones in index order (1, 2, 4),
  then the masked ones in index order (0, 3, 5)."""
  valid = jnp.array([False, True, True, False, True, False])
  np.testing.assert_array_equal(jax.jit(ppo.valid_first_in_time_order)(valid),
                                [1, 2, 4, 0, 3, 5])


@pytest.mark.parametrize("num_valid", [0, 1, 300, 5000, 5001, 20_000, 40_000])
def test_valid_first_order_equals_argsort_over_all_slots(num_valid):
  """The order sorts only a prefix wide enough for the V valid slots (widths B / 8 = 5,000 and
  B = 40,000 here), yet equals NumPy's stable argsort of where(valid, u, 2) over all B slots,
  for V on either side of each width, alone and under vmap."""
  size = 40_000
  assert ppo.shuffle_widths(size) == (5000, size)  # 5,000 / 8 = 625 < 4,096: no third
  assert ppo.shuffle_widths(2_000_000) == (31_250, 250_000, 2_000_000)
  rng = np.random.default_rng(num_valid)
  valid = np.zeros(size, bool)
  valid[rng.choice(size, num_valid, replace=False)] = True
  key = jax.random.PRNGKey(num_valid)
  u = np.asarray(jax.random.uniform(key, (size,)))
  expected = np.argsort(np.where(valid, u, 2.0), kind="stable")
  order = jax.jit(ppo.valid_first_order)(key, jnp.asarray(valid))
  np.testing.assert_array_equal(order, expected)
  batched = jax.jit(jax.vmap(ppo.valid_first_order))(
      jnp.stack([key, key]), jnp.stack([jnp.asarray(valid), jnp.zeros(size, bool)]))
  np.testing.assert_array_equal(batched[0], expected)
  np.testing.assert_array_equal(batched[1], np.arange(size))  # nothing valid: index order
