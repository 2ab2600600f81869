"""Rollout alone at several compaction factors: physics steps executed and seconds per call.

  python scripts/compaction_factors.py hopper 256

Compiles one rollout per variant (off; f = 4: N, N/4, N/16; f = 2: N, N/2, ..., N/32) with a
freshly initialised policy of the env's preset, then times two calls each on new keys.
Printed: compile + first call, then per call the seconds, physics steps, valid steps and
valid steps per second (docs/performance.md, "Compaction").
"""

import sys
import time

import jax

from spo_jax import networks as nets
from spo_jax.envs import make_env
from spo_jax.presets import preset
from spo_jax.rollout import rollout


def main(env_name: str, num_envs: int, horizon: int = 1000) -> None:
  config = preset(env_name)
  env = make_env(env_name, config.backend)
  networks = nets.make_networks(env.observation_size, env.action_size,
                                config.policy_hidden_sizes, config.value_hidden_sizes,
                                config.activation, config.init_log_std)
  params = nets.init_params(networks, jax.random.PRNGKey(0))

  def policy_fn(obs, key):
    dist = networks.policy.apply(params.policy, obs)
    raw = networks.distribution.sample(dist, key)
    return raw, networks.distribution.log_prob(dist, raw)

  variants = {"off": None, "f4": (num_envs, num_envs // 4, num_envs // 16),
              "f2": tuple(num_envs >> i for i in range(6))}
  calls = {name: jax.jit(lambda key, sizes=sizes: rollout(env, policy_fn, key, num_envs,
                                                          horizon, batch_sizes=sizes))
           for name, sizes in variants.items()}
  for name, call in calls.items():
    start = time.perf_counter()
    jax.block_until_ready(call(jax.random.PRNGKey(1)))
    print(f"{name} compile+run {time.perf_counter() - start:.1f} s", flush=True)
  for repeat in range(2):
    for name, call in calls.items():
      start = time.perf_counter()
      result = jax.block_until_ready(call(jax.random.PRNGKey(2 + repeat)))
      seconds = time.perf_counter() - start
      valid = int(result.trajectory.mask.sum())
      print(f"{name:4s} {seconds:6.3f} s  physics {int(result.physics_steps):7d}  valid "
            f"{valid:6d}  valid/s {valid / seconds:8.0f}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))
