"""The memory estimate: refuse, before compiling, a run whose buffers cannot fit."""

from __future__ import annotations

import os

import jax

from spo_jax import reward_sources as sources
from spo_jax.config import Config, ConfigError

# Floats stored per step of the rollout besides the observation and the action: log-prob,
# reward, mask, value, advantage, return, done, time feature.
_SCALARS_PER_STEP = 8


def iteration_bytes(config: Config, obs_size: int, action_size: int) -> dict[str, int]:
  """Lower bound on the bytes one iteration's buffers take, by what they scale with.

    rollout:     S * H * N * (obs + action + 8 scalars) * 4 bytes
    preferences: S * N * M * 4 bytes, M = num_opponents, or N + queue_size for all pairs
                 (reward_source 'spo' only)

  XLA keeps a few more arrays alive (minibatch copies, gradients, the teacher's summaries),
  so real use is higher; the check below only refuses what cannot fit at all.
  """
  s, n, h = config.num_seeds, config.num_envs, config.episode_length
  opponents = config.num_opponents or n + config.queue_size
  rollout_bytes = s * h * n * (obs_size + action_size + _SCALARS_PER_STEP) * 4
  # Only SPO compares every trajectory with its opponents; the reward model labels a few pairs.
  entry = sources.REWARD_SOURCES.get(config.reward_source)
  preference_bytes = s * n * opponents * 4 if entry.preference_matrix else 0
  return {"rollout": rollout_bytes, "preferences": preference_bytes}


def available_memory(config: Config) -> tuple[int, str]:
  """(bytes, where): the accelerator's memory limit (`memory_stats()['bytes_limit']`, times
  the devices a sharded run spreads over), else the host's physical memory."""
  devices = jax.devices()
  stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    count = len(devices) if config.shard != "none" else 1
    return int(stats["bytes_limit"]) * count, f"{count} x {devices[0].device_kind}"
  pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return int(pages), "host RAM"


def check_memory(config: Config, obs_size: int, action_size: int,
                 available: tuple[int, str] | None = None) -> None:
  """Refuse, before compiling, a run whose per-iteration buffers (`iteration_bytes`) exceed
  the memory there is, naming the quantity to lower and by how much."""
  need = iteration_bytes(config, obs_size, action_size)
  total = sum(need.values())
  limit, where = available_memory(config) if available is None else available
  if total <= limit:
    return
  gib = 2.0**30
  s, n, h = config.num_seeds, config.num_envs, config.episode_length
  per_seed = total // s
  if per_seed <= limit:
    fix = f"lower num_seeds to at most {limit // per_seed} (or num_envs, episode_length)"
  elif need["preferences"] > need["rollout"] and config.queue_size > n:
    fix = (f"lower queue_size (now {config.queue_size}; the N x (N + queue_size) preference "
           "matrix dominates), or set num_opponents to compare each trajectory with k random "
           "opponents")
  elif need["preferences"] > need["rollout"]:
    fix = ("lower num_envs (the N x (N + queue_size) preference matrix dominates), or set "
           "num_opponents to compare each trajectory with k random opponents")
  else:
    fix = "lower num_envs or episode_length (one seed's rollout alone does not fit)"
  raise ConfigError(
      f"config fields num_seeds = {s}, num_envs = {n}, episode_length = {h} need at least "
      f"{total / gib:.1f} GiB per iteration (rollout {need['rollout'] / gib:.1f} GiB, "
      f"preferences {need['preferences'] / gib:.1f} GiB), more than the {limit / gib:.1f} GiB "
      f"of {where}; {fix}")
