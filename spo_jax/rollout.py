"""Rollout: N episodes from reset, fixed horizon H, teacher folded inside the time loop.

Step t of environment i is *valid* (mask 1) while the episode has not terminated before it;
the step on which the environment reports `done` is the last valid one. Later steps carry
mask 0 and zero reward, never reach the teacher, and are ignored by the loss.

The time loop is a `lax.while_loop` over chunks of `chunk` steps (each chunk a `lax.scan`
writing its slice of the [H, N, ...] buffers) that stops once every episode has ended. Inside
a chunk a `lax.cond` skips the physics after the last episode ended, so a single run costs
exactly (longest episode) x N physics steps. Under `vmap` over seeds the cond becomes a select
and the while loop runs until every seed's episodes have ended: each seed then simulates
max over seeds of (longest episode, rounded up to whole chunks) steps, not H. Why chunks and
not single steps: under `vmap` with a batched stop condition JAX selects every carried value
on every trip, the [H, N, ...] buffers included, which would cost O(H) per step; one trip per
chunk divides that by `chunk` (docs/performance.md measures it). Results are identical
whatever the chunk: steps after the end are zeros either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from spo_jax.networks import action_distribution
from spo_jax.teachers import TeacherStep

# (obs [N, D], key) -> (raw_action [N, A], log_prob [N]); the env action is
# `action_distribution(env).to_env_action(raw_action)`: tanh(raw_action) for continuous
# actions, the one-hot raw action itself for discrete ones (networks.py).
PolicyFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


class Trajectory(NamedTuple):
  """One iteration's experience, time-major."""

  obs: jax.Array  # [H, N, D] raw observation at step t
  raw_action: jax.Array  # [H, N, A] pre-tanh action (one-hot action for discrete envs)
  log_prob: jax.Array  # [H, N] behaviour log-probability
  reward: jax.Array  # [H, N] environment reward, 0 on masked steps
  mask: jax.Array  # [H, N] 1.0 on valid steps
  done: jax.Array  # [H, N] 1.0 on the step the environment terminated


class RolloutResult(NamedTuple):
  trajectory: Trajectory
  summaries: Any  # teacher summaries, leaves [N, ...] ([N, H / L, ...] with segments of L
  # steps; None without a teacher)
  physics_steps: jax.Array  # [], int32: N x steps up to the longest episode (masked included)
  loop_steps: jax.Array  # [], int32: time steps the loop ran (whole chunks, at most H)


# Steps per trip of the time loop (see the module docstring); measured in docs/performance.md.
DEFAULT_CHUNK = 16
# Compaction (see the module docstring): each smaller batch is the previous one divided by
# COMPACTION_FACTOR, down to SMALLEST_BATCH envs. Each size is one more compiled copy of the
# env's step, so the factor trades compile time against physics executed (at most
# COMPACTION_FACTOR x the valid steps plus one chunk per level).
COMPACTION_FACTOR = 4
SMALLEST_BATCH = 8


def _masked_select(keep: jax.Array, new: Any, old: Any) -> Any:
  def select(n, o):
    return jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - keep.ndim)), n, o)

  return jax.tree.map(select, new, old)


