"""The device counters (spo_jax/counters.py): two-word totals that do not wrap, their meta JSON
form, and the totals a run counts on the device against its own per-iteration metrics."""

import json

import jax
import jax.numpy as jnp
import numpy as np

import spo_jax
from spo_jax import counters as counters_lib
from spo_jax.iteration import from_stored, stored_form

LOW = 1 << counters_lib.LOW_BITS


def test_add_carries_into_the_high_word_under_jit():
  # (0, 2**30 - 1) + 3 = 2**30 + 2 = (1, 2): the low word's carry moves up.
  total = jax.jit(counters_lib.add)(jnp.array([0, LOW - 1], jnp.int32), jnp.int32(3))
  np.testing.assert_array_equal(total, [1, 2])
  assert counters_lib.value(total) == LOW + 2


def test_totals_pass_int32_without_wrapping_against_python_integers():
  # 40 increments of 2**31 - 1 (the largest int32) sum to 85,899,345,880, 40x past int32:
  # Python's integers are the reference.
  increments = np.full(40, 2**31 - 1, np.int64)
  increments[::3] = np.random.default_rng(0).integers(0, 2**31 - 1, len(increments[::3]))

  @jax.jit
  def total_of(incs):
    return jax.lax.fori_loop(0, incs.shape[0], lambda i, t: counters_lib.add(t, incs[i]),
                             jnp.zeros(2, jnp.int32))

  total = total_of(jnp.asarray(increments, jnp.int32))
  assert counters_lib.value(total) == sum(int(x) for x in increments)
  assert 0 <= int(total[1]) < LOW


def test_meta_round_trip_per_seed_and_broadcast():
  big = 5 * 2**31 + 7  # past int32, survives JSON as an exact Python integer
  meta = {"env_steps": [3, big], "physics_steps": [10, 20], "total_queries": [0, 1],
          "total_feedback": [0, 1]}
  counters = counters_lib.from_meta(json.loads(json.dumps(meta)), (2,))
  assert counters_lib.to_meta(counters) == meta
  # An older meta may hold one number for every seed, or no name at all: counted from 0.
  assert counters_lib.to_meta(counters_lib.from_meta({"env_steps": 5}, (3,))) == {
      "env_steps": [5, 5, 5], "physics_steps": [0, 0, 0], "total_queries": [0, 0, 0],
      "total_feedback": [0, 0, 0]}


def test_stored_form_keeps_counters_out_of_the_checkpoint_state():
  config = spo_jax.Config(env="point_reach", num_envs=4, episode_length=8, num_timesteps=64,
                          policy_hidden_sizes=(4,), value_hidden_sizes=(4,))
  fns = spo_jax.make_train(config)
  state, _ = jax.jit(fns.iteration)(fns.init(jax.random.PRNGKey(0)))
  stored = stored_form(state)
  assert "counters" not in stored._fields  # the layout checkpoints have always had
  meta = counters_lib.to_meta(state.counters)
  back = from_stored(stored, meta)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(a, b)


def test_device_totals_equal_the_sum_of_the_iterations_metrics():
  # point_reach ends episodes early, so valid env steps < physics steps < N x H; two seeds
  # vmapped, three iterations per jitted call.
  config = spo_jax.Config(env="point_reach", num_envs=8, episode_length=16, num_seeds=2,
                          iterations_per_call=3, num_timesteps=8 * 16 * 3,
                          policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
  fns = spo_jax.make_train(config)
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  state, metrics = jax.jit(jax.vmap(fns.iteration))(spo_jax.init_over_seeds(fns.init, 2)(keys))
  totals = counters_lib.to_meta(state.counters)
  for name, metric in (("env_steps", "train/env_steps"),
                       ("physics_steps", "train/physics_steps"),
                       ("total_queries", "train/num_queries"),
                       ("total_feedback", "train/num_labels")):
    assert totals[name] == [int(x) for x in np.sum(metrics[metric], axis=1)], name
  # SPO asks all N (N - 1) / 2 = 28 pairs per iteration: 3 x 28 per seed.
  assert totals["total_queries"] == [84, 84]


def test_train_rows_and_checkpoint_meta_report_the_device_totals(tmp_path):
  # Two vmapped seeds run their rollout loops in step: each seed's physics total is
  # N x (the longest loop of either seed) per iteration, which the host loop counts on the
  # device; the rows' env steps are each seed's own valid steps.
  config = spo_jax.Config(env="point_reach", num_envs=8, episode_length=16, num_seeds=2,
                          num_timesteps=8 * 16 * 4, eval_every=2, num_eval_envs=2,
                          policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
  spo_jax.train(config, run_dir=str(tmp_path / "run"), progress="none")
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  last = {row["seed"]: row for row in rows if row["iteration"] == rows[-1]["iteration"]}
  assert last[0]["train/physics_steps_total"] == last[1]["train/physics_steps_total"]
  for row in last.values():
    assert row["step"] <= row["train/physics_steps_total"] <= row["iteration"] * 8 * 16
  checkpoint = sorted((tmp_path / "run" / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
  meta = json.loads(next((checkpoint[-1] / "meta").glob("*")).read_text())
  assert meta["counters"]["env_steps"] == [last[0]["step"], last[1]["step"]]
