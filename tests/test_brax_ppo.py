"""spo_jax/brax_ppo.py: the pieces around Brax's own PPO that need no Brax env and no Brax
training compiled: the `device_put_replicated` shim, the wrapper that lets the package's envs
run under Brax's wrappers, and which envs Brax PPO can train. (Brax PPO itself runs in
tests/test_learning_bench.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax import brax_ppo
from spo_jax.config import ConfigError
from spo_jax.tiny_envs import PointReach


def test_replicated_values_lead_with_the_device_axis_pmap_maps_over():
  devices = jax.local_devices()
  tree = {"scale": 2.0, "w": np.arange(6.0).reshape(2, 3)}
  out = brax_ppo._device_put_replicated(tree, devices)
  d = len(devices)
  assert out["scale"].shape == (d,) and out["w"].shape == (d, 2, 3)
  for i in range(d):
    np.testing.assert_array_equal(out["w"][i], tree["w"])
  assert out["w"].sharding.spec == jax.sharding.PartitionSpec("i")
  # What Brax does with it: a pmap over the devices, each seeing one copy.
  doubled = jax.pmap(lambda t: t["scale"] * t["w"])(out)
  np.testing.assert_array_equal(np.asarray(doubled), np.stack([2 * tree["w"]] * d))


def test_install_shim_fills_in_only_what_jax_lacks(monkeypatch):
  # Registered first so that teardown removes whatever the shim set.
  monkeypatch.setattr(jax, "device_put_replicated", "jax's own", raising=False)
  brax_ppo.install_shim()
  assert jax.device_put_replicated == "jax's own"  # a JAX that has it keeps its own
  monkeypatch.delattr(jax, "device_put_replicated")
  brax_ppo.install_shim()
  brax_ppo.install_shim()  # idempotent
  assert jax.device_put_replicated is brax_ppo._device_put_replicated


def test_the_wrapper_keeps_the_metric_keys_brax_adds_through_a_scan():
  env = PointReach()
  # Brax's EpisodeWrapper adds a 'reward' metric at reset and scans `step` over
  # action_repeat, which needs the same keys in and out.
  state = env.reset(jax.random.PRNGKey(0))
  state = state.replace(metrics={**state.metrics, "reward": jnp.zeros(())})
  right = jnp.asarray([1.0, 0.0])

  def repeat(step):
    return jax.jit(lambda s: jax.lax.scan(lambda s, _: (step(s, right), None), s, None,
                                          length=2)[0])

  with pytest.raises(TypeError, match="carry"):
    repeat(env.step)(state)  # point_reach's step returns {'distance'} only
  wrapped = brax_ppo._KeepMetricKeys(env)
  after = repeat(wrapped.step)(state)
  assert set(after.metrics) == {"distance", "reward"}
  # Two steps of 0.1 to the right: the distance is the new position's, worked in NumPy.
  obs = np.asarray(state.obs)
  position, target = obs[:2] + [0.2, 0.0], obs[2:]
  assert float(after.metrics["distance"]) == pytest.approx(np.linalg.norm(position - target),
                                                           rel=1e-5)
  assert float(after.metrics["reward"]) == 0.0  # the wrapper's own value, untouched here


@pytest.mark.parametrize("name, words", [
    ("inverted_pendulum", None), ("hopper", None), ("point_reach", None), ("balance", None),
    ("matrix_game", "discrete actions"), ("nowhere", "neither a Brax registry env")])
def test_which_envs_brax_ppo_can_train(name, words):
  reason = brax_ppo.unsupported_reason(name)
  assert reason is None if words is None else words in reason


def test_train_refuses_a_discrete_env_before_building_anything(monkeypatch):
  def no_env(*args, **kwargs):
    raise AssertionError("the env was built")

  monkeypatch.setattr(brax_ppo, "make_env", no_env)
  # The refusal comes after the shim: keep jax as it was (see above).
  monkeypatch.setattr(jax, "device_put_replicated", None, raising=False)
  monkeypatch.delattr(jax, "device_put_replicated")
  with pytest.raises(ConfigError, match="Brax PPO cannot train 'matrix_game': it has discrete"):
    brax_ppo.train("matrix_game", num_envs=4, num_timesteps=100)
