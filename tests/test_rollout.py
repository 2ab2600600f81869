"""Tests for spo_jax/rollout.py on the package's tiny environments.

Balance (cart-pole) falls within tens of steps under random forces and pays 1 per step, so
its return is its episode length. PointReach moves a point by 0.1 tanh(u) per step and ends
when the point leaves [-2, 2]^2; from a start in [-1, 1]^2 that takes more than 10 steps.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax.rollout import compaction_sizes, rollout
from spo_jax.teachers import Oracle
from spo_jax.tiny_envs import Balance, PointReach

BEHAVIOUR_LOG_PROB = -1.0  # what the test policies report, to see where it is kept


@dataclasses.dataclass(frozen=True)
class Recorder(Oracle):
  """Oracle that also records what `update` is shown: how many steps, the smallest mask,
  the last step index."""

  def init(self):
    return {"return": jnp.zeros(()), "steps": jnp.zeros((), jnp.int32),
            "min_mask": jnp.ones(()), "last_t": jnp.full((), -1, jnp.int32)}

  def update(self, summary, step):
    return {"return": summary["return"] + step.reward, "steps": summary["steps"] + 1,
            "min_mask": jnp.minimum(summary["min_mask"], step.mask), "last_t": step.t}


def random_forces(obs, key):
  raw_action = 2.0 * jax.random.normal(key, (obs.shape[0], 1))
  return raw_action, jnp.full((obs.shape[0],), BEHAVIOUR_LOG_PROB)


def push_up_right(obs, key):
  del key
  return jnp.full((obs.shape[0], 2), 1.5), jnp.full((obs.shape[0],), BEHAVIOUR_LOG_PROB)


def run(env, policy_fn, num_envs, horizon, seed=0):
  go = jax.jit(lambda key: rollout(env, policy_fn, key, num_envs, horizon, Recorder()))
  result = go(jax.random.PRNGKey(seed))
  return jax.tree.map(np.asarray, result)


def check_masked_layout(result, horizon):
  """The per-step invariants every rollout satisfies; returns the episode lengths."""
  traj, summary = result.trajectory, result.summaries
  mask = traj.mask
  lengths = mask.sum(axis=0).astype(int)
  steps = np.arange(horizon)[:, None]
  # Masks are prefixes 1...1 0...0, at least one step long.
  np.testing.assert_array_equal(mask, (steps < lengths[None, :]).astype(np.float32))
  assert (lengths >= 1).all()
  # `done` is flagged at most once, on the last valid step; an episode shorter than the
  # horizon must have been ended by the environment.
  assert (traj.done.sum(axis=0) <= 1).all()
  assert (traj.done <= mask).all()
  for i, length in enumerate(lengths):
    if length < horizon:
      assert traj.done[length - 1, i] == 1.0
  # Nothing is left on masked steps.
  invalid = mask == 0
  np.testing.assert_array_equal(traj.reward[invalid], 0.0)
  np.testing.assert_array_equal(traj.log_prob[invalid], 0.0)
  np.testing.assert_array_equal(traj.obs[invalid], 0.0)
  np.testing.assert_array_equal(traj.raw_action[invalid], 0.0)
  np.testing.assert_array_equal(traj.log_prob[~invalid], BEHAVIOUR_LOG_PROB)
  # The teacher saw exactly the valid steps, each with mask 1, and t counts from 0.
  np.testing.assert_allclose(summary["return"], traj.reward.sum(axis=0), rtol=1e-5)
  np.testing.assert_array_equal(summary["steps"], lengths)
  np.testing.assert_array_equal(summary["min_mask"], 1.0)
  np.testing.assert_array_equal(summary["last_t"], lengths - 1)
  return lengths


def test_balance_episodes_end_and_the_rest_is_skipped():
  num_envs, horizon = 8, 100
  result = run(Balance(), random_forces, num_envs, horizon)
  lengths = check_masked_layout(result, horizon)
  # Random forces topple every pole well before 100 steps, at different times.
  assert lengths.max() < horizon and len(set(lengths)) > 1
  # Balance pays 1 per valid step: return = length.
  np.testing.assert_array_equal(result.summaries["return"], lengths)
  # Physics runs while any episode runs (max length steps for all N), then stops.
  assert result.physics_steps == num_envs * lengths.max()
  assert result.physics_steps <= num_envs * horizon


def test_horizon_shorter_than_termination():
  # |theta| starts below 0.05 rad and cannot pass 0.2 rad in 3 steps of 0.02 s.
  num_envs, horizon = 4, 3
  result = run(Balance(), random_forces, num_envs, horizon)
  lengths = check_masked_layout(result, horizon)
  np.testing.assert_array_equal(result.trajectory.mask, 1.0)
  np.testing.assert_array_equal(result.trajectory.done, 0.0)
  np.testing.assert_array_equal(lengths, horizon)
  assert result.physics_steps == num_envs * horizon


def test_point_reach_steps_line_up():
  # Pushing with tanh(1.5) = 0.905 moves 0.0905 per step: from x0 in [-1, 1] the point
  # leaves at x > 2 after 12 to 33 steps, so a horizon of 20 mixes ended and cut episodes.
  num_envs, horizon = 8, 20
  result = run(PointReach(), push_up_right, num_envs, horizon, seed=3)
  lengths = check_masked_layout(result, horizon)
  assert lengths.min() < horizon and lengths.max() == horizon
  assert result.physics_steps == num_envs * horizon
  traj = result.trajectory
  for i, length in enumerate(lengths):
    obs, raw_action = traj.obs[:length, i], traj.raw_action[:length, i]
    # obs[t] is the observation the action was taken in: obs[t+1] = obs[t] + 0.1 tanh(u_t).
    np.testing.assert_allclose(obs[1:, :2], obs[:-1, :2] + 0.1 * np.tanh(raw_action[:-1]),
                               atol=1e-5)
    np.testing.assert_array_equal(obs[:, 2:], np.broadcast_to(obs[0, 2:], obs[:, 2:].shape))
    # reward[t] is paid after the action: -||pos_{t+1} - target||.
    distance = np.linalg.norm(obs[1:, :2] - obs[1:, 2:], axis=-1)
    np.testing.assert_allclose(traj.reward[:length - 1, i], -distance, rtol=1e-5)


def test_chunking_changes_nothing_but_the_loop_count():
  """The time loop runs in chunks of `chunk` steps; whatever the chunk (1, one that does not
  divide H, the whole horizon) the rollout is the same, bit for bit."""
  num_envs, horizon = 8, 100

  def go(chunk):
    fn = jax.jit(lambda key: rollout(Balance(), random_forces, key, num_envs, horizon,
                                     Recorder(), chunk=chunk))
    return jax.tree.map(np.asarray, fn(jax.random.PRNGKey(1)))

  reference = go(1)
  longest = int(reference.trajectory.mask.sum(axis=0).max())
  assert reference.loop_steps == longest  # chunk 1: the loop stops right after the last end
  for chunk in (7, 16, horizon):
    result = go(chunk)
    for x, y in zip(jax.tree.leaves(reference[:3]), jax.tree.leaves(result[:3]), strict=True):
      np.testing.assert_array_equal(x, y)
    # Whole chunks: the longest episode rounded up to a multiple of the chunk.
    assert result.loop_steps == min(-(-longest // chunk) * chunk, horizon)


def test_vmapped_seeds_simulate_only_up_to_the_longest_episode():
  """Under vmap over seeds the loop runs until the last episode of any seed ends: every seed
  simulates N x (max over seeds of the longest episode) steps, not N x H, and each seed's
  rollout equals its own single run."""
  num_envs, horizon, seeds = 8, 100, 4
  keys = jax.random.split(jax.random.PRNGKey(7), seeds)
  single = jax.jit(lambda key: rollout(Balance(), random_forces, key, num_envs, horizon,
                                       Recorder(), chunk=1))
  many = jax.tree.map(np.asarray, jax.jit(jax.vmap(single))(keys))
  lengths = many.trajectory.mask.sum(axis=1)  # [S, N]
  # Random forces end every episode early, at different times in different seeds.
  assert lengths.max() < horizon and len(set(lengths.max(axis=1))) > 1
  # Per seed the loop counts its own longest episode; the batched loop runs their maximum.
  np.testing.assert_array_equal(many.loop_steps, lengths.max(axis=1))
  assert num_envs * many.loop_steps.max() == num_envs * lengths.max()
  np.testing.assert_array_equal(many.physics_steps, num_envs * lengths.max(axis=1))
  for s in range(seeds):
    one = jax.tree.map(np.asarray, single(keys[s]))
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
      np.testing.assert_allclose(x, y[s], rtol=1e-6, atol=1e-6)


def test_segments_fold_each_block_of_steps_separately():
  """point_reach, H = 20 cut into segments of L = 5 (K = 4), pushed so that episodes end
  after 12 to 20 steps: the summary of segment k of trajectory i is the Recorder's fold over
  steps 5k .. 5k + 4 of i that are valid, with t counted from 0 in each segment; a segment
  that began after the episode ended keeps the fresh summary (0 steps, last_t = -1). The
  trajectory itself is the same as without segments."""
  num_envs, horizon, length = 8, 20, 5
  go = lambda segment_length: jax.tree.map(np.asarray, jax.jit(
      lambda key: rollout(PointReach(), push_up_right, key, num_envs, horizon, Recorder(),
                          segment_length=segment_length))(jax.random.PRNGKey(3)))
  whole, cut = go(0), go(length)
  np.testing.assert_array_equal(cut.trajectory.reward, whole.trajectory.reward)
  assert cut.summaries["return"].shape == (num_envs, horizon // length)
  mask = whole.trajectory.mask.reshape(horizon // length, length, num_envs)  # [K, L, N]
  reward = whole.trajectory.reward.reshape(horizon // length, length, num_envs)
  steps = mask.sum(axis=1).T.astype(int)  # [N, K] valid steps per segment
  assert (steps == 0).any() and (steps == length).any()  # both kinds of segment occur
  np.testing.assert_allclose(cut.summaries["return"], reward.sum(axis=1).T, rtol=1e-5)
  np.testing.assert_array_equal(cut.summaries["steps"], steps)
  np.testing.assert_array_equal(cut.summaries["last_t"], steps - 1)


def test_segments_with_episode_summaries_fold_both():
  """`episode_summary` with segments: the summaries are the pair (segments, whole episodes),
  each exactly what a rollout of that kind alone folds (same key, same trajectory)."""
  num_envs, horizon = 8, 20
  go = lambda **kw: jax.tree.map(np.asarray, jax.jit(
      lambda key: rollout(PointReach(), push_up_right, key, num_envs, horizon, Recorder(),
                          **kw))(jax.random.PRNGKey(3)))
  whole, cut, both = go(), go(segment_length=5), go(segment_length=5, episode_summary=True)
  segments, episodes = both.summaries
  for x, y in zip(jax.tree.leaves((cut.summaries, whole.summaries)),
                  jax.tree.leaves((segments, episodes)), strict=True):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(both.trajectory.reward, whole.trajectory.reward)
  # Without segments the flag changes nothing: whole episodes are folded already.
  np.testing.assert_array_equal(go(episode_summary=True).summaries["return"],
                                whole.summaries["return"])


def compacted_physics_reference(lengths, sizes, horizon):
  """NumPy reference for a compacting rollout's physics (chunk 1): each loop step costs the
  current batch size; after step t the batch shrinks to the next size once at most that many
  episodes are still running (an episode of length l runs during steps 0 .. l - 1)."""
  level, physics = 0, 0
  for t in range(horizon):
    running = int((lengths > t).sum())
    if running == 0:
      break
    physics += sizes[level]
    after = int((lengths > t + 1).sum())
    while level + 1 < len(sizes) and after <= sizes[level + 1]:
      level += 1
  return physics


def test_compaction_changes_the_physics_not_the_rollout():
  """Balance under random forces, N = 64: stepping the live episodes in batches of 64, then
  16, then 4 as they end gives the same trajectory and teacher summaries (whole episodes and
  segments) as stepping all 64 until the longest ends, for fewer physics steps, exactly as
  many as the NumPy reference counts."""
  num_envs, horizon, sizes = 64, 200, (64, 16, 4)

  def go(batch_sizes, segment_length=0):
    fn = jax.jit(lambda key: rollout(Balance(), random_forces, key, num_envs, horizon,
                                     Recorder(), chunk=1, segment_length=segment_length,
                                     batch_sizes=batch_sizes))
    return jax.tree.map(np.asarray, fn(jax.random.PRNGKey(5)))

  for segment_length in (0, 10):
    plain, compact = go(None, segment_length), go(sizes, segment_length)
    for x, y in zip(jax.tree.leaves(plain[:2]), jax.tree.leaves(compact[:2]), strict=True):
      np.testing.assert_array_equal(x, y)
    lengths = plain.trajectory.mask.sum(axis=0).astype(int)
    # Episodes end at many different times; most long before the longest one.
    assert 2 * np.median(lengths) < lengths.max()
    assert plain.physics_steps == num_envs * lengths.max()
    assert compact.physics_steps == compacted_physics_reference(lengths, sizes, horizon)
    assert lengths.sum() <= compact.physics_steps < plain.physics_steps / 2
    assert compact.loop_steps == plain.loop_steps


def test_compaction_under_vmapped_seeds_equals_each_seeds_own_run():
  """Under vmap each seed moves between batch sizes at its own time (its carry waits while
  other seeds finish a level), so every seed's compacted rollout equals its single run."""
  num_envs, horizon, seeds = 32, 100, 3
  keys = jax.random.split(jax.random.PRNGKey(11), seeds)
  single = jax.jit(lambda key: rollout(Balance(), random_forces, key, num_envs, horizon,
                                       Recorder(), chunk=4, batch_sizes=(32, 8, 2)))
  many = jax.tree.map(np.asarray, jax.jit(jax.vmap(single))(keys))
  for s in range(seeds):
    one = jax.tree.map(np.asarray, single(keys[s]))
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
      np.testing.assert_allclose(x, y[s], rtol=1e-6, atol=1e-6)


def test_compaction_sizes():
  """N, N / 4, N / 16, ... while the size divides by 4 and stays at least 8."""
  assert compaction_sizes(256) == (256, 64, 16)
  assert compaction_sizes(32) == (32, 8)
  assert compaction_sizes(16) == (16,)  # 4 < 8: too small to be worth another compile
  assert compaction_sizes(24) == (24,)  # 6 < 8
  assert compaction_sizes(4096, factor=8, smallest=1) == (4096, 512, 64, 8, 1)
  with pytest.raises(ValueError, match="at least 2"):
    compaction_sizes(64, factor=1)
  with pytest.raises(ValueError, match="must decrease"):
    rollout(Balance(), random_forces, jax.random.PRNGKey(0), 8, 10, batch_sizes=(8, 8))
