"""Discrete actions: the categorical distribution (networks.py), the one-hot `MatrixGame`, a
rollout, the policy factories, and the reward-model baseline on the matrix game."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import networks as nets
from spo_jax.evaluate import PolicyParams, make_policy_factory, rollout_policy
from spo_jax.rollout import rollout
from spo_jax.teachers.matrix_game import TABLES, PayoffTable
from spo_jax.tiny_envs import MatrixGame

CAT = nets.CATEGORICAL


def _log_softmax_reference(logits):
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
def test_categorical_log_prob_and_entropy_match_numpy(batch_shape):
  rng = np.random.default_rng(len(batch_shape))
  num_actions = 4
  logits = rng.normal(scale=2.0, size=batch_shape + (num_actions,))
  index = rng.integers(num_actions, size=batch_shape)
  one_hot = np.eye(num_actions)[index]
  log_p = _log_softmax_reference(logits)
  expected_log_prob = np.take_along_axis(log_p, index[..., None], axis=-1)[..., 0]
  expected_entropy = -np.sum(np.exp(log_p) * log_p, axis=-1)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  got_log_prob = jax.jit(CAT.log_prob)(f32(logits), f32(one_hot))
  got_entropy = jax.jit(CAT.entropy)(f32(logits), f32(one_hot))
  assert got_log_prob.shape == batch_shape and got_entropy.shape == batch_shape
  np.testing.assert_allclose(got_log_prob, expected_log_prob, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_entropy, expected_entropy, rtol=1e-5, atol=1e-5)


def test_categorical_hand_values():
  # Equal logits over K = 4: log pi = -log 4 = -1.386294 for any action, entropy log 4;
  # a masked (all-zero) slot has log-probability 0.
  logits = jnp.zeros((3, 4))
  one_hot = jnp.asarray([[1.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 0, 0, 0]])
  np.testing.assert_allclose(CAT.log_prob(logits, one_hot), [-1.386294, -1.386294, 0.0],
                             rtol=1e-6)
  np.testing.assert_allclose(CAT.entropy(logits, one_hot), np.full(3, np.log(4.0)), rtol=1e-6)
  # Mode: the one-hot argmax; the env receives the raw (one-hot) action unchanged.
  mode = CAT.mode(jnp.asarray([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]))
  np.testing.assert_array_equal(mode, [[0, 1, 0], [1, 0, 0]])
  np.testing.assert_array_equal(CAT.to_env_action(mode), mode)


def test_categorical_samples_are_one_hot_with_the_right_frequencies():
  # p = softmax(log [0.2, 0.5, 0.3]) = [0.2, 0.5, 0.3]; 20000 samples: each frequency's
  # standard error is at most sqrt(0.25 / 20000) = 0.0035, so 0.02 is ~6 standard errors.
  probs = jnp.asarray([0.2, 0.5, 0.3])
  logits = jnp.broadcast_to(jnp.log(probs)[None, :], (20000, 3))
  samples = jax.jit(CAT.sample)(logits, jax.random.PRNGKey(0))
  assert samples.dtype == jnp.float32 and samples.shape == (20000, 3)
  np.testing.assert_array_equal(samples.sum(axis=-1), 1.0)
  np.testing.assert_allclose(samples.mean(axis=0), probs, atol=0.02)


def test_distribution_follows_the_env():
  assert nets.action_distribution(MatrixGame()) is CAT
  assert nets.action_distribution(spo_jax.make_env("point_reach")) is nets.TANH_GAUSSIAN
  networks = nets.make_networks(1, 3, (8,), (8,), discrete=True)
  params = nets.init_params(networks, jax.random.PRNGKey(0))
  logits = networks.policy.apply(params.policy, jnp.ones((2, 1)))
  assert logits.shape == (2, 3)
  # Output scale 0.01: the initial policy is nearly uniform.
  np.testing.assert_allclose(jax.nn.softmax(logits), 1 / 3, atol=0.02)


def test_matrix_game_reads_the_one_hot_action():
  env = MatrixGame(num_outcomes=4)
  assert env.action_size == 4 and env.discrete_actions
  state = env.reset(jax.random.PRNGKey(0))
  after = jax.jit(jax.vmap(env.step, (None, 0)))(state, jnp.eye(4)[jnp.asarray([2, 0, 3])])
  np.testing.assert_array_equal(after.metrics["outcome"], [2, 0, 3])
  np.testing.assert_array_equal(after.done, 1.0)


def test_rollout_and_policies_on_a_discrete_env():
  env = MatrixGame(num_outcomes=3)
  networks = nets.make_networks(1, 3, (8,), (8,), discrete=True)
  params = PolicyParams(nets.normalizer_init(1),
                        nets.init_params(networks, jax.random.PRNGKey(1)).policy)
  teacher = PayoffTable(TABLES["cycle3"])
  policy_fn = rollout_policy(networks, params, normalize_observations=False,
                             deterministic=False)
  go = jax.jit(lambda key: rollout(env, policy_fn, key, 64, 2, teacher))
  result = go(jax.random.PRNGKey(2))
  traj = result.trajectory
  # One step, then every env is done; the stored raw action is the one-hot the env received,
  # and the teacher's outcome is its index.
  np.testing.assert_array_equal(traj.mask, [[1.0] * 64, [0.0] * 64])
  np.testing.assert_array_equal(traj.raw_action[0].sum(axis=-1), 1.0)
  np.testing.assert_array_equal(result.summaries["outcome"], np.argmax(traj.raw_action[0], -1))
  np.testing.assert_allclose(traj.log_prob[0], np.log(1 / 3), atol=0.05)  # near-uniform
  assert len(set(np.asarray(result.summaries["outcome"]).tolist())) == 3
  # Deterministic: the argmax, as a one-hot, from both factories.
  logits = networks.policy.apply(params.policy, jnp.ones((1, 1)))
  best = int(jnp.argmax(logits[0]))
  action = make_policy_factory(networks, False)(params)(jnp.ones((1,)))
  np.testing.assert_array_equal(action, np.eye(3)[best])
  raw, log_prob = rollout_policy(networks, params, False)(jnp.ones((2, 1)), None)
  np.testing.assert_array_equal(raw, np.eye(3)[[best, best]])
  np.testing.assert_array_equal(log_prob, 0.0)


def test_matrix_game_gets_its_size_from_the_table(tmp_path):
  table = tmp_path / "four.json"
  four = [[0.5, 1.0, 0.0, 0.5], [0.0, 0.5, 1.0, 0.5], [1.0, 0.0, 0.5, 0.5],
          [0.5, 0.5, 0.5, 0.5]]
  table.write_text(str(four))
  config = spo_jax.preset("matrix_game").replace(teacher_table=str(table))
  setup = spo_jax.build(config)
  assert setup.env.action_size == 4 and setup.networks.action_size == 4
  np.testing.assert_array_equal(setup.game.table, four)


def test_reward_model_learns_the_condorcet_winner_of_the_matrix_game():
  """The reward-model baseline on transitive3, T = [[.5, .7, .9], [.3, .5, .7], [.1, .3, .5]]:
  a reward explains these preferences (0 > 1 > 2), so the Bradley-Terry model can learn it and
  PPO must move the policy onto outcome 0.

  Row 0 of T is at least every other row entry by entry, so outcome 0 is the best response to
  ANY policy p and the exploitability is, by hand, e(p) = 0.5 p0 + 0.7 p1 + 0.9 p2 - 0.5;
  the near-uniform start gives (0.5 + 0.7 + 0.9) / 3 - 0.5 = 0.2. The bounds below (e < 0.15,
  p0 > 1/2) are ones the start fails, so a run that learns nothing fails them too.
  (Measured on a CPU after 20 iterations: e_last 0.105, p0 last 0.656, p0 average 0.472.)"""
  config = spo_jax.preset("matrix_game").replace(
      reward_source="reward_model", teacher_table="transitive3", num_envs=16,
      max_iterations=20, eval_every=10, num_timesteps=10**9, rm_queries_per_iteration=8,
      rm_buffer_size=32, rm_hidden_sizes=(8,), rm_train_steps=5, rm_batch_size=8)
  setup = spo_jax.build(config)
  start = setup.game_metrics(jax.jit(setup.fns.init)(jax.random.PRNGKey(config.seed)))
  start_p0 = float(start["eval/prob_last_0"])
  np.testing.assert_allclose(start["eval/exploitability_last"], 0.2, atol=0.01)
  assert start["eval/exploitability_last"] > 0.15 + 0.04 and start_p0 < 0.5 - 0.1

  rows = []
  result = spo_jax.train(config, progress_fn=lambda step, m: rows.append(m))
  assert [r["iteration"] for r in rows] == [10, 20]
  m = result.metrics
  assert m["eval/exploitability_last"] < 0.15
  p_last = [m[f"eval/prob_last_{k}"] for k in range(3)]
  assert p_last[0] > 0.5
  # The average of the iterates trails the last one (which keeps moving onto outcome 0) but
  # has left the start: a metric that reported the last iterate, or the first, fails here.
  p_average = [m[f"eval/prob_average_{k}"] for k in range(3)]
  assert start_p0 + 0.05 < p_average[0] < p_last[0] - 0.05
  # The reported exploitabilities are e(p) of the reported probabilities.
  for kind, p in (("last", p_last), ("average", p_average)):
    np.testing.assert_allclose(m[f"eval/exploitability_{kind}"],
                               0.5 * p[0] + 0.7 * p[1] + 0.9 * p[2] - 0.5, atol=1e-5)
  # The matrix-game teacher never abstains: every query of the iteration is labelled.
  assert m["train/num_queries"] == 8 and m["train/num_labels"] == 8
