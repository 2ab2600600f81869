"""Reward sources: the one seam between "how a trajectory is scored" and "how PPO learns".

A reward source turns a rollout into per-step rewards [H, N]:

  init(key, summary_template) -> state                 # device state kept in TrainState
  rewards(state, rollout, key) -> (rewards, state, metrics)
  uses_teacher: bool                                   # whether the rollout folds summaries
  segment_length: int                                  # L > 0: fold segments of L steps
  episode_summary: bool (optional, False)              # with segments, fold episodes too

`metrics` holds at least `num_queries` and `num_labels` (preference queries put to the
teacher and answered in this iteration; 0 for sources that ask none) and, for sources that
ask a teacher, `teacher_invalid` (answers that were not probabilities; the numerical guard
stops training on them). `spo` with all pairs adds `cyclic_triples`, the fraction of triples
of the batch whose teacher majority is a cycle (`winrate.majority_cycles`). Rollout, PPO, networks
and evaluation are shared by all sources, so comparing two sources measures the reward
source and nothing else.

The contract is `RewardSource` (checked by `check_reward_source` when a source is built,
before anything is compiled); the names `Config.reward_source` accepts come from one
registry, `REWARD_SOURCES`, read by `validate`, `spo-train --help` and the trainer. A new
source is a file with its class and one `REWARD_SOURCES.register(name, RewardSourceEntry(...))`
(docs/design.md, "Adding a plug-in").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from spo_jax.errors import ProtocolError, fail
from spo_jax.registry import Registry
from spo_jax.reward_model import RewardModelSource
from spo_jax.rollout import RolloutResult
from spo_jax.teachers import EnvSpec, TeacherProtocol
from spo_jax.winrate import (
    compute_winrates,
    place_rewards,
    place_segment_rewards,
    queue_init,
    queue_push,
    segment_winrates,
    segments_begun,
)


@runtime_checkable
class RewardSource(Protocol):
  """What the trainer calls on a reward source (all inside the jitted iteration but
  `uses_teacher` and `segment_length`, which are read when the iteration is built).

  uses_teacher: whether the rollout folds teacher summaries for it (and so whether a teacher
    is built, fit and contract-checked for a run).
  segment_length: L > 0 folds the teacher over blocks of L steps (summaries [N, H/L, ...]);
    0 folds whole episodes.
  episode_summary (optional member, False when absent): with segments, fold whole episodes as
    well; the rollout's summaries are then the pair (segments [N, H/L, ...], episodes [N, ...]).
  init(key, summary_template) -> state: its device state, kept in `TrainState.reward_state`
    (and so checkpointed); `summary_template` is one teacher summary, or None.
  rewards(state, rollout, key) -> (rewards [H, N], state, metrics): metrics hold at least
    `num_queries` and `num_labels` (int32 []), and `teacher_invalid` if it asks a teacher.
  """

  uses_teacher: bool
  segment_length: int

  def init(self, key: jax.Array, summary_template: Any) -> Any: ...

  def rewards(self, state: Any, result: RolloutResult, key: jax.Array
              ) -> tuple[jax.Array, Any, dict[str, jax.Array]]: ...


def check_reward_source(source: Any) -> None:
  """Refuse an object that is not a `RewardSource`, before anything is compiled: raise
  `ProtocolError` (one line) naming the first missing or ill-typed member."""
  name = type(source).__name__
  for method in ("init", "rewards"):
    if not callable(getattr(source, method, None)):
      raise ProtocolError(f"reward source {name} has no '{method}' method; a reward source "
                          "needs init(key, summary_template) -> state and "
                          "rewards(state, rollout, key) -> (rewards, state, metrics)")
  uses_teacher = getattr(source, "uses_teacher", None)
  if not isinstance(uses_teacher, bool):
    raise ProtocolError(f"reward source {name}: 'uses_teacher' must be a bool, got "
                        f"{uses_teacher!r}")
  segment_length = getattr(source, "segment_length", None)
  if (isinstance(segment_length, bool) or not isinstance(segment_length, int)
      or segment_length < 0):
    raise ProtocolError(f"reward source {name}: 'segment_length' must be an int >= 0, got "
                        f"{segment_length!r}")
  if not isinstance(episode_summary(source), bool):
    raise ProtocolError(f"reward source {name}: 'episode_summary' must be a bool, got "
                        f"{episode_summary(source)!r}")


def episode_summary(source: Any) -> Any:
  """The optional `episode_summary` member of a reward source (False when it has none)."""
  return getattr(source, "episode_summary", False)


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """PPO on the environment's own reward: the reference SPO is measured against."""

  uses_teacher = False
  segment_length = 0

  def init(self, key: jax.Array, summary_template: Any) -> Any:
    del key, summary_template
    return ()

  def rewards(self, state: Any, result: RolloutResult, key: jax.Array):
    del key
    zero = jnp.zeros((), jnp.int32)
    return result.trajectory.reward, state, {"num_queries": zero, "num_labels": zero}


