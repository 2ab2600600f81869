"""From preferences to rewards: preference matrix, win rates, opponent queue, reward placement.

The core of Self-Play Preference Optimization (SPO; Swamy et al. 2024, "A Minimaximalist
Approach to Reinforcement Learning from Human Feedback", Alg. 1): each trajectory's reward is
its win rate against other trajectories of the same policy, as judged by the teacher,

    w_i = sum_j m_ij P_ij / sum_j m_ij,

where P_ij = P(i preferred to j) and m_ij = 1 where j is an opponent of i on which the
teacher gave a label. Opponents are all other trajectories of the batch (or k random ones)
and, optionally, summaries of past trajectories kept in a FIFO queue.

Choices made here (documented in docs/design.md):
- self-comparison: 'exclude' (default) leaves i out of its own opponents; 'tie' counts it
  once with P_ii = 1/2, which pulls every win rate towards 1/2 by a factor (N-1)/N.
- a trajectory with no labelled opponent gets w = 1/2 (no information = a tie).
- sampled labels in all-pairs mode draw ONE Bernoulli label per unordered pair, so
  label_ji = 1 - label_ij as with a real rater; labels against queue entries are drawn
  independently per query.
- cyclic triples (`majority_cycles`) are counted on the batch's all-pairs matrix of the
  teacher's soft P only (random opponents and queue entries give no full matrix), among the
  first CYCLE_COUNT_SIZE trajectories of the batch, which bounds the O(N^3) count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from spo_jax.fifo import fifo_write
from spo_jax.teachers import TeacherProtocol, ask, invalid_answer

# Cyclic triples are counted among the first 1024 trajectories of a batch: the count costs one
# [M, M] x [M, M] product, ~2e9 flops at M = 1024 (tens of ms on a 2-core CPU) but ~1.4e11 at
# N = 4096 (seconds, more than the rest of the win-rate machinery). The trajectories of a batch
# are exchangeable (independent episodes of one policy), so the first M are a uniform random
# subset and their fraction is an unbiased estimate of the whole batch's.
CYCLE_COUNT_SIZE = 1024


class OpponentQueue(NamedTuple):
  """FIFO of trajectory summaries from past iterations."""

  summaries: Any  # pytree, leaves [Q, ...]
  count: jax.Array  # [], int32: summaries pushed so far (slots [0, min(count, Q)) are valid)
  pointer: jax.Array  # [], int32: next slot to overwrite


class WinRates(NamedTuple):
  winrate: jax.Array  # [N], in [0, 1]
  num_queries: jax.Array  # [], int32: pairs put to the teacher (self-pairs not counted)
  num_labels: jax.Array  # [], int32: queries the teacher answered (did not abstain)
  num_invalid: jax.Array  # [], int32: answers that were not probabilities (nan, inf, < 0, > 1)
  # `majority_cycles` of the batch's soft preference matrix; None where no full matrix exists
  # (random opponents).
  num_cyclic: jax.Array | None = None  # [], float32: cyclic triples of the majority relation
  num_triples: jax.Array | None = None  # [], float32: triples of valid trajectories, C(n, 3)


def winrate(pref: jax.Array, mask: jax.Array) -> jax.Array:
  """Row win rates.

  pref: [N, M] P(i > j); mask: [N, M] 1 where j is a labelled opponent of i.
  Returns [N]: sum_j mask * pref / sum_j mask, and 1/2 for a row without any opponent.
  """
  chex.assert_rank(pref, 2)
  chex.assert_equal_shape([pref, mask])
  mask = mask.astype(pref.dtype)
  total = jnp.sum(mask, axis=-1)
  # `where`, not mask * pref: an unasked pair's answer may be nan (e.g. an empty segment).
  wins = jnp.sum(jnp.where(mask > 0, pref, 0.0), axis=-1)
  return jnp.where(total > 0, wins / jnp.maximum(total, 1.0), 0.5)


def majority_cycles(pref: jax.Array, valid: jax.Array | None = None
                    ) -> tuple[jax.Array, jax.Array]:
  """Cyclic triples of the teacher's majority relation: how intransitive a batch is.

  pref: [N, N], P_ij = P(i > j), the teacher's expected (soft) preference; valid: optional
  [N] bool, the trajectories taking part (default: all N).

  The majority edge i -> j exists when P_ij > P_ji, which is P_ij > 1/2 under the contract
  P_ji = 1 - P_ij; comparing with the transpose keeps the relation antisymmetric even if
  the two answers are rounded differently. With A [N, N] in {0, 1}, A_ij = 1 for an edge
  between two distinct valid trajectories, a triple {i, j, k} is cyclic when its edges form
  a directed 3-cycle i -> j -> k -> i (in either direction). trace(A^3) counts closed walks
  of length 3; in an antisymmetric relation without self-loops each of them is a directed
  3-cycle, met once from each of its three vertices, so

    cyclic  = trace(A^3) / 3 = sum_ij (A A)_ij A_ji / 3
    triples = C(n, 3) = n (n - 1) (n - 2) / 6,   n = sum_i valid_i.

  Ties: a pair with P_ij = P_ji (1/2: a tie, or an abstention that the caller passes as
  1/2) or a nan answer has no edge, so a triple with a tied pair is never cyclic; it stays
  in the denominator. cyclic / triples is then the probability that three distinct valid
  trajectories drawn at random form a majority cycle (Condorcet's paradox) — 0 for any
  teacher that ranks trajectories by a score, e.g. the return.

  Cost: one [N, N] x [N, N] product, O(N^3) flops and O(N^2) memory (no [N, N, N]
  intermediate). Exact: the entries of A are 0/1 and those of A A at most N, representable
  even where a float32 product rounds its inputs (TF32, bf16 passes) and accumulates in
  float32; the final sum (trace(A^3) <= ~N^3 / 8) is float32, relative error ~1e-7.
  Returns (cyclic, triples), float32 []: counts as floats because C(4096, 3) ~ 1.1e10
  overflows int32.
  """
  num = pref.shape[0]
  if valid is None:
    valid = jnp.ones((num,), bool)
  both = valid[:, None] & valid[None, :]
  # nan > x is False: a nan answer (e.g. an unbegun segment) is no edge.
  edge = (both & (pref > pref.T)).astype(jnp.float32)
  cyclic = jnp.sum((edge @ edge) * edge.T) / 3.0
  n = jnp.sum(valid).astype(jnp.float32)
  return cyclic, n * (n - 1.0) * (n - 2.0) / 6.0  # 0 triples for n < 3


def cyclic_triple_fraction(pref: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """[] float32 in [0, 1]: cyclic / triples of `majority_cycles(pref, valid)`; 0 when fewer
  than three trajectories are valid (no triple, nothing intransitive)."""
  cyclic, triples = majority_cycles(pref, valid)
  return cyclic / jnp.maximum(triples, 1.0)


def queue_init(summary_template: Any, size: int) -> OpponentQueue:
  """An empty queue of `size` slots shaped like one summary (`summary_template`)."""
  summaries = jax.tree.map(
      lambda x: jnp.zeros((size,) + jnp.shape(x), jnp.result_type(x)), summary_template)
  return OpponentQueue(summaries, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def queue_size(queue: OpponentQueue | None) -> int:
  if queue is None:
    return 0
  leaves = jax.tree.leaves(queue.summaries)
  return leaves[0].shape[0] if leaves else 0


def queue_valid(queue: OpponentQueue) -> jax.Array:
  """[Q] bool: which slots hold a summary."""
  size = queue_size(queue)
  return jnp.arange(size) < jnp.minimum(queue.count, size)


def queue_push(queue: OpponentQueue, summaries: Any) -> OpponentQueue:
  """Push the first min(N, Q) of `summaries` (leaves [N, ...]) into the FIFO."""
  num = jax.tree.leaves(summaries)[0].shape[0]
  out = fifo_write(queue.summaries, queue.pointer, summaries,
                   jnp.arange(num) < min(num, queue_size(queue)))
  return OpponentQueue(out.stores, queue.count + out.num_kept, out.pointer)


def _pair_fn(teacher: TeacherProtocol, key: jax.Array):
  """`ask` for one pair (a, b), with a key folded from the pair's index."""
  return lambda a, b, index: ask(teacher, a, b, key, index)


def _take(tree: Any, index: jax.Array) -> Any:
  return jax.tree.map(lambda x: x[index], tree)


def all_pairs_winrates(teacher: TeacherProtocol, summaries: Any, queue: OpponentQueue | None,
                       key: jax.Array, *, self_comparison: str = "exclude",
                       labels: str = "soft", valid: jax.Array | None = None) -> WinRates:
  """Win rates of N trajectories against every other one (and every valid queue entry).

  summaries: leaves [N, ...]. Builds the [N, N + Q] preference matrix with vmap(vmap(...)),
  O(N (N + Q)) teacher calls; one query per unordered batch pair plus one per (i, queue) pair.
  valid: optional [N] bool (segments: False for a segment that began after its episode
  ended). A pair is put to the teacher only when both are valid; a valid one beats an invalid
  one without a query (P = 1: a segment lived beats one never lived, as a longer episode
  beats a shorter one), and an invalid row's win rate is not used.
  """
  num = jax.tree.leaves(summaries)[0].shape[0]
  k_pref, k_label, k_queue_label = jax.random.split(key, 3)
  pair = _pair_fn(teacher, k_pref)
  rows = jnp.arange(num)
  index = rows[:, None] * num + rows[None, :]
  pref, abstain = jax.vmap(
      jax.vmap(pair, (None, 0, 0)), (0, None, 0))(summaries, summaries, index)
  eye = jnp.eye(num, dtype=bool)
  abstain = abstain | abstain.T  # a pair is labelled or not, whichever way it is asked
  upper = jnp.triu(jnp.ones((num, num), bool), 1)
  if valid is not None:
    both = valid[:, None] & valid[None, :]
    abstain = abstain | ~both
    upper = upper & both
    beats_unbegun = valid[:, None] & ~valid[None, :]
  num_invalid = jnp.sum(invalid_answer(pref) & ~abstain & ~eye)
  # Before labels are sampled: the cycles of the teacher's own P, not of one draw of labels.
  # An abstention is no majority either way, as a tie.
  cut = min(num, CYCLE_COUNT_SIZE)
  num_cyclic, num_triples = majority_cycles(jnp.where(abstain, 0.5, pref)[:cut, :cut],
                                            None if valid is None else valid[:cut])
  if labels == "sampled":
    label = (jax.random.uniform(k_label, (num, num)) < pref).astype(jnp.float32)
    label_upper = jnp.where(upper, label, 0.0)
    pref = label_upper + jnp.where(upper.T, 1.0 - label_upper.T, 0.0)
  mask = ~abstain & ~eye
  num_queries = jnp.sum(upper)
  num_labels = jnp.sum(mask & upper)
  if self_comparison == "tie":
    pref = jnp.where(eye, 0.5, pref)
    mask = mask | eye
  if valid is not None:
    pref = jnp.where(beats_unbegun, 1.0, pref)
    mask = mask | beats_unbegun
  mask = mask.astype(jnp.float32)

  size = queue_size(queue)
  if size:
    valid = queue_valid(queue)
    q_index = num * num + rows[:, None] * size + jnp.arange(size)[None, :]
    q_pref, q_abstain = jax.vmap(
        jax.vmap(pair, (None, 0, 0)), (0, None, 0))(summaries, queue.summaries, q_index)
    num_invalid = num_invalid + jnp.sum(invalid_answer(q_pref) & ~q_abstain & valid[None, :])
    if labels == "sampled":
      q_pref = (jax.random.uniform(k_queue_label, q_pref.shape) < q_pref).astype(jnp.float32)
    q_mask = valid[None, :] & ~q_abstain
    pref = jnp.concatenate([pref, q_pref], axis=1)
    mask = jnp.concatenate([mask, q_mask.astype(jnp.float32)], axis=1)
    num_queries = num_queries + num * jnp.sum(valid)
    num_labels = num_labels + jnp.sum(q_mask)
  return WinRates(winrate(pref, mask), num_queries.astype(jnp.int32),
                  num_labels.astype(jnp.int32), num_invalid.astype(jnp.int32),
                  num_cyclic, num_triples)


def sampled_opponent_winrates(teacher: TeacherProtocol, summaries: Any, queue: OpponentQueue | None,
                              key: jax.Array, num_opponents: int, *,
                              self_comparison: str = "exclude",
                              labels: str = "soft", valid: jax.Array | None = None) -> WinRates:
  """Win rates against k = num_opponents opponents per trajectory, drawn uniformly with
  replacement from the batch (self excluded, or included as a tie) and the valid queue.

  O(N k) teacher calls: bounds the number of queries for large N. valid: optional [N] bool,
  as in `all_pairs_winrates`: only valid pairs are asked, a valid trajectory beats an invalid
  opponent it draws without a query.
  """
  num = jax.tree.leaves(summaries)[0].shape[0]
  size = queue_size(queue)
  k_draw, k_pref, k_label = jax.random.split(key, 3)
  num_valid = jnp.minimum(queue.count, size) if size else jnp.zeros((), jnp.int32)
  batch_candidates = num - 1 if self_comparison == "exclude" else num
  candidates = batch_candidates + num_valid
  u = jnp.floor(jax.random.uniform(k_draw, (num, num_opponents)) * candidates).astype(jnp.int32)
  u = jnp.minimum(u, candidates - 1)
  rows = jnp.arange(num)[:, None]
  from_batch = u < batch_candidates
  if self_comparison == "exclude":
    batch_index = (rows + 1 + u) % num  # uniform over the other N - 1
  else:
    batch_index = jnp.minimum(u, num - 1)
  is_self = from_batch & (batch_index == rows)

  opponents = _take(summaries, batch_index)
  if size:
    queue_index = jnp.clip(u - batch_candidates, 0, size - 1)
    from_queue = _take(queue.summaries, queue_index)
    opponents = jax.tree.map(
        lambda b, q: jnp.where(from_batch.reshape(from_batch.shape + (1,) * (b.ndim - 2)), b, q),
        opponents, from_queue)
  pair = _pair_fn(teacher, k_pref)
  index = rows * num_opponents + jnp.arange(num_opponents)[None, :]
  mine = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (num, num_opponents) + x.shape[1:]),
                      summaries)
  pref, abstain = jax.vmap(jax.vmap(pair))(mine, opponents, index)
  if valid is not None:
    opponent_valid = jnp.where(from_batch, valid[batch_index], True)
    ok = valid[:, None] & opponent_valid
    beats_unbegun = valid[:, None] & ~opponent_valid
    abstain = abstain | ~ok
    is_self = is_self & ok
  num_invalid = jnp.sum(invalid_answer(pref) & ~abstain & ~is_self)
  if labels == "sampled":
    pref = (jax.random.uniform(k_label, pref.shape) < pref).astype(jnp.float32)
  pref = jnp.where(is_self, 0.5, pref)
  mask = ~abstain | is_self
  asked = ~is_self
  if valid is not None:
    pref = jnp.where(beats_unbegun, 1.0, pref)
    mask = mask | beats_unbegun
    asked = asked & ok
  mask = mask.astype(jnp.float32)
  return WinRates(winrate(pref, mask), jnp.sum(asked).astype(jnp.int32),
                  jnp.sum(asked & ~abstain).astype(jnp.int32), num_invalid.astype(jnp.int32))


