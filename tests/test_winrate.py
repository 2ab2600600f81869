"""Tests for spo_jax/winrate.py: preferences -> win rates -> per-step rewards.

Names are imported from the submodule: `spo_jax.winrate` itself is the re-exported function.

Summaries here are Oracle/BradleyTerry summaries, {"return": [N]}, built by hand: the teacher
only ever sees summaries, so no rollout is needed.
"""

import dataclasses
import functools
import importlib
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax.reward_sources import SelfPlayPreference
from spo_jax.rollout import RolloutResult, Trajectory
from spo_jax.teachers import BradleyTerry, Oracle
from spo_jax.teachers.matrix_game import TABLES, PayoffTable
from spo_jax.winrate import (
    OpponentQueue,
    compute_winrates,
    cyclic_triple_fraction,
    majority_cycles,
    place_rewards,
    place_segment_rewards,
    queue_init,
    queue_push,
    queue_valid,
    segment_winrates,
    winrate,
)

# The module, not the function `spo_jax.winrate` that shadows it on the package.
winrate_module = importlib.import_module("spo_jax.winrate")

KEY = jax.random.PRNGKey(0)
KEYS = jax.random.split(jax.random.PRNGKey(1), 2000)  # for averages over the randomness

# The teacher is a frozen dataclass: static (hashed) under jit, like in train.py.
_winrates = jax.jit(compute_winrates, static_argnums=0,
                    static_argnames=("num_opponents", "self_comparison", "labels"))


@functools.partial(jax.jit, static_argnums=0,
                   static_argnames=("num_opponents", "self_comparison", "labels"))
def _winrates_over_keys(teacher, summaries, queue, keys, num_opponents=0,
                        self_comparison="exclude", labels="soft"):
  """The same query under many keys, for expectations over the randomness (lax.map, not
  vmap: a batched PRNG takes twice as long to compile, and compiling is the cost here)."""
  return jax.lax.map(lambda key: compute_winrates(
      teacher, summaries, queue, key, num_opponents=num_opponents,
      self_comparison=self_comparison, labels=labels), keys)


def returns(*values):
  """Oracle-style summaries of len(values) trajectories."""
  return {"return": jnp.asarray(values, jnp.float32)}


def queue_of(values, count):
  """A queue holding `values` in its slots, of which the first min(count, Q) are valid."""
  return OpponentQueue(returns(*values), jnp.asarray(count, jnp.int32),
                       jnp.asarray(count % len(values), jnp.int32))


@dataclasses.dataclass(frozen=True)
class ShyOracle(Oracle):
  """Oracle that gives no label when both trajectories return less than `threshold`."""

  threshold: float = 1.5

  def abstain(self, a, b):
    return (a["return"] < self.threshold) & (b["return"] < self.threshold)


# --- NumPy references -------------------------------------------------------------------

def _oracle_p(a, b):
  return 0.5 * (1.0 + np.sign(a - b))


def _bradley_terry_p(beta, scale):
  return lambda a, b: 1.0 / (1.0 + np.exp(-beta * (a - b) / scale))


def _winrate_reference(pref, mask):
  out = np.empty(pref.shape[0])
  for i in range(pref.shape[0]):
    wins = opponents = 0.0
    for j in range(pref.shape[1]):
      if mask[i, j]:
        wins += pref[i, j]
        opponents += 1
    out[i] = wins / opponents if opponents else 0.5
  return out


def _all_pairs_reference(batch, queue, p, self_comparison):
  """Win rate of each batch return against the other batch returns and the queue returns."""
  out = []
  for i, mine in enumerate(batch):
    prefs = [p(mine, other) for j, other in enumerate(batch) if j != i]
    if self_comparison == "tie":
      prefs.append(0.5)
    prefs += [p(mine, other) for other in queue]
    out.append(np.mean(prefs))
  return np.array(out)


# --- hand-worked examples ---------------------------------------------------------------

def test_all_pairs_oracle_hand_example_self_excluded():
  # Returns [3, 1, 2]; Oracle: P_ij = 1 if R_i > R_j, 0 if R_i < R_j.
  #   w_0 = (P_01 + P_02) / 2 = (1 + 1) / 2 = 1
  #   w_1 = (P_10 + P_12) / 2 = (0 + 0) / 2 = 0
  #   w_2 = (P_20 + P_21) / 2 = (0 + 1) / 2 = 0.5
  rates = _winrates(Oracle(), returns(3, 1, 2), None, KEY)
  np.testing.assert_allclose(rates.winrate, [1.0, 0.0, 0.5])
  # 3 unordered pairs, one query each, all answered.
  assert int(rates.num_queries) == 3
  assert int(rates.num_labels) == 3


def test_all_pairs_oracle_hand_example_self_as_tie():
  # Same returns; each trajectory also meets itself once, with P_ii = 1/2:
  #   w_0 = (1 + 1 + 0.5) / 3,  w_1 = (0 + 0 + 0.5) / 3,  w_2 = (0 + 1 + 0.5) / 3
  rates = _winrates(Oracle(), returns(3, 1, 2), None, KEY, self_comparison="tie")
  np.testing.assert_allclose(rates.winrate, [2.5 / 3, 0.5 / 3, 1.5 / 3], rtol=1e-6)
  # The self-pairs are not put to the teacher, so they are not queries.
  assert int(rates.num_queries) == 3