def compaction_sizes(num_envs: int, factor: int = COMPACTION_FACTOR,
                     smallest: int = SMALLEST_BATCH) -> tuple[int, ...]:
  """The batch sizes a compacting rollout steps its live episodes in: N, N / f, N / f^2, ...
  down to `smallest` (each size a whole division by `factor`), e.g. 256 -> (256, 64, 16).

  The first entry is always N; (N,) alone means no compaction (factor 0, the config's "off",
  or N too small to divide).
  """
  if factor == 0:
    return (num_envs,)
  if factor < 2:
    raise ValueError(f"compaction factor must be at least 2, got {factor}")
  sizes = [num_envs]
  while sizes[-1] % factor == 0 and sizes[-1] // factor >= smallest:
    sizes.append(sizes[-1] // factor)
  return tuple(sizes)


def rollout(env: Env, policy_fn: PolicyFn, key: jax.Array, num_envs: int, horizon: int,
            teacher: Any | None = None,
            shard_envs: Callable[[Any], Any] | None = None,
            chunk: int | None = None, segment_length: int = 0,
            batch_sizes: tuple[int, ...] | None = None,
            episode_summary: bool = False) -> RolloutResult:
  """Run `num_envs` episodes of at most `horizon` steps from reset.

  `chunk`: steps per trip of the time loop (None: the module's `DEFAULT_CHUNK`, read at
  trace time so a benchmark can compare chunkings; `chunk = horizon` is one `scan` over H
  with the skip inside, the layout before the while loop). Physics actually executed:
  `physics_steps` for a single run; under `vmap` over seeds, each level's steps are those of
  the seed that stays longest at that level (the batched loops run in step).

  `batch_sizes` (decreasing, the first = N; e.g. `compaction_sizes(N)`): the live episodes
  are stepped in a batch of N until at most `batch_sizes[1]` of them are still running, then
  gathered into a batch of that size, and so on (the module docstring says why). None or (N,):
  every env is stepped until the longest episode ends. The trajectory is the same whichever
  sizes are used (the policy always sees all N observations, so its random draws do not
  depend on the batch; physics per env is independent of the batch).

  `shard_envs`, if given, places a pytree whose leaves lead with the env axis N (e.g. a
  `with_sharding_constraint` over a device mesh); it is applied to the env state and the
  summaries, and the compiler propagates the layout through the scan. Compaction would
  gather across devices, so a sharded rollout uses the single size N.

  `segment_length` L > 0 (a divisor of `horizon`): the teacher folds each segment of L steps
  separately, from a fresh `teacher.init()` and with the segment's own step index t - kL, into
  summaries with leaves [N, H / L, ...] (segment k of trajectory i at [i, k]); 0 folds whole
  episodes into leaves [N, ...]. `episode_summary` (with segments): fold the whole episode as
  well, with the global step index t; summaries are then the pair (segments [N, H / L, ...],
  episodes [N, ...]).
  """
  sizes = _batch_sizes(num_envs, batch_sizes, shard_envs)
  k_reset, k_steps = jax.random.split(key)
  state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))
  if shard_envs is not None:
    state = shard_envs(state)
  num_segments = horizon // segment_length if segment_length else 0
  if segment_length and horizon % segment_length:
    raise ValueError(f"segment_length {segment_length} must divide the horizon {horizon}")
  episode_summary = bool(episode_summary and num_segments)
  summaries = _init_summaries(teacher, num_envs, num_segments)
  if episode_summary and teacher is not None:
    summaries = (summaries, _init_summaries(teacher, num_envs, 0))
  chunk = max(1, min(DEFAULT_CHUNK if chunk is None else chunk, horizon))
  loop = _Loop(env, policy_fn, teacher, action_distribution(env).to_env_action, num_envs,
               horizon, chunk, -(-horizon // chunk), segment_length, num_segments,
               episode_summary,
               jax.random.split(k_steps, horizon))  # key of step t, whatever the chunking
  buffers = _empty_buffers(loop, state, summaries)
  alive = jnp.ones((num_envs,), jnp.float32)
  carry = (state, summaries, alive, jnp.zeros((), jnp.int32),
           jnp.arange(num_envs, dtype=jnp.int32))
  chunks = jnp.zeros((), jnp.int32)
  for level, size in enumerate(sizes):
    if level:
      if teacher is not None:  # ended episodes' summaries are final: keep them
        summaries = _write_back(summaries, carry)
      carry = _compact(carry, size, num_envs)
    next_size = sizes[level + 1] if level + 1 < len(sizes) else 0
    chunks, carry, buffers = _run_level(loop, size, next_size, (chunks, carry, buffers))
  if teacher is not None:
    summaries = _write_back(summaries, carry) if len(sizes) > 1 else carry[1]
  trajectory = jax.tree.map(lambda b: b[:horizon], buffers)
  loop_steps = jnp.minimum(chunks * chunk, horizon)
  return RolloutResult(trajectory, summaries, carry[3], loop_steps)


class _Loop(NamedTuple):
  """What every step of one rollout's time loop reads, fixed when it is traced. The loop's
  carry is (env state, summaries, alive [size], physics steps [], env_index [size])."""

  env: Env
  policy_fn: PolicyFn
  teacher: Any  # None: no summaries
  to_env_action: Callable[[jax.Array], jax.Array]
  num_envs: int  # N
  horizon: int  # H
  chunk: int  # steps per trip of the while loop
  num_chunks: int  # ceil(H / chunk)
  segment_length: int  # L, 0 for whole episodes
  num_segments: int  # H / L, 0 for whole episodes
  episode_summary: bool  # with segments, summaries = (segments, whole episodes)
  keys: jax.Array  # [H] keys, that of step t at t


def _batch_sizes(num_envs: int, batch_sizes: tuple[int, ...] | None,
                 shard_envs: Callable[[Any], Any] | None) -> tuple[int, ...]:
  """The checked batch sizes of a rollout: (N,) when none are given or the envs are sharded
  (compaction would gather across devices); raises `ValueError` unless they decrease from N."""
  sizes = (num_envs,) if batch_sizes is None or shard_envs is not None else tuple(batch_sizes)
  decreasing = all(b < a for a, b in zip(sizes, sizes[1:], strict=False))
  if sizes[0] != num_envs or not decreasing or sizes[-1] < 1:
    raise ValueError(f"batch_sizes {sizes} must decrease from num_envs = {num_envs}")
  return sizes


def _init_summaries(teacher: Any | None, num_envs: int, num_segments: int) -> Any:
  """`teacher.init()` for every env (leaves [N, ...]) or every segment of every env (leaves
  [N, H / L, ...]); None without a teacher."""
  if teacher is None:
    return None
  init_one = lambda _: teacher.init()
  if num_segments:
    init_one = lambda _: jax.vmap(lambda _: teacher.init())(jnp.arange(num_segments))
  return jax.vmap(init_one)(jnp.arange(num_envs))


def _full_rows(loop: _Loop, size: int, x: jax.Array, env_index: jax.Array) -> jax.Array:
  """[size, ...] -> [N, ...] with the slots at their envs' rows (empty slots, env index N,
  dropped); the identity when size = N."""
  if size == loop.num_envs:
    return x
  return jnp.zeros((loop.num_envs,) + x.shape[1:], x.dtype).at[env_index].set(x, mode="drop")


def _slot_rows(loop: _Loop, size: int, x: jax.Array, env_index: jax.Array) -> jax.Array:
  """[N, ...] -> [size, ...]: the rows of the slots' envs (empty slots read row N - 1)."""
  return x if size == loop.num_envs else x[jnp.minimum(env_index, loop.num_envs - 1)]


def _fold_teacher(loop: _Loop, size: int, summaries: Any, step: TeacherStep, t: jax.Array,
                  valid: jax.Array) -> Any:
  """`teacher.update` of the batch's summaries with step t where `valid`; with segments, only
  the summary of t's segment k = t // L, shown its step index t - kL (and, with
  `episode_summary`, the whole episode's summary, shown t)."""
  if loop.episode_summary:
    segments, episodes = summaries
    whole_step = step._replace(t=jnp.full((size,), t, jnp.int32))
    whole = _masked_select(valid, jax.vmap(loop.teacher.update)(episodes, whole_step), episodes)
    return _fold_teacher(loop._replace(episode_summary=False), size, segments, step, t,
                         valid), whole
  k = t // loop.segment_length if loop.num_segments else 0
  step = step._replace(t=jnp.full((size,), t - k * loop.segment_length, jnp.int32))
  current = (jax.tree.map(lambda x: x[:, k], summaries) if loop.num_segments else summaries)
  updated = _masked_select(valid, jax.vmap(loop.teacher.update)(current, step), current)
  if not loop.num_segments:
    return updated
  return jax.tree.map(lambda x, u: jax.lax.dynamic_update_index_in_dim(x, u, k, 1),
                      summaries, updated)


def _live_step(loop: _Loop, size: int, carry: tuple, t: jax.Array, key: jax.Array
               ) -> tuple[tuple, Trajectory]:
  """One time step of a batch of `size` envs: act, step, mask, fold into the teacher;
  returns the new carry and the step's [N, ...] trajectory row."""
  state, summaries, alive, steps, env_index = carry
  obs = state.obs
  # The policy sees all N rows, so that env i's draw is the same at every batch size.
  raw_full, log_prob_full = loop.policy_fn(_full_rows(loop, size, obs, env_index), key)
  raw_action = _slot_rows(loop, size, raw_full, env_index)
  log_prob = _slot_rows(loop, size, log_prob_full, env_index)
  action = loop.to_env_action(raw_action)
  next_state = jax.vmap(loop.env.step)(state, action)
  valid = alive > 0
  # `where`, not multiplication: physics after termination may hold inf/nan, and
  # nan * 0 = nan would leak into the loss and its gradients.
  reward = jnp.where(valid, next_state.reward, 0.0)
  done = jnp.where(valid, jnp.minimum(next_state.done, 1.0), 0.0)
  if loop.teacher is not None:
    step = TeacherStep(obs=obs, next_obs=next_state.obs, action=action,
                       reward=next_state.reward, metrics=next_state.metrics, mask=alive, t=t)
    summaries = _fold_teacher(loop, size, summaries, step, t, valid)
  out = Trajectory(_masked_select(valid, obs, jnp.zeros_like(obs)),
                   _masked_select(valid, raw_action, jnp.zeros_like(raw_action)),
                   jnp.where(valid, log_prob, 0.0), reward, alive, done)
  out = jax.tree.map(lambda x: _full_rows(loop, size, x, env_index), out)
  return (next_state, summaries, alive * (1.0 - done), steps + size, env_index), out


def _dead_step(loop: _Loop, carry: tuple, t: jax.Array, key: jax.Array
               ) -> tuple[tuple, Trajectory]:
  """A time step after every episode of the batch ended: no physics, a row of zeros."""
  del t, key
  n, obs = loop.num_envs, carry[0].obs
  out = Trajectory(jnp.zeros((n,) + obs.shape[1:], obs.dtype),
                   jnp.zeros((n, loop.env.action_size)), jnp.zeros((n,)),
                   jnp.zeros((n,)), jnp.zeros((n,)), jnp.zeros((n,)))
  return carry, out


def _step(loop: _Loop, size: int, carry: tuple, inputs: tuple[jax.Array, jax.Array]
          ) -> tuple[tuple, Trajectory]:
  """The scan body of a batch of `size` envs: a live step while an episode runs and t < H,
  else a dead one (the `cond` skips the physics)."""
  t, key = inputs
  live = jnp.any(carry[2] > 0) & (t < loop.horizon)
  return jax.lax.cond(live, functools.partial(_live_step, loop, size),
                      functools.partial(_dead_step, loop), carry, t, key)


def _run_level(loop: _Loop, size: int, next_size: int, state: tuple) -> tuple:
  """Chunks of the time loop at batch `size` while more than `next_size` episodes run.
  state: (chunks done [], carry, [num_chunks * chunk, N, ...] buffers)."""
  body = functools.partial(_step, loop, size)

  def run_chunk(state):
    c, carry, buffers = state
    t = c * loop.chunk + jnp.arange(loop.chunk)
    carry, out = jax.lax.scan(body, carry, (t, loop.keys[jnp.minimum(t, loop.horizon - 1)]))
    buffers = jax.tree.map(
        lambda b, o: jax.lax.dynamic_update_slice_in_dim(b, o, c * loop.chunk, 0), buffers, out)
    return c + 1, carry, buffers

  def running(state):
    c, carry, _ = state
    live = jnp.sum(carry[2] > 0)
    return (c < loop.num_chunks) & (live > next_size)

  return jax.lax.while_loop(running, run_chunk, state)


def _empty_buffers(loop: _Loop, state: Any, summaries: Any) -> Trajectory:
  """Zeroed trajectory buffers [num_chunks * chunk, N, ...], shaped like a step's row."""
  template = jax.eval_shape(lambda c: _dead_step(loop, c, 0, loop.keys[0])[1],
                            (state, summaries, jnp.ones((loop.num_envs,)), 0,
                             jnp.arange(loop.num_envs)))
  return jax.tree.map(lambda x: jnp.zeros((loop.num_chunks * loop.chunk,) + x.shape, x.dtype),
                      template)


def _write_back(summaries_all: Any, carry: tuple) -> Any:
  """The batch's summaries written to their envs' rows of the [N, ...] summaries."""
  env_index, level_summaries = carry[4], carry[1]
  return jax.tree.map(lambda a, x: a.at[env_index].set(x, mode="drop"), summaries_all,
                      level_summaries)


def _compact(carry: tuple, size: int, num_envs: int) -> tuple:
  """The live episodes of `carry` gathered into `size` slots (empty slots: alive 0, env
  index N, a copy of some slot's state that is stepped but never recorded)."""
  state, level_summaries, alive, steps, env_index = carry
  old_size = alive.shape[0]
  slot = jnp.nonzero(alive > 0, size=size, fill_value=old_size)[0]
  present = slot < old_size
  source = jnp.minimum(slot, old_size - 1)
  take = lambda tree: jax.tree.map(lambda x: x[source], tree)
  return (take(state), take(level_summaries), jnp.where(present, alive[source], 0.0), steps,
          jnp.where(present, env_index[source], num_envs))
