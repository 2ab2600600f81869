"""How much a steady one-way traveller beats a random policy under the 'spatial' raters.

Rolls out N episodes of point_reach with a constant action (a direction and a speed; the env
action is tanh(raw), as the rollout applies it) and N of uniformly random actions, from
independent resets, and prints P(traveller's episode > random episode) - 1/2 under the
intransitive teacher with `--raters` ('spatial' judges the travel; a JSON file with
metrics ["obs:0", "obs:1"] and the same weights judges the position instead).

    python scripts/spatial_raters_check.py --raters spatial
    python scripts/spatial_raters_check.py --raters position.json
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import spo_jax
from spo_jax.best_response import paired_preferences
from spo_jax.envs import env_spec, make_env
from spo_jax.rollout import rollout


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--raters", default="spatial")
  parser.add_argument("--episodes", type=int, default=2048)
  args = parser.parse_args()
  horizon = 32
  config = spo_jax.Config(env="point_reach", teacher="intransitive",
                          teacher_raters=args.raters, episode_length=horizon)
  env = make_env("point_reach", None)
  teacher = spo_jax.make_teacher(config, env_spec(env, horizon, "point_reach"))

  def constant(degrees: float, speed: float):
    raw = jnp.asarray([np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))]) * speed
    return lambda obs, key: (jnp.broadcast_to(raw, obs.shape[:-1] + (2,)),
                             jnp.zeros(obs.shape[:-1]))

  def uniform(obs, key):
    raw = jnp.arctanh(0.999 * jax.random.uniform(key, obs.shape[:-1] + (2,), minval=-1.0,
                                                 maxval=1.0))
    return raw, jnp.zeros(obs.shape[:-1])

  opponents = rollout(env, uniform, jax.random.PRNGKey(1), args.episodes, horizon, teacher)
  print("direction (deg)  raw speed  P(traveller > random) - 1/2")
  for degrees in (0, 30, 60, 90, 180):
    for speed in (1.0, 0.5, 0.25):
      result = rollout(env, constant(degrees, speed), jax.random.PRNGKey(2), args.episodes,
                       horizon, teacher)
      pref, _ = paired_preferences(teacher, result, opponents, jax.random.PRNGKey(0))
      print(f"{degrees:15d}  {speed:9.2f}  {float(pref.mean()) - 0.5:+.3f}")


if __name__ == "__main__":
  main()