def _fake_rollout(summaries, mask):
  zeros = jnp.zeros(mask.shape)
  traj = Trajectory(obs=zeros[..., None], raw_action=zeros[..., None], log_prob=zeros,
                    reward=zeros, mask=mask, done=zeros)
  return RolloutResult(traj, summaries, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


# Returns [3, 1, 2, 0], self excluded:
#   w = [3/3, 1/3, 2/3, 0/3]   (R=1 beats only R=0; R=2 beats R=1 and R=0)
#   centred, w - 1/2 = [1/2, -1/6, 1/6, -1/2]
# Episode lengths [3, 1, 2, 3] (columns of the [H=3, N=4] mask below).
_HAND_MASK = jnp.array([[1.0, 1.0, 1.0, 1.0],
                        [1.0, 0.0, 1.0, 1.0],
                        [1.0, 0.0, 0.0, 1.0]])
# spread: value / length on every valid step:
#   col 0: (1/2)/3 = 1/6; col 1: (-1/6)/1; col 2: (1/6)/2 = 1/12; col 3: (-1/2)/3 = -1/6
_HAND_SPREAD = np.array([[1 / 6, -1 / 6, 1 / 12, -1 / 6],
                         [1 / 6, 0.0, 1 / 12, -1 / 6],
                         [1 / 6, 0.0, 0.0, -1 / 6]])
# terminal: the whole value on the last valid step t = length - 1 = [2, 0, 1, 2]
_HAND_TERMINAL = np.array([[0.0, -1 / 6, 0.0, 0.0],
                           [0.0, 0.0, 1 / 6, 0.0],
                           [1 / 2, 0.0, 0.0, -1 / 2]])


# discounted, gamma = 1/2: value / (1 + gamma + ... + gamma^(T-1)) on every valid step:
#   col 0: (1/2) / (1 + 1/2 + 1/4) = 2/7;  col 1: (-1/6) / 1;  col 2: (1/6) / (3/2) = 1/9;
#   col 3: (-1/2) / (7/4) = -2/7.  Check, col 0: 2/7 (1 + 1/2 + 1/4) = 1/2, the value.
_HAND_DISCOUNTED = np.array([[2 / 7, -1 / 6, 1 / 9, -2 / 7],
                             [2 / 7, 0.0, 1 / 9, -2 / 7],
                             [2 / 7, 0.0, 0.0, -2 / 7]])


@pytest.mark.parametrize("placement, discount, expected", [
    ("spread", 0.5, _HAND_SPREAD), ("terminal", 0.5, _HAND_TERMINAL),
    ("discounted", 0.5, _HAND_DISCOUNTED), ("discounted", 1.0, _HAND_SPREAD)])
def test_centred_rewards_hand_example(placement, discount, expected):
  source = SelfPlayPreference(Oracle(), placement=placement, center=True, discount=discount)
  result = _fake_rollout(returns(3, 1, 2, 0), _HAND_MASK)
  rewards, _, metrics = jax.jit(source.rewards)((), result, KEY)
  np.testing.assert_allclose(rewards, expected, rtol=1e-6, atol=1e-7)
  assert int(metrics["num_queries"]) == 6  # 4 * 3 / 2 unordered pairs
  # The same numbers straight from place_rewards:
  value = jnp.array([1 / 2, -1 / 6, 1 / 6, -1 / 2])
  np.testing.assert_allclose(place_rewards(value, _HAND_MASK, placement, discount), expected,
                             rtol=1e-6, atol=1e-7)


# --- winrate() against a loop -----------------------------------------------------------

@pytest.mark.parametrize("shape, mask_dtype", [((1, 1), bool), ((3, 5), jnp.float32),
                                               ((6, 6), bool), ((4, 9), jnp.float32)])
def test_winrate_matches_loop_reference(shape, mask_dtype):
  rng = np.random.default_rng(sum(shape))
  pref = rng.uniform(size=shape).astype(np.float32)
  mask = rng.uniform(size=shape) < 0.5
  mask[0] = False  # row 0 has no opponent: it must get 1/2
  got = jax.jit(winrate)(pref, jnp.asarray(mask, mask_dtype))
  expected = _winrate_reference(pref, mask)
  assert expected[0] == 0.5
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_misshaped_inputs_are_refused_when_traced():
  # Trace-time shape checks (chex): a [N] mask for an [N, M] matrix, or per-step rewards
  # placed with the time and env axes swapped, would otherwise broadcast silently.
  with pytest.raises(AssertionError):
    jax.jit(winrate)(jnp.zeros((3, 4)), jnp.ones((3,)))
  with pytest.raises(AssertionError):
    place_rewards(jnp.zeros((5,)), jnp.ones((5, 8)))  # mask [N, H] instead of [H, N]
  with pytest.raises(AssertionError):
    place_segment_rewards(jnp.zeros((2, 5)), jnp.ones((8, 4)))


# --- opponent queue ---------------------------------------------------------------------

def test_queue_push_is_fifo_and_tracks_valid_slots():
  template = {"return": jnp.zeros(()), "steps": jnp.zeros((), jnp.int32)}
  push = jax.jit(queue_push)

  def batch(*values):
    return {"return": jnp.asarray(values, jnp.float32),
            "steps": jnp.asarray(values, jnp.int32)}

  queue = queue_init(template, 3)
  assert queue.summaries["steps"].dtype == jnp.int32  # each leaf keeps its dtype
  np.testing.assert_array_equal(queue_valid(queue), [False, False, False])

  queue = push(queue, batch(10, 20))  # slots 0, 1
  np.testing.assert_array_equal(queue.summaries["return"], [10, 20, 0])
  np.testing.assert_array_equal(queue_valid(queue), [True, True, False])
  assert (int(queue.count), int(queue.pointer)) == (2, 2)

  queue = push(queue, batch(30, 40))  # slot 2, then wraps to slot 0 (overwrites 10, oldest)
  np.testing.assert_array_equal(queue.summaries["return"], [40, 20, 30])
  np.testing.assert_array_equal(queue.summaries["steps"], [40, 20, 30])
  np.testing.assert_array_equal(queue_valid(queue), [True, True, True])
  assert (int(queue.count), int(queue.pointer)) == (4, 1)

  # 4 summaries into 3 slots: only the first 3 (50, 60, 70) go in, at slots 1, 2, 0.
  queue = push(queue, batch(50, 60, 70, 80))
  np.testing.assert_array_equal(queue.summaries["return"], [70, 50, 60])
  assert (int(queue.count), int(queue.pointer)) == (7, 1)


def test_all_pairs_with_queue_hand_example():
  # Batch returns [3, 1]; queue slots [2, 5, 99] of which only the first 2 are valid
  # (count 2): the 99 must be ignored.
  #   w_0 = (P(3,1) + P(3,2) + P(3,5)) / 3 = (1 + 1 + 0) / 3 = 2/3
  #   w_1 = (P(1,3) + P(1,2) + P(1,5)) / 3 = 0
  queue = queue_of([2.0, 5.0, 99.0], count=2)
  rates = _winrates(Oracle(), returns(3, 1), queue, KEY)
  np.testing.assert_allclose(rates.winrate, [2 / 3, 0.0], rtol=1e-6)
  # 1 batch pair + 2 trajectories x 2 valid queue entries
  assert int(rates.num_queries) == 5
  assert int(rates.num_labels) == 5


@pytest.mark.parametrize("self_comparison", ["exclude", "tie"])
@pytest.mark.parametrize("teacher, p", [
    (Oracle(), _oracle_p),
    (BradleyTerry(beta=1.5, scale=2.0), _bradley_terry_p(1.5, 2.0))])
def test_all_pairs_with_queue_matches_reference(teacher, p, self_comparison):
  rng = np.random.default_rng(0)
  for count in [0, 2, 4, 7]:  # empty, partly filled, just full, wrapped around
    # Integer returns make exact ties (P = 1/2) likely.
    batch = np.round(2.0 * rng.normal(size=5))
    slots = np.round(2.0 * rng.normal(size=4))
    queue = queue_of(slots, count)
    rates = _winrates(teacher, returns(*batch), queue, KEY, self_comparison=self_comparison)
    valid = slots[:min(count, 4)]
    expected = _all_pairs_reference(batch, valid, p, self_comparison)
    np.testing.assert_allclose(rates.winrate, expected, rtol=1e-5, atol=1e-6)
    assert int(rates.num_queries) == 5 * 4 // 2 + 5 * len(valid)


# --- sampled labels ---------------------------------------------------------------------

def test_sampled_labels_two_trajectories_are_complementary():
  # With N = 2 the win rates ARE the labels: w_0 = label_01, w_1 = label_10 = 1 - label_01.
  # BradleyTerry: P(R=1 > R=0) = sigmoid(1 * (1 - 0) / 1) = 1 / (1 + e^-1) = 0.7311.
  rates = _winrates_over_keys(BradleyTerry(), returns(1, 0), None, KEYS, labels="sampled")
  w = np.asarray(rates.winrate)
  assert set(np.unique(w)) <= {0.0, 1.0}
  np.testing.assert_array_equal(w[:, 1], 1.0 - w[:, 0])
  # 2000 Bernoulli(0.731) draws: standard error 0.0099; 0.04 is 4 of them.
  assert abs(w[:, 0].mean() - 0.7311) < 0.04


def test_sampled_labels_are_antisymmetric_for_every_key():
  # One label per unordered pair, label_ji = 1 - label_ij, so for every key
  #   sum_i w_i (N - 1) = sum_{i != j} label_ij = N (N - 1) / 2,  i.e.  mean_i w_i = 1/2,
  # which independent labels per ordered pair would break.
  summaries = returns(*np.round(2.0 * np.random.default_rng(2).normal(size=5)))
  rates = _winrates_over_keys(BradleyTerry(scale=2.0), summaries, None, KEYS, labels="sampled")
  w = np.asarray(rates.winrate)
  np.testing.assert_allclose(w.mean(axis=1), 0.5, atol=1e-6)
  # Each w_i counts 0..4 wins out of 4 opponents.
  np.testing.assert_allclose(w * 4, np.round(w * 4), atol=1e-6)


@pytest.mark.parametrize("with_queue", [False, True])
def test_sampled_labels_average_to_soft_winrates(with_queue):
  summaries = returns(*np.round(2.0 * np.random.default_rng(4).normal(size=5)))
  queue = queue_of([1.0, -1.0, 7.0], count=2) if with_queue else None
  teacher = BradleyTerry(scale=2.0)
  soft = _winrates(teacher, summaries, queue, KEY).winrate
  sampled = _winrates_over_keys(teacher, summaries, queue, KEYS, labels="sampled").winrate
  # Per key, w_i is a mean of >= 4 Bernoulli labels: std <= 0.5 / 2 = 0.25; over 2000 keys
  # the standard error is <= 0.0056, and 0.03 is more than 5 of them.
  np.testing.assert_allclose(sampled.mean(axis=0), soft, atol=0.03)


# --- k random opponents -----------------------------------------------------------------

def test_random_opponents_query_count_and_never_self():
  # Distinct returns under the Oracle: the best beats every other trajectory (w = 1 exactly)
  # and the worst loses to every one (w = 0). Drawing itself would give it 1/2 instead.
  summaries = returns(4, 0, 2, 1, 3)
  rates = _winrates_over_keys(Oracle(), summaries, None, KEYS, num_opponents=3)
  np.testing.assert_array_equal(rates.winrate[:, 0], 1.0)
  np.testing.assert_array_equal(rates.winrate[:, 1], 0.0)
  # N k = 5 * 3 queries, all answered, for every key.
  np.testing.assert_array_equal(rates.num_queries, 15)
  np.testing.assert_array_equal(rates.num_labels, 15)


def test_random_opponents_with_self_as_tie_do_not_count_self_as_query():
  summaries = returns(4, 0, 2, 1, 3)
  rates = _winrates_over_keys(Oracle(), summaries, None, KEYS, num_opponents=3,
                              self_comparison="tie")
  queries = np.asarray(rates.num_queries)
  assert (queries <= 15).all()
  # Each of the 15 draws is self with probability 1/5, so some keys see fewer than 15.
  assert (queries < 15).any()
  np.testing.assert_array_equal(rates.num_labels, queries)


@pytest.mark.parametrize("self_comparison, with_queue", [("exclude", False), ("exclude", True),
                                                         ("tie", True)])
def test_random_opponents_average_to_all_pairs(self_comparison, with_queue):
  # Opponents are uniform over the same candidates that all-pairs mode uses (the others,
  # plus self as a tie, plus the valid queue entries) and the denominator is always k,
  # so E[w_i] equals the all-pairs win rate.
  summaries = returns(*np.round(2.0 * np.random.default_rng(8).normal(size=5)))
  queue = queue_of([1.0, -1.0, 7.0], count=2) if with_queue else None
  teacher = BradleyTerry(scale=2.0)
  exact = _winrates(teacher, summaries, queue, KEY, self_comparison=self_comparison).winrate
  sampled = _winrates_over_keys(teacher, summaries, queue, KEYS, num_opponents=3,
                                self_comparison=self_comparison).winrate
  # Per key, w_i is a mean of 3 draws in [0, 1]: std <= 0.5 / sqrt(3) = 0.29; over 2000 keys
  # the standard error is <= 0.0065, and 0.03 is more than 4 of them.
  np.testing.assert_allclose(sampled.mean(axis=0), exact, atol=0.03)


# --- abstentions ------------------------------------------------------------------------

def test_abstentions_leave_the_denominator():
  # Returns [3, 1, 2, 0]; ShyOracle abstains on {1, 0} returns (both < 1.5): the pair (1, 3).
  #   w_0 = (1 + 1 + 1) / 3 = 1
  #   w_1 = (P_10 + P_12) / 2 = (0 + 0) / 2 = 0     (would be 1/3 if it had beaten R=0)
  #   w_2 = (0 + 1 + 1) / 3 = 2/3
  #   w_3 = (P_30 + P_32) / 2 = 0
  rates = _winrates(ShyOracle(), returns(3, 1, 2, 0), None, KEY)
  np.testing.assert_allclose(rates.winrate, [1.0, 0.0, 2 / 3, 0.0], rtol=1e-6)
  assert int(rates.num_queries) == 6  # 4 * 3 / 2
  assert int(rates.num_labels) == 5  # all but (1, 3)

  # Self as a tie: every row also counts itself once, P_ii = 1/2:
  #   w_0 = (1 + 1 + 1 + 0.5) / 4,  w_1 = (0 + 0 + 0.5) / 3,
  #   w_2 = (0 + 1 + 1 + 0.5) / 4,  w_3 = (0 + 0 + 0.5) / 3
  rates = _winrates(ShyOracle(), returns(3, 1, 2, 0), None, KEY, self_comparison="tie")
  np.testing.assert_allclose(rates.winrate, [3.5 / 4, 0.5 / 3, 2.5 / 4, 0.5 / 3], rtol=1e-6)


def test_abstentions_against_queue_entries():
  # Batch [3, 1.2], queue [1, 2] (both valid). The pair (1.2, q=1) is abstained on.
  #   w_0 = (P(3,1.2) + P(3,1) + P(3,2)) / 3 = 1
  #   w_1 = (P(1.2,3) + P(1.2,2)) / 2 = 0          (would be 1/3 with the win over 1)
  rates = _winrates(ShyOracle(), returns(3, 1.2), queue_of([1.0, 2.0], count=2), KEY)
  np.testing.assert_allclose(rates.winrate, [1.0, 0.0])
  assert int(rates.num_queries) == 5  # 1 batch pair + 2 x 2 queue pairs
  assert int(rates.num_labels) == 4


@pytest.mark.parametrize("num_opponents", [0, 3])
def test_no_label_at_all_gives_one_half(num_opponents):
  # Every return is below the threshold: the teacher abstains on everything.
  rates = _winrates(ShyOracle(), returns(1, 0, 1), None, KEY, num_opponents=num_opponents)
  np.testing.assert_array_equal(rates.winrate, 0.5)
  assert int(rates.num_queries) == (3 if num_opponents == 0 else 9)
  assert int(rates.num_labels) == 0


def test_random_opponents_count_abstentions():
  rates = _winrates_over_keys(ShyOracle(), returns(3, 1, 2, 0), None, KEYS, num_opponents=3)
  labels, queries = np.asarray(rates.num_labels), np.asarray(rates.num_queries)
  np.testing.assert_array_equal(queries, 12)
  assert (labels <= queries).all() and (labels < queries).any()


# --- invariants -------------------------------------------------------------------------

@pytest.mark.parametrize("num_opponents", [0, 3])
@pytest.mark.parametrize("self_comparison", ["exclude", "tie"])
@pytest.mark.parametrize("teacher", [Oracle(), BradleyTerry()])
def test_all_equal_summaries_give_one_half(teacher, self_comparison, num_opponents):
  queue = queue_of([2.0, 2.0, 2.0], count=5)
  rates = _winrates(teacher, returns(2, 2, 2, 2), queue, KEY, num_opponents=num_opponents,
                    self_comparison=self_comparison)
  np.testing.assert_allclose(rates.winrate, 0.5)


@pytest.mark.parametrize("self_comparison", ["exclude", "tie"])
def test_mean_winrate_is_one_half_for_antisymmetric_teachers(self_comparison):
  # sum_{i != j} P_ij = sum over unordered pairs of (P_ij + P_ji) = N (N - 1) / 2, so with
  # self excluded mean_i w_i = [N (N - 1) / 2] / [N (N - 1)] = 1/2; with the self-tie each
  # row gains 1/2: [N (N - 1) / 2 + N / 2] / N^2 = 1/2 as well.
  summaries = returns(*3.0 * np.random.default_rng(11).normal(size=7))
  rates = _winrates(BradleyTerry(), summaries, None, KEY, self_comparison=self_comparison)
  assert abs(float(jnp.mean(rates.winrate)) - 0.5) < 1e-6


# --- place_rewards ----------------------------------------------------------------------

def _prefix_mask(lengths, horizon):
  return (np.arange(horizon)[:, None] < np.asarray(lengths)[None, :]).astype(np.float32)


@pytest.mark.parametrize("placement", ["spread", "terminal", "discounted"])
def test_place_rewards_on_random_prefix_masks(placement):
  horizon = 7
  lengths = np.array([1, 7, 3, 5, 2])  # includes a full-length and a one-step episode
  mask = _prefix_mask(lengths, horizon)
  value = np.random.default_rng(12).normal(size=5).astype(np.float32)
  rewards = np.asarray(jax.jit(place_rewards, static_argnums=2)(value, mask, placement))
  # The undiscounted return is the value, whatever the placement (discount 1 by default).
  np.testing.assert_allclose(rewards.sum(axis=0), value, rtol=1e-5)
  np.testing.assert_array_equal(rewards[mask == 0], 0.0)
  for i, length in enumerate(lengths):
    if placement in ("spread", "discounted"):
      np.testing.assert_allclose(rewards[:length, i], value[i] / length, rtol=1e-6)
    else:
      np.testing.assert_array_equal(rewards[:length - 1, i], 0.0)
      np.testing.assert_allclose(rewards[length - 1, i], value[i])


# --- segments (segment_length L > 0) ----------------------------------------------------

# Three trajectories, H = 4, segments of L = 2 (K = 2). Trajectory 2 ends after step 1, so
# its segment 1 (steps 2-3) never began: it is not put to the teacher, and loses to both
# segments that began.
# Segment returns (oracle summaries, [N, K]):   traj 0: [1, 5]  traj 1: [2, 3]  traj 2: [0, 0]
#   segment 0, all three begun: returns [1, 2, 0] -> w = [1/2, 2/2, 0/2] = [0.5, 1, 0]
#   segment 1: traj 0 beats traj 1 (5 > 3) and the unbegun traj 2 -> 1;
#              traj 1 loses to traj 0, beats traj 2 -> 1/2;  traj 2: unused
_SEG_MASK = jnp.array([[1.0, 1.0, 1.0],
                       [1.0, 1.0, 1.0],
                       [1.0, 1.0, 0.0],
                       [1.0, 1.0, 0.0]])
_SEG_SUMMARIES = {"return": jnp.array([[1.0, 5.0], [2.0, 3.0], [0.0, 0.0]])}


def test_segment_winrates_hand_example():
  rates = jax.jit(segment_winrates, static_argnums=0)(Oracle(), _SEG_SUMMARIES, _SEG_MASK, KEY)
  np.testing.assert_allclose(rates.winrate[0], [0.5, 1.0, 0.0])
  np.testing.assert_allclose(rates.winrate[1, :2], [1.0, 0.5])
  # Queries: 3 pairs in segment 0, 1 pair in segment 1 (the unbegun segment is not asked).
  assert int(rates.num_queries) == 4
  assert int(rates.num_labels) == 4


def test_segment_winrates_random_opponents_treat_unbegun_segments_as_losers():
  """Three random opponents per segment: in segment 1, trajectory 0 beats whichever it draws
  (1 or the unbegun 2), so its win rate is exactly 1; trajectory 1 loses to 0 and beats 2,
  each drawn with probability 1/2, so its win rate averages 1/2 (all pairs: exactly 1/2).
  Only draws between begun segments are queries: at most 3 x 5 begun segments."""
  values = []
  for key in jax.random.split(KEY, 200):
    rates = segment_winrates(Oracle(), _SEG_SUMMARIES, _SEG_MASK, key, num_opponents=3)
    assert float(rates.winrate[1, 0]) == 1.0
    assert int(rates.num_queries) <= 15
    values.append(float(rates.winrate[1, 1]))
  assert abs(np.mean(values) - 0.5) < 0.05


def test_segment_rewards_hand_example():
  """Centred segment win rates spread over each segment's valid steps (L = 2):
    traj 0: segment 0 -> 0.5 - 0.5 = 0, segment 1 -> 1 - 0.5 = 0.5: 0.25 on steps 2 and 3
    traj 1: segment 0 -> 0.5 (0.25 per step),    segment 1 -> 0.5 - 0.5 = 0
    traj 2: segment 0 -> -0.5 (-0.25 per step), nothing after its episode ended."""
  source = SelfPlayPreference(Oracle(), center=True, segment_length=2)
  result = _fake_rollout(_SEG_SUMMARIES, _SEG_MASK)
  rewards, _, metrics = jax.jit(source.rewards)((), result, KEY)
  np.testing.assert_allclose(rewards, [[0.0, 0.25, -0.25], [0.0, 0.25, -0.25],
                                       [0.25, 0.0, 0.0], [0.25, 0.0, 0.0]])
  assert int(metrics["num_queries"]) == 4
  # Mean win rate over the 5 begun segments: (0.5 + 1 + 0 + 1 + 0.5) / 5.
  assert float(metrics["winrate_mean"]) == pytest.approx(0.6)
  # Each trajectory's undiscounted return is the sum of its segments' centred win rates.
  np.testing.assert_allclose(jnp.sum(rewards, axis=0), [0.5, 0.5, -0.5])


def test_segments_with_an_episode_term_hand_example():
  """`episode_weight` c = 2 adds the whole episodes' centred win rates, placed over each
  episode's valid steps (gamma = 1), to the segment rewards of the example above:
    whole-episode returns 1 + 5 = 6, 2 + 3 = 5, 0 -> w = [1, 1/2, 0], centred [0.5, 0, -0.5]
    traj 0: 2 x 0.5 / 4 steps = 0.25 per step, added to [0, 0, 0.25, 0.25]
    traj 1: 0
    traj 2: 2 x -0.5 / 2 steps = -0.5 per step, added to [-0.25, -0.25] (then nothing)
  Lasting longer now pays twice: trajectory 2's return is -0.5 - 1 = -1.5."""
  source = SelfPlayPreference(Oracle(), center=True, segment_length=2, episode_weight=2.0)
  assert source.episode_summary
  episodes = {"return": jnp.array([6.0, 5.0, 0.0])}
  result = _fake_rollout((_SEG_SUMMARIES, episodes), _SEG_MASK)
  rewards, _, metrics = jax.jit(source.rewards)((), result, KEY)
  np.testing.assert_allclose(rewards, [[0.25, 0.25, -0.75], [0.25, 0.25, -0.75],
                                       [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
  np.testing.assert_allclose(jnp.sum(rewards, axis=0), [1.5, 0.5, -1.5])
  # 4 segment queries and the 3 pairs of whole episodes.
  assert int(metrics["num_queries"]) == 7 and int(metrics["num_labels"]) == 7
  # Without the weight the source asks for no episode summaries: segments alone, as before.
  assert not SelfPlayPreference(Oracle(), segment_length=2).episode_summary


@pytest.mark.parametrize("placement, discount", [("spread", 1.0), ("terminal", 1.0),
                                                ("discounted", 0.9)])
def test_place_segment_rewards_equals_place_rewards_per_segment(placement, discount):
  """Reference: cut the [H, N] mask into K blocks of L rows and place each block's values
  with `place_rewards` alone, on random prefix masks."""
  rng = np.random.default_rng(0)
  horizon, num, length = 12, 5, 4
  mask = (np.arange(horizon)[:, None] < rng.integers(1, horizon + 1, num)[None, :]).astype(
      np.float32)
  value = rng.normal(size=(horizon // length, num)).astype(np.float32)
  expected = np.concatenate([np.asarray(place_rewards(jnp.asarray(value[k]),
                                                      jnp.asarray(mask[k * length:(k + 1)
                                                                       * length]), placement,
                                                      discount))
                             for k in range(horizon // length)])
  np.testing.assert_allclose(place_segment_rewards(jnp.asarray(value), jnp.asarray(mask),
                                                   placement, discount), expected, rtol=1e-6)


# --- cyclic triples of the teacher's majority -------------------------------------------

_cycles = jax.jit(majority_cycles)
_fraction = jax.jit(cyclic_triple_fraction)


def _pref_from_upper(upper):
  """[N, N] preference matrix from its strict upper triangle: P_ji = 1 - P_ij, P_ii = 1/2."""
  upper = np.triu(np.asarray(upper, np.float32), 1)
  return upper + np.tril(1.0 - upper.T, -1) + 0.5 * np.eye(len(upper), dtype=np.float32)


def _cycles_reference(pref, valid):
  """Every triple of valid trajectories, one by one: cyclic when the majority edges
  (P > 1/2) go round it one way or the other."""
  beats = pref > 0.5
  idx = [i for i in range(len(pref)) if valid[i]]
  cyclic = triples = 0
  for i, j, k in itertools.combinations(idx, 3):
    triples += 1
    cyclic += bool(beats[i, j] and beats[j, k] and beats[k, i]
                   or beats[j, i] and beats[k, j] and beats[i, k])
  return cyclic, triples


# Rock (0), paper (1), scissors (2): paper beats rock, scissors paper, rock scissors.
_RPS = _pref_from_upper([[0, 0, 1], [0, 0, 0], [0, 0, 0]])

# Four players, soft answers (only the side of 1/2 matters), and one tie:
#   0 -> 1 (P = .7),  1 -> 2 (.6),  2 -> 0 (P_02 = .2),  3 -> 0 (P_03 = .1),
#   1 -> 3 (.8),  2 ~ 3 (.5, a tie: no edge).
#   {0, 1, 2}: 0 -> 1 -> 2 -> 0              cyclic
#   {0, 1, 3}: 0 -> 1 -> 3 -> 0              cyclic
#   {0, 2, 3}: 2 -> 0, 3 -> 0, 2 ~ 3         not (a tied pair closes no cycle)
#   {1, 2, 3}: 1 -> 2, 1 -> 3, 2 ~ 3         not
# 2 cyclic of C(4, 3) = 4 triples. Leave out 3: only {0, 1, 2}, 1 of 1. Leave out 0:
# only {1, 2, 3}, 0 of 1.
_FOUR = _pref_from_upper([[0, 0.7, 0.2, 0.1],
                          [0, 0, 0.6, 0.8],
                          [0, 0, 0, 0.5],
                          [0, 0, 0, 0]])


def test_rock_paper_scissors_is_one_cyclic_triple_of_one():
  cyclic, triples = _cycles(jnp.asarray(_RPS))
  assert (float(cyclic), float(triples)) == (1.0, 1.0)
  assert float(_fraction(jnp.asarray(_RPS))) == 1.0


def test_a_transitive_order_has_no_cycle():
  # 0 > 1 > 2 > 3 > 4 (P_ij = .9 for i < j): C(5, 3) = 10 triples, none cyclic.
  cyclic, triples = _cycles(jnp.asarray(_pref_from_upper(np.full((5, 5), 0.9))))
  assert (float(cyclic), float(triples)) == (0.0, 10.0)


@pytest.mark.parametrize("valid, expected", [
    ([True, True, True, True], (2.0, 4.0)),
    ([True, True, True, False], (1.0, 1.0)),
    ([False, True, True, True], (0.0, 1.0)),
    ([True, True, False, False], (0.0, 0.0)),  # two valid: no triple at all
])
def test_four_players_hand_example(valid, expected):
  pref = _FOUR.copy()
  # What the left-out trajectories' rows hold must not matter, not even a nan.
  pref[~np.asarray(valid)] = np.nan
  cyclic, triples = _cycles(jnp.asarray(pref), jnp.asarray(valid))
  assert (float(cyclic), float(triples)) == expected
  assert float(_fraction(jnp.asarray(pref), jnp.asarray(valid))) == (
      expected[0] / expected[1] if expected[1] else 0.0)


def test_ties_close_no_cycle_but_stay_in_the_denominator():
  # All answers 1/2: no edge, no cycle, still C(6, 3) = 20 triples.
  cyclic, triples = _cycles(jnp.full((6, 6), 0.5))
  assert (float(cyclic), float(triples)) == (0.0, 20.0)
  # Rock-paper-scissors with one more player who ties with everyone: the RPS triple is
  # the only cyclic one of C(4, 3) = 4.
  pref = np.full((4, 4), 0.5, np.float32)
  pref[:3, :3] = _RPS
  assert float(_fraction(jnp.asarray(pref))) == 0.25


@pytest.mark.parametrize("num", [1, 3, 7, 12])
def test_majority_cycles_match_brute_force_over_all_triples(num):
  """Random antisymmetric matrices with answers in {0, .25, .5, .75, 1} (ties frequent) and
  random validity, against the loop over itertools.combinations."""
  rng = np.random.default_rng(num)
  for _ in range(5):
    pref = _pref_from_upper(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(num, num)))
    valid = rng.uniform(size=num) < 0.8
    cyclic, triples = _cycles(jnp.asarray(pref), jnp.asarray(valid))
    assert (float(cyclic), float(triples)) == _cycles_reference(pref, valid)


def test_without_ties_the_count_is_kendall_and_babington_smith():
  """In a tournament (every pair decided) a triple is transitive iff one of its players
  beats the other two, so cyclic = C(n, 3) - sum_i C(s_i, 2), s_i = i's wins."""
  rng = np.random.default_rng(0)
  pref = _pref_from_upper(rng.uniform(size=(40, 40)) < 0.5)  # 0/1: no tie
  wins = np.sum(pref > 0.5, axis=1)
  expected = math.comb(40, 3) - sum(math.comb(int(s), 2) for s in wins)
  assert float(_cycles(jnp.asarray(pref))[0]) == expected


def _outcomes(*values):
  """Matrix-game summaries: each trajectory's outcome index."""
  return {"outcome": jnp.asarray(values, jnp.int32)}


def test_all_pairs_count_the_batch_with_abstentions_as_ties():
  # Outcomes (rock, paper, scissors, rock): {0, 1, 2} and {1, 2, 3} cycle; the two rocks
  # tie, so {0, 1, 3} and {0, 2, 3} do not: 2 of 4.
  rates = _winrates(PayoffTable(TABLES["rps"]), _outcomes(0, 1, 2, 0), None, KEY)
  assert (float(rates.num_cyclic), float(rates.num_triples)) == (2.0, 4.0)
  # A queue adds opponents, not triples: the count is the batch's own.
  queue = OpponentQueue(_outcomes(1, 2), jnp.asarray(2, jnp.int32), jnp.asarray(0, jnp.int32))
  queued = _winrates(PayoffTable(TABLES["rps"]), _outcomes(0, 1, 2, 0), queue, KEY)
  assert float(queued.num_cyclic) == 2.0
  # Random opponents give no full matrix: no count at all (rather than a misleading 0).
  assert _winrates(PayoffTable(TABLES["rps"]), _outcomes(0, 1, 2, 0), None, KEY,
                   num_opponents=2).num_cyclic is None


def test_large_batches_count_the_cycles_of_their_first_trajectories(monkeypatch):
  """The count is bounded to the first CYCLE_COUNT_SIZE trajectories (1024; 3 here): of
  (rock, paper, scissors, rock, rock) only the first three are counted, 1 cyclic of 1 (all
  five: 2 of 10). A fresh jit: the size is read when the function is traced."""
  monkeypatch.setattr(winrate_module, "CYCLE_COUNT_SIZE", 3)
  rates = jax.jit(compute_winrates, static_argnums=0)(PayoffTable(TABLES["rps"]),
                                                       _outcomes(0, 1, 2, 0, 0), None, KEY)
  assert (float(rates.num_cyclic), float(rates.num_triples)) == (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ShyRPS(PayoffTable):
  """Rock-paper-scissors that will not judge rock against scissors."""

  def abstain(self, a, b):
    return (a["outcome"] + b["outcome"]) == 2


def test_an_abstention_breaks_the_cycle_it_was_part_of():
  rates = _winrates(ShyRPS(TABLES["rps"]), _outcomes(0, 1, 2), None, KEY)
  assert (float(rates.num_cyclic), float(rates.num_triples)) == (0.0, 1.0)


@pytest.mark.parametrize("table, teacher_cycles", [("cycle3", 1.0), ("transitive3", 0.0)])
def test_sampled_labels_count_the_teachers_cycles_not_the_labels(table, teacher_cycles):
  """cycle3's P = .9, .7, .8 around 0 -> 1 -> 2 -> 0: its majority cycles, although one draw
  of labels is transitive with probability 1 - (.9 .7 .8 + .1 .3 .2) = 0.49. transitive3's
  draws cycle with probability .7 .7 .1 + .3 .3 .9 = 0.13, its majority never."""
  rates = _winrates_over_keys(PayoffTable(TABLES[table]), _outcomes(0, 1, 2), None, KEYS[:50],
                              labels="sampled")
  np.testing.assert_array_equal(rates.num_cyclic, teacher_cycles)


def test_segments_pool_the_triples_of_every_window():
  """N = 4, H = 4, L = 2; trajectory 3 ends after step 1, so its segment 1 never begins.
  Segment 0, outcomes (rock, paper, scissors, rock): 2 cyclic of 4 (as above).
  Segment 1, begun segments only, outcomes (rock, rock, paper): 0 cyclic of 1.
  Pooled: 2 / 5 = 0.4 (the mean of the two fractions, 0.25, would weigh a window with one
  triple as much as one with four)."""
  mask = jnp.array([[1.0, 1.0, 1.0, 1.0],
                    [1.0, 1.0, 1.0, 1.0],
                    [1.0, 1.0, 1.0, 0.0],
                    [1.0, 1.0, 1.0, 0.0]])
  summaries = {"outcome": jnp.array([[0, 0], [1, 0], [2, 1], [0, 2]])}
  source = SelfPlayPreference(PayoffTable(TABLES["rps"]), segment_length=2)
  _, _, metrics = jax.jit(source.rewards)((), _fake_rollout(summaries, mask), KEY)
  assert float(metrics["cyclic_triples"]) == pytest.approx(0.4)


def test_spo_metrics_name_the_fraction_only_where_a_full_matrix_exists():
  result = _fake_rollout(_outcomes(0, 1, 2, 0), jnp.ones((1, 4)))
  _, _, metrics = jax.jit(SelfPlayPreference(PayoffTable(TABLES["rps"])).rewards)((), result, KEY)
  assert float(metrics["cyclic_triples"]) == 0.5
  _, _, metrics = jax.jit(SelfPlayPreference(PayoffTable(TABLES["rps"]), num_opponents=2)
                          .rewards)((), result, KEY)
  assert "cyclic_triples" not in metrics



# --- the objective is the win rate (reward placement x discount x GAE) ------------------

def _discounted_return_at_start(rewards: np.ndarray, mask: np.ndarray, discount: float):
  """Plain-loop reference: G_0 = sum over valid t of gamma^t r_t, per column."""
  out = np.zeros(rewards.shape[1])
  for i in range(rewards.shape[1]):
    for t in range(rewards.shape[0]):
      if mask[t, i]:
        out[i] += discount ** t * rewards[t, i]
  return out


def _ppo_returns_at_start(placement, value, mask, discount):
  """What PPO maximizes, through the package's own code: place the values, then GAE with a
  zero critic and lambda = 1, whose value target A_0 + V_0 is the discounted return G_0."""
  from spo_jax.ppo import compute_gae

  rewards = place_rewards(value, mask, placement, discount)
  _, targets = compute_gae(rewards, jnp.zeros_like(rewards), mask, discount, 1.0)
  return rewards, targets[0]


def test_discounted_placement_orders_the_issue_example():
  """gamma = 0.99; trajectory a: 50 steps, centred win rate +0.30; b: 200 steps, +0.50.
  spread (w / T per step): G_0 = w (1 - gamma^T) / (T (1 - gamma))
    a: 0.30 (1 - 0.99^50) / 0.5  = 0.30 x 0.39499 / 0.5 = 0.2370
    b: 0.50 (1 - 0.99^200) / 2.0 = 0.50 x 0.86602 / 2.0 = 0.2165   -> a ranked above b: wrong.
  discounted (w (1 - gamma) / (1 - gamma^T) per step): G_0 = w exactly: 0.30 < 0.50."""
  mask = jnp.asarray(_prefix_mask([50, 200], 200))
  value = jnp.array([0.30, 0.50])
  fn = jax.jit(_ppo_returns_at_start, static_argnums=(0, 3))
  _, spread = fn("spread", value, mask, 0.99)
  np.testing.assert_allclose(spread, [0.2370, 0.2165], atol=1e-4)
  _, discounted = fn("discounted", value, mask, 0.99)
  np.testing.assert_allclose(discounted, [0.30, 0.50], rtol=1e-5)


@pytest.mark.parametrize("discount", [0.9, 0.99, 0.997, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_discounted_return_is_the_win_rate_for_any_lengths(discount, seed):
  """Property: random lengths (1 .. H) and random centred win rates in; the discounted
  return at t = 0 (the package's GAE target with a zero critic) is the win rate out, so it
  orders the trajectories exactly as the win rates do. Checked against a plain loop too."""
  rng = np.random.default_rng(seed)
  horizon, num = 1000, 24
  lengths = rng.integers(1, horizon + 1, num)
  lengths[:2] = [1, horizon]  # the extremes every draw must handle
  mask = _prefix_mask(lengths, horizon)
  value = rng.uniform(-0.5, 0.5, num).astype(np.float32)
  fn = jax.jit(_ppo_returns_at_start, static_argnums=(0, 3))
  rewards, start = fn("discounted", jnp.asarray(value), jnp.asarray(mask), discount)
  np.testing.assert_allclose(start, value, rtol=2e-4, atol=2e-6)
  np.testing.assert_allclose(_discounted_return_at_start(np.asarray(rewards, np.float64), mask,
                                                         discount), value, rtol=2e-4, atol=2e-6)
  np.testing.assert_array_equal(np.argsort(np.asarray(start)), np.argsort(value))


def test_spread_placement_misorders_mixed_lengths():
  """The property above is not automatic: with w / T per step and gamma = 0.99, the same kind
  of random draw puts some pair of trajectories in the wrong order (this is what the
  'discounted' default fixes)."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 1001, 24)
  mask = _prefix_mask(lengths, 1000)
  value = rng.uniform(-0.5, 0.5, 24).astype(np.float32)
  _, start = jax.jit(_ppo_returns_at_start, static_argnums=(0, 3))(
      "spread", jnp.asarray(value), jnp.asarray(mask), 0.99)
  assert not np.array_equal(np.argsort(np.asarray(start)), np.argsort(value))


def test_discounted_segment_rewards_return_each_segment_win_rate():
  """Segments of L = 4 in H = 12, gamma = 0.9: the discounted return of segment k's own
  steps, counted from the segment's first step kL, is the segment's value (for the segment
  in which the episode ends too, however few steps it kept)."""
  rng = np.random.default_rng(5)
  horizon, num, length, discount = 12, 6, 4, 0.9
  lengths = np.array([12, 1, 5, 8, 11, 3])
  mask = _prefix_mask(lengths, horizon)
  value = rng.uniform(-0.5, 0.5, (horizon // length, num)).astype(np.float32)
  rewards = np.asarray(place_segment_rewards(jnp.asarray(value), jnp.asarray(mask),
                                             "discounted", discount))
  for k in range(horizon // length):
    block = slice(k * length, (k + 1) * length)
    for i in range(num):
      if mask[k * length, i]:  # the segment began
        got = _discounted_return_at_start(rewards[block, i:i + 1], mask[block, i:i + 1],
                                          discount)[0]
        assert got == pytest.approx(value[k, i], rel=1e-5)
      else:
        np.testing.assert_array_equal(rewards[block, i], 0.0)
