"""Rollout alone at several compaction factors: physics steps executed and seconds per call.

  python scripts/compaction_factors.py hopper 256

Compiles one rollout per variant (off; f = 4: N, N/4, N/16; f = 2: N, N/2, ..., N/32) with a
freshly initialised policy of the env's preset, then times two calls each on new keys.
Printed: compile + first call, then per call the seconds, physics steps, valid steps and
valid steps per second (docs/performance.md, "Compaction").
"""
import time, sys, jax, jax.numpy as jnp
from spo_jax.envs import make_env
from spo_jax import networks as nets
from spo_jax.rollout import rollout
from spo_jax.config import preset
env_name = sys.argv[1]; N = int(sys.argv[2])
cfg = preset(env_name)
env = make_env(env_name, cfg.backend)
networks = nets.make_networks(env.observation_size, env.action_size, cfg.policy_hidden_sizes,
                              cfg.value_hidden_sizes, cfg.activation, cfg.init_log_std)
params = nets.init_params(networks, jax.random.PRNGKey(0))
def policy_fn(obs, key):
  dist = networks.policy.apply(params.policy, obs)
  raw = networks.distribution.sample(dist, key)
  return raw, networks.distribution.log_prob(dist, raw)
variants = {"off": None, "f4": (N, N//4, N//16), "f2": tuple(N >> i for i in range(6))}
fns = {k: jax.jit(lambda key, b=b: rollout(env, policy_fn, key, N, 1000, batch_sizes=b)) for k, b in variants.items()}
for k, f in fns.items():
  t0 = time.perf_counter(); r = jax.block_until_ready(f(jax.random.PRNGKey(1))); print(k, "compile+run", round(time.perf_counter()-t0, 1), flush=True)
for rep in range(2):
  for k, f in fns.items():
    t0 = time.perf_counter(); r = jax.block_until_ready(f(jax.random.PRNGKey(2 + rep))); dt = time.perf_counter()-t0
    valid = int(r.trajectory.mask.sum())
    print(f"{k:4s} {dt:6.3f}s physics {int(r.physics_steps):7d} valid {valid:6d} loop {int(r.loop_steps)} valid/s {valid/dt:8.0f}", flush=True)