def compute_winrates(teacher: TeacherProtocol, summaries: Any, queue: OpponentQueue | None,
                     key: jax.Array, *, num_opponents: int = 0,
                     self_comparison: str = "exclude", labels: str = "soft",
                     valid: jax.Array | None = None) -> WinRates:
  """All pairs when `num_opponents == 0`, else `num_opponents` random opponents each."""
  if num_opponents == 0:
    return all_pairs_winrates(teacher, summaries, queue, key,
                              self_comparison=self_comparison, labels=labels, valid=valid)
  return sampled_opponent_winrates(teacher, summaries, queue, key, num_opponents,
                                   self_comparison=self_comparison, labels=labels, valid=valid)


def segments_begun(mask: jax.Array, num_segments: int) -> jax.Array:
  """[K, N] bool: segment k of trajectory i began, i.e. step kL of i is valid (L = H / K);
  mask: [H, N], a prefix of ones per column."""
  horizon, num = mask.shape
  return mask.reshape(num_segments, horizon // num_segments, num)[:, 0, :] > 0


def segment_winrates(teacher: TeacherProtocol, summaries: Any, mask: jax.Array, key: jax.Array, *,
                     num_opponents: int = 0, self_comparison: str = "exclude",
                     labels: str = "soft") -> WinRates:
  """Win rates of each segment against the same segment of the other trajectories.

  summaries: leaves [N, K, ...] (segment k of trajectory i at [i, k], `rollout` with
  `segment_length` L = H / K); mask: [H, N]. Segment k of i *began* when step kL of i is
  valid (its episode had not ended before). Begun segments are compared with each other by
  the teacher, and each beats every segment k that never began (P = 1, no query): summed over
  segments, lasting longer then pays as it does for a whole-episode oracle, and with centred
  rewards a segment lived while others had fallen is worth more than one where all live.
  Returns `WinRates` with winrate [K, N] (unused for segments that never began) and the
  counts summed over segments (cyclic triples too: pooled over the K matrices, so their
  ratio is the fraction among all triples of begun segments of the same window).
  """
  valid = segments_begun(mask, jax.tree.leaves(summaries)[0].shape[1])  # [K, N]
  num_segments = valid.shape[0]
  by_segment = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), summaries)  # [K, N, ...]
  rates = jax.vmap(lambda s, v, k: compute_winrates(
      teacher, s, None, k, num_opponents=num_opponents, self_comparison=self_comparison,
      labels=labels, valid=v))(by_segment, valid, jax.random.split(key, num_segments))
  # Every count is summed over segments; None (no cycles counted with random opponents) stays.
  pooled = jax.tree.map(jnp.sum, rates._replace(winrate=None))
  return pooled._replace(winrate=rates.winrate)


