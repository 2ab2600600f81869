"""Brax PPO's published settings per env (`SETTINGS`) and their scaling to our N parallel envs.

Pure arithmetic on the published numbers: nothing here imports JAX or Brax.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class BraxPPOSettings:
  """Brax PPO's settings for one env, as published for `num_envs` parallel envs (Brax's
  training notebook). Field names are `brax.training.agents.ppo.train`'s arguments."""

  num_evals: int
  reward_scaling: float
  episode_length: int
  normalize_observations: bool
  action_repeat: int
  unroll_length: int
  num_minibatches: int
  num_updates_per_batch: int
  discounting: float
  learning_rate: float
  entropy_cost: float
  num_envs: int
  """Parallel envs the settings were published for (replaced by our N)."""
  batch_size: int
  """Published batch size (scaled to our N: `scaled_batch_size`)."""
  source: str
  """Where the numbers come from."""
  hidden_sizes: tuple[int, ...] | None = None
  """Hidden layers of both networks; None: Brax's default networks."""


_ANT = dict(num_evals=10, reward_scaling=10.0, episode_length=1000, normalize_observations=True,
            action_repeat=1, unroll_length=5, num_minibatches=32, num_updates_per_batch=4,
            discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, num_envs=4096,
            batch_size=2048)

SETTINGS: dict[str, BraxPPOSettings] = {
    "halfcheetah": BraxPPOSettings(
        num_evals=20, reward_scaling=1.0, episode_length=1000, normalize_observations=True,
        action_repeat=1, unroll_length=20, num_minibatches=32, num_updates_per_batch=8,
        discounting=0.95, learning_rate=3e-4, entropy_cost=1e-3, num_envs=2048, batch_size=512,
        source="Brax training notebook, PPO on halfcheetah"),
    "ant": BraxPPOSettings(**_ANT, source="Brax training notebook, PPO on ant"),
    "hopper": BraxPPOSettings(
        **_ANT, source="Brax publishes SAC, not PPO, for hopper: its published PPO settings for "
        "ant, a locomotion task with early termination (Brax training notebook)"),
    "walker2d": BraxPPOSettings(
        **_ANT, source="Brax publishes SAC, not PPO, for walker2d: its published PPO settings "
        "for ant, a locomotion task with early termination (Brax training notebook)"),
    "inverted_pendulum": BraxPPOSettings(
        num_evals=20, reward_scaling=10.0, episode_length=1000, normalize_observations=True,
        action_repeat=1, unroll_length=5, num_minibatches=32, num_updates_per_batch=4,
        discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, num_envs=2048,
        batch_size=1024, source="Brax training notebook, PPO on inverted_pendulum (as in "
        "spo_jax/brax_ppo.py)"),
    # Not published: Brax-PPO-like settings sized for a run of seconds on the package's tiny
    # env (episodes of 32 steps, one training step = 32 x 4 x 8 = 1024 env steps at N = 64),
    # with the preset's (32, 32) networks, so that tests can run the whole pipeline.
    # The source still names learning_bench.py (now this file): it is saved in plan.json,
    # and a changed plan would refuse to resume existing point_reach benchmarks.
    "point_reach": BraxPPOSettings(
        num_evals=4, reward_scaling=1.0, episode_length=32, normalize_observations=True,
        action_repeat=1, unroll_length=8, num_minibatches=4, num_updates_per_batch=2,
        discounting=0.97, learning_rate=3e-3, entropy_cost=1e-3, num_envs=64, batch_size=32,
        source="not published: Brax-PPO-like settings for a run of seconds on the package's "
        "tiny env (spo_jax/learning_bench.py)", hidden_sizes=(32, 32)),
}


def scaled_batch_size(published_batch_size: int, published_num_envs: int, num_envs: int,
                      num_minibatches: int) -> int:
  """Brax's batch size for `num_envs` parallel envs instead of the published ones.

  b = round(published_batch_size x num_envs / published_num_envs), at least 1, then raised to
  the next multiple of q = num_envs / gcd(num_envs, num_minibatches): a Brax training step
  takes batch_size x num_minibatches unrolls from whole sweeps of all num_envs envs, so it
  asserts batch_size x num_minibatches % num_envs == 0, which holds exactly when q divides b.
  E.g. halfcheetah (512 of 2048 envs, 32 minibatches) at N = 256: 512 x 256 / 2048 = 64, and
  64 x 32 = 2048 = 8 x 256 already; at N = 6: 1.5 rounds to 2, q = 6 / gcd(6, 32) = 3, so 3.
  """
  # round half up in integers: floor((2 b N + E) / (2 E)) = floor(b N / E + 1/2)
  b = max(1, (2 * published_batch_size * num_envs + published_num_envs)
          // (2 * published_num_envs))
  q = num_envs // math.gcd(num_envs, num_minibatches)
  return -(-b // q) * q


def brax_kwargs(settings: BraxPPOSettings, num_envs: int) -> dict[str, Any]:
  """`ppo.train` keyword arguments (budget, seed and num_evals aside) at `num_envs` envs."""
  kwargs = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if f.name not in ("source", "hidden_sizes", "num_evals")}
  kwargs.update(num_envs=num_envs, batch_size=scaled_batch_size(
      settings.batch_size, settings.num_envs, num_envs, settings.num_minibatches))
  return kwargs


def brax_evaluation(num_episodes: int) -> dict[str, Any]:
  """Brax's evaluation made ours: `num_episodes` episodes of the deterministic policy (Brax's
  defaults, 128 episodes of the stochastic policy, would cost 8x our evaluation's physics at
  16 episodes, all of it on Brax PPO's clock, and score a different policy)."""
  return {"num_eval_envs": num_episodes, "deterministic_eval": True}


def brax_steps_per_training_step(kwargs: dict[str, Any]) -> int:
  """Env steps of one Brax training step: batch_size x num_minibatches x unroll_length x
  action_repeat (Brax's `env_step_per_training_step`)."""
  return (kwargs["batch_size"] * kwargs["num_minibatches"] * kwargs["unroll_length"]
          * kwargs["action_repeat"])


def brax_total_steps(budget: int, num_evals: int, step: int) -> int:
  """Env steps Brax PPO runs for `budget`: num_evals - 1 epochs (at least 1) of
  ceil(budget / (epochs x step)) training steps each (Brax's `num_training_steps_per_epoch`),
  so at least the budget and up to one epoch more."""
  epochs = max(num_evals - 1, 1)
  return epochs * -(-budget // (epochs * step)) * step
