"""End-to-end training: learning, no recompilation, seeds under vmap, user envs and teachers,
and bad input refused before anything is compiled or written."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax.config import ConfigError
from spo_jax.teachers import Oracle, TeacherContractError
from spo_jax.train import policy_params

TINY = spo_jax.preset("point_reach").replace(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9)


def test_iteration_compiles_once_and_counts_steps():
  fns = spo_jax.make_train(TINY)
  # A second trace (e.g. a state whose dtype or shape drifts between iterations) raises.
  iteration = jax.jit(chex.assert_max_traces(fns.iteration, n=1), donate_argnums=0)
  state = jax.jit(fns.init)(jax.random.PRNGKey(0))
  for _ in range(3):
    state, metrics = iteration(state)
  assert int(state.iteration) == 3
  # point_reach rarely terminates in 8 steps from [-1, 1]^2, so each iteration collects
  # at most N * H = 8 * 8 = 64 valid steps, and all pairs give N (N - 1) / 2 = 28 queries.
  assert 0 < int(metrics["train/env_steps"][0]) <= 64
  assert int(metrics["train/num_queries"][0]) == 28


def test_spo_learns_to_balance():
  """SPO with the oracle teacher on the tiny cart-pole: a random policy survives ~20 of 200
  steps; after 60k env steps the deterministic policy must survive at least 150."""
  config = spo_jax.preset("balance").replace(num_timesteps=60_000, eval_every=100)
  setup = spo_jax.build(config)
  initial = jax.jit(setup.fns.init)(jax.random.PRNGKey(config.seed))
  before = setup.evaluate(policy_params(initial), jax.random.PRNGKey(1))["eval/episode_reward"]
  result = spo_jax.train(config)
  assert float(before) < 60
  assert result.metrics["eval/episode_reward"] >= 150
  assert result.metrics["step"] >= 60_000
  assert result.metrics["train/total_feedback"] > 0


def test_ground_truth_reward_source_learns_point_reach():
  config = spo_jax.preset("point_reach").replace(reward_source="ground_truth",
                                                 num_timesteps=40_000, eval_every=100)
  result = spo_jax.train(config)
  # A random policy scores about -40 over 32 steps (docs of PointReach).
  assert result.metrics["eval/episode_reward"] > -25
  assert result.metrics["train/total_feedback"] == 0


def test_evaluation_runs_its_own_horizon():
  """Training episodes of H = 8 steps, evaluation episodes of 24: point_reach only ends when
  the point leaves [-2, 2]^2, at least 10 steps of 0.1 from a start in [-1, 1]^2, so a fresh
  policy's 4 evaluation episodes last longer than 8 steps, and never longer than 24. With
  eval_episode_length = 0 they last the training horizon, at most 8."""
  lengths = {}
  for eval_length in (0, 24):
    setup = spo_jax.build(TINY.replace(eval_episode_length=eval_length))
    state = jax.jit(setup.fns.init)(jax.random.PRNGKey(0))
    metrics = setup.evaluate(policy_params(state), jax.random.PRNGKey(1))
    lengths[eval_length] = float(metrics["eval/episode_length"])
  assert lengths[0] <= 8
  assert 8 < lengths[24] <= 24


def test_evaluations_spaced_in_env_steps():
  """eval_every_steps = 250 over a 1000-step budget: one evaluation as the env steps pass 250,
  500, 750 and 1000, each within one iteration (at most N x H = 64 steps) of the multiple,
  whatever eval_every says."""
  steps = []
  spo_jax.train(TINY.replace(num_timesteps=1000, eval_every_steps=250, eval_every=1),
                progress_fn=lambda step, metrics: steps.append(step))
  assert len(steps) == 4
  for i, step in enumerate(steps):
    assert 0 <= step - 250 * (i + 1) < 64


def test_spo_on_segments_learns_point_reach():
  """SPO comparing segments of 8 of the 32 steps (4 per episode), oracle teacher: a random
  policy scores about -40 (PointReach's docstring); after 20k env steps, better than -25."""
  config = spo_jax.preset("point_reach").replace(segment_length=8, num_timesteps=20_000,
                                                 eval_every=100)
  result = spo_jax.train(config)
  assert result.metrics["eval/episode_reward"] > -25
  # 4 segments x 64 * 63 / 2 pairs per iteration.
  assert result.metrics["train/num_queries"] == 4 * 64 * 63 / 2


@pytest.mark.parametrize("table", ["cycle3", "transitive3"])
def test_spo_logs_how_often_the_teachers_majority_cycles(table):
  """Two iterations of the matrix game, N = 16, every iteration evaluated. A nearly uniform
  policy draws all three outcomes, and a triple of three different outcomes is a cycle of
  cycle3's majority (same outcomes tie): with counts n_k, n_0 n_1 n_2 / C(N, 3) of the
  triples, 3! / 3^3 = 2/9 in expectation under the uniform policy; transitive3 ranks the
  outcomes, so none of its triples cycles."""
  config = spo_jax.preset("matrix_game").replace(
      teacher_table=table, num_envs=16, max_iterations=2, eval_every=1, num_timesteps=10**9,
      policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
  rows = []
  spo_jax.train(config, progress_fn=lambda step, metrics: rows.append(metrics))
  fractions = [row["train/cyclic_triples"] for row in rows]
  assert len(fractions) == 2
  if table == "cycle3":
    assert all(0.0 < f <= 1.0 for f in fractions)
  else:
    assert fractions == [0.0, 0.0]


def test_seeds_under_vmap_equal_single_runs():
  fns = spo_jax.make_train(TINY)
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  batched = jax.jit(jax.vmap(fns.iteration))(spo_jax.init_over_seeds(fns.init, 2)(keys))[0]
  for s in range(2):
    single = jax.jit(fns.iteration)(fns.init(keys[s]))[0]
    for x, y in zip(jax.tree.leaves(single.params), jax.tree.leaves(batched.params), strict=True):
      np.testing.assert_allclose(x, y[s], rtol=1e-5, atol=1e-6)


@dataclasses.dataclass(frozen=True)
class Steadiness:
  """A user's teacher in plain jax.numpy: prefers the smaller total |action| (effort)."""

  def init(self):
    return {"effort": jnp.zeros(())}

  def update(self, summary, step):
    return {"effort": summary["effort"] + jnp.sum(jnp.abs(step.action))}

  def compare(self, a, b, key):
    return 0.5 * (1.0 + jnp.sign(b["effort"] - a["effort"]))


def test_user_env_instance_and_user_teacher():
  result = spo_jax.train(TINY.replace(max_iterations=2), env=spo_jax.PointReach(),
                         teacher=Steadiness())
  assert result.metrics["iteration"] == 2
  action = result.make_policy(result.params)(jnp.zeros(4))
  assert action.shape == (2,)


class Broken(Oracle):
  def compare(self, a, b, key):
    return jnp.asarray(0.7)


@pytest.mark.parametrize("changes, words", [
    ({"env": "cheetah"}, "known environments"),
    ({"teacher": "orcale"}, "not a known teacher"),
    ({"num_envs": -4}, "num_envs"),
    ({"episode_length": 5000, "env": "inverted_pendulum"}, "at most 1000"),
    ({"eval_episode_length": 1001, "env": "inverted_pendulum"}, "eval_episode_length"),
    ({"eval_episode_length": -1}, "eval_episode_length"),
    ({"segment_length": 3}, "must divide episode_length"),
    ({"segment_length": 4, "queue_size": 8}, "queue_size"),
    ({"num_minibatches": 7}, "must divide"),
    ({"discount": 1.5}, "discount"),
    ({"labels": "hard"}, "labels"),
    ({"policy_hidden_sizes": ()}, "policy_hidden_sizes"),
    ({"teacher_beta": 0.0}, "teacher_beta"),
])
def test_bad_config_is_refused_with_the_field_named(changes, words, tmp_path):
  with pytest.raises(ConfigError, match=words):
    spo_jax.train(TINY.replace(**changes), run_dir=tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_contract_breaking_teacher_is_refused_before_compiling(tmp_path):
  with pytest.raises(TeacherContractError, match="antisymmetry|itself"):
    spo_jax.train(TINY, teacher=Broken(), run_dir=tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_seeds_in_one_run_equal_single_runs(tmp_path):
  """num_seeds = 3 trains seeds 5, 6, 7 as one vmapped run; each equals a single run with
  that seed (within float tolerance: batched matmuls may sum in another order), and
  metrics.jsonl holds one row per seed per evaluation."""
  import json

  config = TINY.replace(seed=5, max_iterations=2, eval_every=1, env="balance")
  many = spo_jax.train(config.replace(num_seeds=3), run_dir=tmp_path / "many")
  rows = [json.loads(line) for line in (tmp_path / "many" / "metrics.jsonl").read_text()
          .splitlines()]
  assert [(r["iteration"], r["seed"]) for r in rows] == [
      (1, 5), (1, 6), (1, 7), (2, 5), (2, 6), (2, 7)]
  assert len(many.metrics["per_seed"]) == 3
  for index, seed in enumerate((5, 6, 7)):
    single = spo_jax.train(config.replace(seed=seed))
    for x, y in zip(jax.tree.leaves(single.params), jax.tree.leaves(many.params), strict=True):
      np.testing.assert_allclose(x, y[index], rtol=1e-4, atol=1e-5)
    assert single.metrics["step"] == many.metrics["per_seed"][index]["step"]
    assert single.metrics["eval/episode_reward"] == pytest.approx(
        many.metrics["per_seed"][index]["eval/episode_reward"], rel=1e-4)
  policy = spo_jax.load_policy(tmp_path / "many", seed_index=2)
  expected = many.make_policy(jax.tree.map(lambda x: x[2], many.params))(jnp.ones(4))
  np.testing.assert_allclose(policy(jnp.ones(4)), expected, rtol=1e-6)
  with pytest.raises(ConfigError, match="seed_index = 3"):
    spo_jax.load_policy(tmp_path / "many", seed_index=3)


class LateNaN(Oracle):
  """Passes validate_teacher (which folds 6 steps) but answers nan once a trajectory has
  lasted 8 steps: the kind of bug only training finds."""

  def update(self, summary, step):
    return {**super().update(summary, step), "late": step.t >= 7}

  def init(self):
    return {**super().init(), "late": jnp.zeros((), bool)}

  def compare(self, a, b, key):
    return jnp.where(a["late"] | b["late"], jnp.nan, super().compare(a, b, key))


class NaNReward(spo_jax.PointReach):
  def step(self, state, action):
    state = super().step(state, action)
    return state.replace(reward=state.reward * jnp.nan)


def test_numerical_guard_names_the_quantity_and_keeps_the_last_good_checkpoint(tmp_path):
  from spo_jax.train import NumericalError

  config = TINY.replace(max_iterations=2, checkpoint_every=1, eval_every=1)
  spo_jax.train(config, run_dir=tmp_path / "run")
  # nan rewards poison everything after them; the message lists them in the order they arise.
  with pytest.raises(NumericalError, match=r"bad rewards, loss, gradients, parameters in "
                     r"iteration 1 \(seed 0\) \(nan/inf\); training stopped and no checkpoint"):
    spo_jax.train(config.replace(reward_source="ground_truth"), env=NaNReward(),
                  run_dir=tmp_path / "gt")
  with pytest.raises(NumericalError, match=r"bad teacher outputs, .* in iteration 1 .*outside"):
    spo_jax.train(config, teacher=LateNaN())
  # The good run's checkpoint survives a failing resume: nothing is saved past iteration 2.
  with pytest.raises(NumericalError, match="teacher outputs.* iteration 3.*iteration 2, is kept"):
    spo_jax.train(config.replace(max_iterations=4), teacher=LateNaN(),
                  run_dir=tmp_path / "run", resume=True)
  steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps[-1] == 2
  assert spo_jax.load_policy(tmp_path / "run")(jnp.zeros(4)).shape == (2,)