@dataclasses.dataclass(frozen=True)
class SelfPlayPreference:
  """Self-Play Preference Optimization: each trajectory's reward is its win rate against
  the other trajectories (and a FIFO queue of past ones), judged by the teacher.

  With `segment_length` L > 0, each segment of L steps is a trajectory of its own: segment k
  of trajectory i is compared with segment k of the others (`winrate.segment_winrates`) and
  its win rate is spread over its own steps, so an action's reward comes from the L steps
  around it instead of the whole episode (no queue: refused by `config.validate`). With
  `episode_weight` c > 0 as well, whole episodes are compared too and each step's reward adds
  c times the whole-episode reward: the discounted return at t = 0 is then
  sum_k gamma^(kL) w_k + c w_episode ('discounted' placement, centred win rates), so lasting
  longer than the others pays through the episode's comparison while the segments give
  progress within the episode credit where it happened.
  """

  teacher: TeacherProtocol
  num_opponents: int = 0
  queue_size: int = 0
  self_comparison: str = "exclude"
  labels: str = "soft"
  placement: str = "discounted"
  center: bool = True
  segment_length: int = 0
  discount: float = 1.0
  episode_weight: float = 0.0
  uses_teacher = True

  @property
  def episode_summary(self) -> bool:
    return bool(self.segment_length and self.episode_weight > 0)

  def init(self, key: jax.Array, summary_template: Any) -> Any:
    del key
    if self.queue_size == 0:
      return ()
    return queue_init(summary_template, self.queue_size)

  def rewards(self, state: Any, result: RolloutResult, key: jax.Array):
    mask = result.trajectory.mask
    summaries, episode_rewards, episode_counts = result.summaries, 0.0, (0, 0, 0)
    if self.episode_summary:
      summaries, episodes = result.summaries
      key, k_episodes = jax.random.split(key)
      episode_rewards, episode_counts = self._episode_rewards(episodes, mask, k_episodes)
    if self.segment_length:
      rates = segment_winrates(self.teacher, summaries, mask, key,
                               num_opponents=self.num_opponents,
                               self_comparison=self.self_comparison, labels=self.labels)
      # Statistics over the segments that were compared (begun before their episode ended).
      counted = segments_begun(mask, rates.winrate.shape[0])
      place = place_segment_rewards
    else:
      queue = state if self.queue_size else None
      rates = compute_winrates(self.teacher, result.summaries, queue, key,
                               num_opponents=self.num_opponents,
                               self_comparison=self.self_comparison, labels=self.labels)
      counted = jnp.ones(rates.winrate.shape, bool)
      place = place_rewards
      if self.queue_size:
        state = queue_push(state, result.summaries)
    value = rates.winrate - 0.5 if self.center else rates.winrate
    rewards = place(value, mask, self.placement, self.discount) + episode_rewards
    w = rates.winrate
    count = jnp.maximum(jnp.sum(counted), 1)
    mean = jnp.sum(jnp.where(counted, w, 0.0)) / count
    queries, labels, invalid = episode_counts
    metrics = {"num_queries": rates.num_queries + queries,
               "num_labels": rates.num_labels + labels,
               "teacher_invalid": rates.num_invalid + invalid,
               "winrate_std": jnp.sqrt(jnp.sum(jnp.where(counted, (w - mean) ** 2, 0.0)) / count),
               "winrate_min": jnp.min(jnp.where(counted, w, jnp.inf)),
               "winrate_max": jnp.max(jnp.where(counted, w, -jnp.inf)), "winrate_mean": mean}
    if rates.num_cyclic is not None:
      # How often the teacher's majority cycles: where it never does, the Minimax Winner is
      # the ordinary maximiser (winrate.majority_cycles).
      metrics["cyclic_triples"] = rates.num_cyclic / jnp.maximum(rates.num_triples, 1.0)
    return rewards, state, metrics

  def _episode_rewards(self, episodes: Any, mask: jax.Array, key: jax.Array
                       ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """`episode_weight` times the whole episodes' placed win rates ([H, N]), and the
    comparison's (queries, labels, invalid answers)."""
    rates = compute_winrates(self.teacher, episodes, None, key, num_opponents=self.num_opponents,
                             self_comparison=self.self_comparison, labels=self.labels)
    value = rates.winrate - 0.5 if self.center else rates.winrate
    placed = place_rewards(value, mask, self.placement, self.discount)
    return (self.episode_weight * placed,
            (rates.num_queries, rates.num_labels, rates.num_invalid))


def _no_config_check(cfg: Any) -> None:
  del cfg


def _check_spo(cfg: Any) -> None:
  if cfg.segment_length and cfg.queue_size:
    fail("segment_length", cfg.segment_length,
         "cannot be combined with queue_size > 0 (past segments are not queued); set one to 0")
  if cfg.episode_weight and not cfg.segment_length:
    fail("episode_weight", cfg.episode_weight,
         "adds whole-episode win rates to segments' and needs segment_length > 0 (without "
         "segments whole episodes are compared already); set segment_length or episode_weight 0")


class RewardSourceEntry(NamedTuple):
  """A named reward source in `REWARD_SOURCES`.

  build(config, teacher, spec) -> RewardSource: `teacher` is the run's teacher (None when
    `uses_teacher` is False: none is built), `spec` the env's `EnvSpec`.
  uses_teacher: known before building, so that a run whose source asks no teacher neither
    builds, fits nor checks one.
  check_config(cfg): checks of config combinations this source refuses (run by `validate`).
  preference_matrix: it compares every trajectory with N + Q opponents (memory estimate).
  """

  build: Callable[[Any, TeacherProtocol | None, EnvSpec], RewardSource]
  description: str
  uses_teacher: bool = True
  check_config: Callable[[Any], None] = _no_config_check
  preference_matrix: bool = False


REWARD_SOURCES: Registry[RewardSourceEntry] = Registry("reward source", "reward_source")


def _build_spo(config, teacher: TeacherProtocol, spec: EnvSpec) -> SelfPlayPreference:
  del spec
  return SelfPlayPreference(teacher, config.num_opponents, config.queue_size,
                            config.self_comparison, config.labels, config.reward_placement,
                            config.center_rewards, config.segment_length, config.discount,
                            config.episode_weight)


REWARD_SOURCES.register("spo", RewardSourceEntry(
    _build_spo, "SPO: win rate against the other trajectories, judged by the teacher",
    check_config=_check_spo, preference_matrix=True))
REWARD_SOURCES.register("ground_truth", RewardSourceEntry(
    lambda config, teacher, spec: GroundTruth(),
    "PPO on the environment's own reward (the reference)", uses_teacher=False))
REWARD_SOURCES.register("reward_model", RewardSourceEntry(
    RewardModelSource.from_config,
    "an MLP reward fit to the teacher's labels by Bradley-Terry (the baseline)"))


def make_reward_source(config, teacher: TeacherProtocol | None, spec: EnvSpec
                       ) -> RewardSource:
  """The reward source named by `config.reward_source`; `spec` gives the env's sizes.
  Its members are checked against `RewardSource` here, before anything is compiled."""
  entry = REWARD_SOURCES.get(config.reward_source)
  source = entry.build(config, teacher if entry.uses_teacher else None, spec)
  check_reward_source(source)
  return source
