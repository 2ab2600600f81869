"""Reward sources: the one seam between "how a trajectory is scored" and "how PPO learns".

A reward source turns a rollout into per-step rewards [H, N]:

  init(key, summary_template) -> state                 # device state kept in TrainState
  rewards(state, rollout, key) -> (rewards, state, metrics)
  uses_teacher: bool                                   # whether the rollout folds summaries

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
from spo_jax.winrate import compute_winrates, place_rewards, queue_init, queue_push


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """PPO on the environment's own reward: the reference SPO is measured against."""

  uses_teacher = False

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
  the other trajectories (and a FIFO queue of past ones), judged by the teacher."""

  teacher: Any
  num_opponents: int = 0
  queue_size: int = 0
  self_comparison: str = "exclude"
  labels: str = "soft"
  placement: str = "spread"
  center: bool = True
  uses_teacher = True

  def init(self, key: jax.Array, summary_template: Any) -> Any:
    del key
    if self.queue_size == 0:
      return ()
    return queue_init(summary_template, self.queue_size)

  def rewards(self, state: Any, result: RolloutResult, key: jax.Array):
    queue = state if self.queue_size else None
    rates = compute_winrates(self.teacher, result.summaries, queue, key,
                                num_opponents=self.num_opponents,
                                self_comparison=self.self_comparison, labels=self.labels)
    value = rates.winrate - 0.5 if self.center else rates.winrate
    rewards = place_rewards(value, result.trajectory.mask, self.placement)
    if self.queue_size:
      state = queue_push(state, result.summaries)
    metrics = {"num_queries": rates.num_queries, "num_labels": rates.num_labels,
               "teacher_invalid": rates.num_invalid,
               "winrate_std": jnp.std(rates.winrate), "winrate_min": jnp.min(rates.winrate),
               "winrate_max": jnp.max(rates.winrate), "winrate_mean": jnp.mean(rates.winrate)}
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
                            config.center_rewards)
