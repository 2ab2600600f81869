"""Brax's own PPO trainer (`brax.training.agents.ppo.train`) on current JAX, as a reference.

Brax 0.14.2 calls `jax.device_put_replicated`, which JAX has removed (its `pmap` now runs on
`shard_map` and takes arrays placed with a `NamedSharding`). `install_shim()` puts back an
equivalent: the value stacked along a new leading device axis and split over a 1-D mesh of
the given devices. Nothing else in Brax's PPO path needs patching on jax 0.10.2 (checked by
running it; `brax.training.pmap.bcast_local_devices` calls the same function).

The package's own envs with continuous actions (point_reach, balance) train too, wrapped so
that their `step` keeps the metric keys Brax's wrappers add (`_KeepMetricKeys`); matrix_game,
whose actions are discrete, does not (`unsupported_reason`).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import State, Wrapper

from spo_jax import envs as envs_lib
from spo_jax._quiet import quiet_imports
from spo_jax.config import ConfigError
from spo_jax.envs import PACKAGE_ENVS, make_env


def _device_put_replicated(value: Any, devices: list) -> Any:
  """`value` copied onto each of `devices`: leaves [D, ...] split over a 1-D mesh, the layout
  `jax.pmap` takes for an input mapped over D devices."""
  mesh = jax.sharding.Mesh(np.asarray(devices), ("i",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("i"))
  return jax.tree.map(
      lambda x: jax.device_put(jnp.stack([jnp.asarray(x)] * len(devices)), sharding), value)


def install_shim() -> None:
  """Give `jax` back `device_put_replicated` if this JAX lacks it (idempotent)."""
  if not hasattr(jax, "device_put_replicated"):
    jax.device_put_replicated = _device_put_replicated


class _KeepMetricKeys(Wrapper):
  """Carries every metric key through `step`. The package's envs return a fresh `metrics`
  dict from `step` (e.g. point_reach: {'distance'}), while Brax's `EpisodeWrapper` adds a
  'reward' key at reset and its `lax.scan` over `action_repeat` needs the same keys in and
  out; Brax's own envs update the dict in place, so they need no wrapper."""

  def step(self, state: State, action: jax.Array) -> State:
    new = self.env.step(state, action)
    return new.replace(metrics={**state.metrics, **new.metrics})


def unsupported_reason(env_name: str) -> str | None:
  """Why Brax's PPO cannot train `env_name`, or None if it can: it trains Brax registry envs
  and the package's envs with continuous actions (its policy is a tanh-Gaussian)."""
  if env_name in envs_lib.BRAX_ENV_NAMES:
    return None
  env_class = envs_lib.PACKAGE_ENVS.get(env_name)
  if env_class is None:
    return "it is neither a Brax registry env nor one of the package's envs"
  if getattr(env_class, "discrete_actions", False):
    return "it has discrete actions and Brax's PPO has only a continuous (tanh-Gaussian) policy"
  return None


def train(env_name: str, num_envs: int, num_timesteps: int, *, episode_length: int = 1000,
          target_return: float | None = None, seed: int = 0, num_evals: int = 20,
          hidden_sizes: tuple[int, ...] | None = (64, 64), backend: str | None = None,
          settings: dict[str, Any] | None = None, start: float | None = None,
          **ppo_kwargs: Any) -> dict:
  """Run Brax PPO on `env_name` with `num_envs` parallel envs.

  `settings`: Brax `ppo.train` keyword arguments (reward_scaling, unroll_length, batch_size,
  ...) that replace the built-in inverted_pendulum ones below; `ppo_kwargs` override both.
  `hidden_sizes`: both networks' hidden layers, or None for Brax's default networks.
  `backend`: the Brax physics backend (None: the env's default). `start`: the
  `time.perf_counter()` reading the clock counts from (default: just before `ppo.train`, after
  the env is built).

  Returns wall time (compilation included), env steps and the evaluation curve
  [(step, return, seconds since start)]; `wall_to_target_s` is the time of the first
  evaluation with return >= `target_return` (None if never), as a user would see it.
  Brax counts `num_timesteps` env steps of its auto-reset rollouts; every one is useful.
  """
  install_shim()

  # Imported here, after the shim and only when Brax PPO runs (~0.65 s), quietly: the same
  # notices spo_jax hides for its own envs (_quiet.py).
  with quiet_imports():
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo
  reason = unsupported_reason(env_name)
  if reason is not None:
    raise ConfigError(f"Brax PPO cannot train '{env_name}': {reason}")
  env = make_env(env_name, backend)
  if env_name in PACKAGE_ENVS:
    env = _KeepMetricKeys(env)
  curve: list[tuple[int, float, float]] = []
  start = time.perf_counter() if start is None else start

  def progress(step, metrics):
    if "eval/episode_reward" in metrics:  # training-metric callbacks carry no evaluation
      curve.append((int(step), float(metrics["eval/episode_reward"]),
                    time.perf_counter() - start))

  # Brax's published PPO settings for inverted_pendulum (its training notebook), except the
  # number of envs, which is the benchmark's N; batch_size = N keeps
  # batch_size x num_minibatches a multiple of num_envs, as Brax requires.
  kwargs = dict(reward_scaling=10.0, episode_length=episode_length,
                normalize_observations=True, action_repeat=1, unroll_length=5,
                num_minibatches=32, num_updates_per_batch=4, discounting=0.97,
                learning_rate=3e-4, entropy_cost=1e-2, batch_size=num_envs)
  if settings is not None:
    kwargs = dict(settings)
    kwargs.setdefault("episode_length", episode_length)
  kwargs.update(num_timesteps=num_timesteps, num_evals=num_evals, num_envs=num_envs, seed=seed)
  kwargs.update(ppo_kwargs)
  network_factory = ppo_networks.make_ppo_networks  # Brax's defaults
  if hidden_sizes is not None:
    network_factory = lambda *a, **k: ppo_networks.make_ppo_networks(
        *a, **k, policy_hidden_layer_sizes=hidden_sizes, value_hidden_layer_sizes=hidden_sizes)
  ppo.train(environment=env, progress_fn=progress, network_factory=network_factory, **kwargs)
  wall = time.perf_counter() - start
  reached = [t for _, r, t in curve if target_return is not None and r >= target_return]
  return {"wall_s": wall, "env_steps": curve[-1][0] if curve else 0, "curve": curve,
          "wall_to_target_s": reached[0] if reached else None,
          "steps_to_target": next((s for s, r, _ in curve
                                   if target_return is not None and r >= target_return), None)}