def place_rewards(value: jax.Array, mask: jax.Array, placement: str = "discounted",
                  discount: float = 1.0) -> jax.Array:
  """Turn one number per trajectory into per-step rewards.

  value: [N] (the win rate, possibly centred); mask: [H, N], 1 on valid steps (a prefix of
  each column, T_i of them); discount: the gamma PPO discounts with.
  - 'discounted': each valid step gets  value (1 - gamma) / (1 - gamma^T_i)  (value / T_i at
    gamma = 1), so the *discounted* return at t = 0, sum_t gamma^t r_t, is exactly value for
    every length T_i: PPO's objective orders trajectories as their win rates whatever their
    lengths.
  - 'spread': each valid step gets value / T_i; the undiscounted return is value, but the
    discounted one is value (1 - gamma^T_i) / (T_i (1 - gamma)), which shrinks long
    trajectories (at gamma = 0.99 a 50-step trajectory with +0.30 is worth 0.237 at t = 0, a
    200-step one with +0.50 only 0.217).
  - 'terminal': the whole value at the last valid step t = T_i - 1 (worth gamma^(T_i - 1)
    value at t = 0).
  Returns [H, N], zero on masked steps.
  """
  chex.assert_rank([value, mask], [1, 2])
  chex.assert_axis_dimension(mask, 1, value.shape[0])
  mask = mask.astype(value.dtype)
  length = jnp.sum(mask, axis=0)  # [N]
  if placement == "discounted" and discount < 1.0:
    # (1 - gamma) / (1 - gamma^T) is the reciprocal of sum_{t<T} gamma^t; expm1 keeps it
    # accurate when gamma^T is close to 1 (short trajectories, gamma near 1).
    log_gamma = jnp.log(jnp.asarray(discount, value.dtype))
    total = jnp.expm1(jnp.maximum(length, 1.0) * log_gamma) / jnp.expm1(log_gamma)
    return mask * (value / total)[None, :]
  if placement in ("discounted", "spread"):
    return mask * (value / jnp.maximum(length, 1.0))[None, :]
  steps = jnp.arange(mask.shape[0])[:, None]
  return jnp.where((steps == length[None, :] - 1) & (length[None, :] > 0), value[None, :], 0.0)


def place_segment_rewards(value: jax.Array, mask: jax.Array, placement: str = "discounted",
                          discount: float = 1.0) -> jax.Array:
  """`place_rewards` within each segment: value [K, N], mask [H, N] with H = K L; segment k
  of trajectory i spreads value[k, i] over its valid steps kL .. (k + 1)L - 1 (or puts it on
  the last one). Returns [H, N]. With 'discounted' the discounted return from the first step of
  segment k over that segment's steps is value[k, i]; with 'spread' the undiscounted return of
  trajectory i is the sum of its valid segments' values."""
  chex.assert_rank([value, mask], 2)
  chex.assert_axis_dimension(mask, 1, value.shape[1])
  num_segments = value.shape[0]
  horizon, num = mask.shape
  if horizon % num_segments:
    raise ValueError(f"{num_segments} segments do not divide the horizon {horizon}")
  by_segment = mask.reshape(num_segments, horizon // num_segments, num)
  placed = jax.vmap(lambda v, m: place_rewards(v, m, placement, discount))(value, by_segment)
  return placed.reshape(horizon, num)
