"""Reward sources: the one seam between "how a trajectory is scored" and "how PPO learns".

A reward source turns a rollout into per-step rewards [H, N]:

  init(key, summary_template) -> state                 # device state kept in TrainState
  rewards(state, rollout, key) -> (rewards, state, metrics)
  uses_teacher: bool                                   # whether the rollout folds summaries
  segment_length: int                                  # L > 0: fold segments of L steps

`metrics` holds at least `num_queries` and `num_labels` (preference queries put to the
teacher and answered in this iteration; 0 for sources that ask none) and, for sources that
ask a teacher, `teacher_invalid` (answers that were not probabilities; the numerical guard
stops training on them). Rollout, PPO, networks
and evaluation are shared by all sources, so comparing two sources measures the reward
source and nothing else. A new source (e.g. a learned reward model) adds a class here and
an entry in `REWARD_SOURCES`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from spo_jax.rollout import RolloutResult
from spo_jax.teachers import EnvSpec
from spo_jax.winrate import (
    compute_winrates,
    place_rewards,
    place_segment_rewards,
    queue_init,
    queue_push,
    segment_winrates,
    segments_begun,
)


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
  around it instead of the whole episode (no queue: refused by `config.validate`).
  """

  teacher: Any
  num_opponents: int = 0
  queue_size: int = 0
  self_comparison: str = "exclude"
  labels: str = "soft"
  placement: str = "spread"
  center: bool = True
  segment_length: int = 0
  uses_teacher = True

  def init(self, key: jax.Array, summary_template: Any) -> Any:
    del key
    if self.queue_size == 0:
      return ()
    return queue_init(summary_template, self.queue_size)

  def rewards(self, state: Any, result: RolloutResult, key: jax.Array):
    mask = result.trajectory.mask
    if self.segment_length:
      rates = segment_winrates(self.teacher, result.summaries, mask, key,
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
    rewards = place(value, mask, self.placement)
    w = rates.winrate
    count = jnp.maximum(jnp.sum(counted), 1)
    mean = jnp.sum(jnp.where(counted, w, 0.0)) / count
    metrics = {"num_queries": rates.num_queries, "num_labels": rates.num_labels,
               "teacher_invalid": rates.num_invalid,
               "winrate_std": jnp.sqrt(jnp.sum(jnp.where(counted, (w - mean) ** 2, 0.0)) / count),
               "winrate_min": jnp.min(jnp.where(counted, w, jnp.inf)),
               "winrate_max": jnp.max(jnp.where(counted, w, -jnp.inf)), "winrate_mean": mean}
    return rewards, state, metrics


REWARD_SOURCES = ("spo", "ground_truth", "reward_model")


def make_reward_source(config, teacher: Any, spec: EnvSpec):
  """The reward source named by `config.reward_source`; `spec` gives the env's sizes."""
  if config.reward_source == "ground_truth":
    return GroundTruth()
  if config.reward_source == "reward_model":
    from spo_jax.reward_model import RewardModelSource

    return RewardModelSource.from_config(config, teacher, spec)
  return SelfPlayPreference(teacher, config.num_opponents, config.queue_size,
                            config.self_comparison, config.labels, config.reward_placement,
                            config.center_rewards, config.segment_length)
