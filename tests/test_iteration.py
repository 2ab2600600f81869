"""spo_jax/iteration.py: the training state and one iteration as pure functions: the
iteration's metrics worked by hand, the fields a sweep may trace, the checkpoint's stored
form of a sweep run's state, and `iterations_per_call` iterations in one call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import counters as counters_lib
from spo_jax import networks as nets
from spo_jax import ppo
from spo_jax.iteration import (
    TRACED_FIELDS,
    TrainState,
    _check_traced,
    _iteration_metrics,
    from_stored,
    ppo_hyperparams,
    stored_form,
    traced_fields,
    with_hyperparams,
)
from spo_jax.rollout import RolloutResult, Trajectory
from spo_jax.setup import build

POINT = spo_jax.preset("point_reach").replace(num_envs=2, episode_length=3)
# The cheapest real iteration: the cart-pole's env reward (no teacher), tiny networks.
BALANCE = spo_jax.preset("balance").replace(
    reward_source="ground_truth", num_envs=4, episode_length=8, num_minibatches=1,
    update_epochs=1, num_eval_envs=2, policy_hidden_sizes=(4,), value_hidden_sizes=(4,))

GOOD_PPO = {"policy_loss": jnp.asarray(0.5), "value_loss": jnp.asarray(2.0),
            "entropy": jnp.asarray(1.0), "grad_norm": jnp.asarray(0.25)}


def _result(reward, mask):
  h, n = np.shape(reward)
  zeros = jnp.zeros((h, n))
  traj = Trajectory(obs=jnp.zeros((h, n, 4)), raw_action=jnp.zeros((h, n, 2)),
                    log_prob=zeros, reward=jnp.asarray(reward, jnp.float32),
                    mask=jnp.asarray(mask, jnp.float32), done=zeros)
  return RolloutResult(traj, None, jnp.asarray(6, jnp.int32), jnp.asarray(3, jnp.int32))


def test_iteration_metrics_worked_by_hand():
  # H = 3, N = 2: episode 0 lasts 2 steps and returns 1 + 3 = 4, episode 1 lasts 1 step and
  # returns 2 (rewards on masked steps are 0).
  result = _result(reward=[[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]],
                   mask=[[1, 1], [1, 0], [0, 0]])
  rewards = jnp.asarray([[0.5, 0.0], [0.0, 0.0], [0.0, 1.0]])  # the source's: sum 1.5
  metrics = jax.jit(lambda r, rw, rm, pm: _iteration_metrics(
      POINT, r, rw, rm, pm, {"w": jnp.ones(2)}))(
      result, rewards, {"num_queries": jnp.asarray(1)}, GOOD_PPO)
  assert {k: float(v) for k, v in metrics.items() if k.startswith("train/")} == {
      "train/episode_reward": 3.0,  # (4 + 2) / 2
      "train/episode_length": 1.5,  # (2 + 1) / 2
      "train/env_steps": 3.0, "train/physics_steps": 6.0, "train/loop_steps": 3.0,
      "train/reward_mean": 0.75,  # 1.5 / N: one episode's reward, on average
      "train/num_queries": 1.0}
  assert metrics["train/env_steps"].dtype == jnp.int32
  assert float(metrics["ppo/grad_norm"]) == 0.25
  assert {k: int(v) for k, v in metrics.items() if k.startswith("guard/")} == {
      "guard/teacher_outputs": 0, "guard/rewards": 0, "guard/loss": 0, "guard/gradients": 0,
      "guard/parameters": 0}
  unguarded = _iteration_metrics(POINT.replace(numerical_guard=False), result, rewards, {},
                                 GOOD_PPO, {})
  assert not any(k.startswith("guard/") for k in unguarded)


def test_traced_fields_leave_out_the_discount_where_it_places_rewards():
  assert "discount" not in traced_fields(POINT)  # spo, rewards placed by discounting
  assert traced_fields(POINT) == tuple(f for f in TRACED_FIELDS if f != "discount")
  assert traced_fields(POINT.replace(reward_placement="spread")) == TRACED_FIELDS
  assert traced_fields(POINT.replace(reward_source="ground_truth")) == TRACED_FIELDS
  _check_traced(POINT, ("learning_rate", "entropy_coef"))
  with pytest.raises(ValueError, match=r"fields \['discount', 'num_envs'\] cannot be traced"):
    _check_traced(POINT, ("num_envs", "discount", "learning_rate"))


def test_ppo_hyperparams_take_each_field_of_the_same_name():
  config = POINT.replace(discount=0.91, gae_lambda=0.82, clip_epsilon=0.13, value_coef=0.44,
                         entropy_coef=0.005, normalize_advantages=False, update_epochs=3,
                         num_minibatches=2, normalize_observations=False, num_microbatches=2)
  assert ppo_hyperparams(config) == ppo.PPOHyperparams(
      discount=0.91, gae_lambda=0.82, clip_epsilon=0.13, value_coef=0.44, entropy_coef=0.005,
      normalize_advantages=False, update_epochs=3, num_minibatches=2,
      normalize_observations=False, num_microbatches=2)


def _tiny_state(hyperparams=(), num_seeds=None):
  """A TrainState of small hand-made leaves (no network is built): the optimizer state is
  that of a sweep run, with the learning rate injected."""
  lead = () if num_seeds is None else (num_seeds,)
  params = nets.Params(policy={"w": jnp.ones(lead + (2,))}, value={"w": jnp.zeros(lead + (2,))})
  opt_state = ppo.make_optimizer(3e-4, 0.5, inject=True).init(params)
  return TrainState(params=params, opt_state=opt_state,
                    normalizer=nets.normalizer_init(2), reward_state=jnp.zeros(lead + (3,)),
                    key=jnp.zeros(lead + (2,), jnp.uint32),
                    iteration=jnp.full(lead, 5, jnp.int32), policy_average=(),
                    counters=counters_lib.zeros(lead), hyperparams=hyperparams)


def test_with_hyperparams_sets_one_runs_values_under_jit():
  state = _tiny_state({"entropy_coef": jnp.float32(0.0), "discount": jnp.float32(0.99)})
  new = jax.jit(with_hyperparams)(state, {"learning_rate": 0.5, "entropy_coef": 0.02})
  # The learning rate goes into the optimizer's injected hyperparameters, the rest into the
  # state's own; fields not given keep their values.
  assert float(new.opt_state.hyperparams["learning_rate"]) == 0.5
  assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(3e-4)
  assert {k: float(v) for k, v in new.hyperparams.items()} == pytest.approx(
      {"entropy_coef": 0.02, "discount": 0.99})
  assert all(v.dtype == jnp.float32 for v in new.hyperparams.values())
  only_rate = with_hyperparams(_tiny_state(), {"learning_rate": 0.1})
  assert only_rate.hyperparams == ()  # a run tracing the learning rate alone keeps ()


def test_a_sweep_runs_stored_form_keeps_its_hyperparameters_and_counts_from_the_meta():
  state = _tiny_state({"entropy_coef": jnp.full((2,), 0.01)}, num_seeds=2)
  stored = stored_form(state)
  assert stored._fields == ("params", "opt_state", "normalizer", "reward_state", "key",
                            "iteration", "policy_average", "hyperparams")
  back = from_stored(stored, {"env_steps": [7, 2**40], "total_queries": 3})
  assert isinstance(back, TrainState) and back.hyperparams is state.hyperparams
  for x, y in zip(jax.tree.leaves(back[:7]), jax.tree.leaves(state[:7]), strict=True):
    np.testing.assert_array_equal(x, y)
  # One total per seed, or one for every seed; a name not in the meta counts from 0.
  assert counters_lib.to_meta(back.counters) == {
      "env_steps": [7, 2**40], "physics_steps": [0, 0], "total_queries": [3, 3],
      "total_feedback": [0, 0]}
  # What is not a training state (a partial restore's dict) passes through both as is.
  partial = {"params": {"policy": 1}}
  assert stored_form(partial) is partial and from_stored(partial, None) is partial


def test_iterations_per_call_runs_the_same_iterations_as_one_call_each():
  """Two iterations in one call (one `lax.scan`) give the state two single calls give, bit
  for bit, and the metrics of both stacked."""
  fns = build(BALANCE).fns
  state = jax.jit(fns.init)(jax.random.PRNGKey(0))
  one = jax.jit(fns.iteration)
  single, first = one(state)
  single, second = one(single)
  both, stacked = jax.jit(build(BALANCE.replace(iterations_per_call=2)).fns.iteration)(state)
  for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(both), strict=True):
    np.testing.assert_array_equal(x, y)
  for name, value in stacked.items():
    np.testing.assert_array_equal(value, np.stack([first[name][0], second[name][0]]), name)
  assert int(both.iteration) == 2 and both.policy_average == ()
  # The cart-pole pays 1 per step, and the env reward is the reward: returns are lengths.
  np.testing.assert_allclose(stacked["train/episode_reward"], stacked["train/episode_length"])
  np.testing.assert_allclose(stacked["train/reward_mean"], stacked["train/episode_reward"])
  np.testing.assert_array_equal(stacked["train/env_steps"],
                                4 * stacked["train/episode_length"])
  assert counters_lib.to_meta(both.counters)["env_steps"] == [
      int(np.sum(stacked["train/env_steps"]))]
