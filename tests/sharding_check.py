"""Run by tests/test_sharding.py in a subprocess with 4 fake CPU devices (chex sets the XLA
flag, which must happen before JAX starts): sharded runs must equal the single-device runs
with the same seeds. Every run compiles without XLA's LLVM optimisations (about 40% off each
compile; the SPMD partitioning that sharding is about happens before, in XLA's HLO passes)."""

import sys

import chex

chex.set_n_cpu_devices(4)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import spo_jax  # noqa: E402
from spo_jax.config import ConfigError  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
assert len(jax.devices()) == 4, jax.devices()
TINY = spo_jax.preset("balance").replace(
    num_envs=8, episode_length=16, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), max_iterations=2, eval_every=1,
    num_timesteps=10**9)


def same(a, b):
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
  assert a.metrics["step"] == b.metrics["step"]


same(spo_jax.train(TINY), spo_jax.train(TINY.replace(shard="envs")))
print("envs: sharded == single device")
seeds = TINY.replace(num_seeds=4)
sharded = spo_jax.train(seeds.replace(shard="seeds"))
# The seed axis really lives on 4 devices, one seed each.
leaf = jax.tree.leaves(sharded.params)[0]
assert len(leaf.sharding.device_set) == 4 and leaf.addressable_shards[0].data.shape[0] == 1
same(spo_jax.train(seeds), sharded)
print("seeds: sharded == single device")
for bad, field in ((TINY.replace(num_envs=6, num_minibatches=1, shard="envs"), "num_envs"),
                   (TINY.replace(num_seeds=6, shard="seeds"), "num_seeds")):
  try:
    spo_jax.train(bad)
  except ConfigError as error:
    assert f"'{field}'" in str(error) and "4 devices" in str(error), error
  else:
    sys.exit(f"{field}: no error")
print("indivisible axes refused")
