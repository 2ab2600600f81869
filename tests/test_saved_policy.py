"""spo_jax/saved_policy.py: policy.json (`PolicySpec`) written and read back, the env checks
made before a checkpoint is opened, and the policy's weights read alone from a checkpoint."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import networks as nets
from spo_jax.checkpoint import Checkpointer
from spo_jax.config import ConfigError
from spo_jax.evaluate import PolicyParams
from spo_jax.saved_policy import (
    FORMAT,
    PolicySpec,
    abstract_policy_params,
    check_env_fits,
    check_resume_env,
    read_spec,
    restore_policy_params,
    write_spec,
)
from spo_jax.tiny_envs import Balance, MatrixGame, PointReach

TINY = spo_jax.preset("point_reach").replace(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9, max_iterations=4,
    eval_every=1, checkpoint_every=0, queue_size=4)

SPEC = PolicySpec(observation_size=4, action_size=2, policy_hidden_sizes=(8, 4),
                  value_hidden_sizes=(6,), activation="tanh", init_log_std=-0.5,
                  discrete=False, normalize_observations=True, env_kwargs={})


def test_from_config_takes_the_envs_sizes_and_the_configs_networks():
  spec = PolicySpec.from_config(TINY, PointReach(), 4, {})
  assert spec.env_facts() == (4, 2, False) and spec.user_env_class is None
  assert spec.policy_hidden_sizes == (8,) and spec.value_hidden_sizes == (8,)
  assert spec.normalize_observations == TINY.normalize_observations
  kwargs = {"num_outcomes": 4}
  game = PolicySpec.from_config(TINY, MatrixGame(4), 1, kwargs, "my_module:Game")
  kwargs["num_outcomes"] = 5  # the spec keeps its own copy
  assert game.env_facts() == (1, 4, True) and game.env_kwargs == {"num_outcomes": 4}
  assert game.user_env_class == "my_module:Game"


def test_json_round_trip_and_older_or_newer_files():
  text = SPEC.to_json()
  data = json.loads(text)
  assert data["format"] == FORMAT == 1 and data["policy_hidden_sizes"] == [8, 4]
  assert PolicySpec.from_json(text, "policy.json") == SPEC  # lists back to tuples
  # A file from before `user_env_class` existed reads as a registry env's; a field this
  # version does not know is ignored.
  del data["user_env_class"]
  data["comment"] = "written by hand"
  assert PolicySpec.from_json(json.dumps(data), "policy.json") == SPEC
  with pytest.raises(ConfigError, match=r"'run/policy.json' has format 2, newer than this "
                                        r"spo_jax reads \(1\)"):
    PolicySpec.from_json(json.dumps({**data, "format": 2}), "run/policy.json")


@pytest.mark.parametrize("text", ['{"observation_size": 4', "[1, 2]",
                                  json.dumps({"format": 1, "observation_size": 4})])
def test_a_damaged_file_is_refused_in_one_line(text):
  with pytest.raises(ConfigError, match="'p.json' is not a valid policy description") as info:
    PolicySpec.from_json(text, "p.json")
  assert "\n" not in str(info.value)


def test_write_and_read_the_spec_of_a_run_directory(tmp_path):
  assert read_spec(tmp_path) is None  # a run from before policy.json
  spec = dataclasses.replace(SPEC, env_kwargs={"num_outcomes": 3}, user_env_class="m:Env")
  write_spec(tmp_path, spec)
  assert read_spec(tmp_path) == spec
  assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]  # no temporary left


def test_make_networks_builds_the_described_layers():
  networks = SPEC.make_networks()
  params = jax.eval_shape(lambda key: nets.init_params(networks, key), jax.random.PRNGKey(0))
  kernels = [x.shape for x in jax.tree.leaves(params.policy) if len(x.shape) == 2]
  # 4 observations -> 8 -> 4 -> mean of 2 actions (its log-std is a separate vector).
  assert kernels == [(4, 8), (8, 4), (4, 2)]


def test_check_env_fits_before_the_checkpoint_is_opened():
  check_env_fits(SPEC, None, "run", "pass env=")  # a registry env's run: rebuilt by name
  check_env_fits(SPEC, PointReach(), "run", "pass env=")  # 4 observations, 2 actions
  user = dataclasses.replace(SPEC, user_env_class="my_envs:Walker")
  with pytest.raises(ConfigError, match="'run' was trained on your own environment "
                                        "my_envs:Walker, which cannot be rebuilt from its "
                                        "name; pass env="):
    check_env_fits(user, None, "run", "pass env=")
  with pytest.raises(ConfigError) as info:
    check_env_fits(user, MatrixGame(3), "run", "pass env=")
  assert str(info.value) == (
      "environment spo_jax.tiny_envs:MatrixGame (observation size 1, 3 discrete actions) does "
      "not fit the policy of 'run' (observation size 4, action size 2); pass the environment "
      "it was trained on (my_envs:Walker)")
  with pytest.raises(ConfigError, match="action size 1.*the env its config.json names"):
    check_env_fits(SPEC, Balance(), "run", "pass env=")  # 4 observations, but 1 action


def test_check_resume_env():
  user = dataclasses.replace(SPEC, user_env_class="my_envs:Walker")
  check_resume_env(SPEC, None, "run")  # checked before building, a registry env: fine
  check_resume_env(SPEC, SPEC, "run")
  check_resume_env(user, user, "run")
  for current in (None, SPEC):  # the user's env is not given again
    with pytest.raises(ConfigError, match="trained on your own environment my_envs:Walker; "
                                          "pass it again"):
      check_resume_env(user, current, "run")
  other = dataclasses.replace(SPEC, action_size=3)
  with pytest.raises(ConfigError, match="trained for observation size 4, action size 2, the "
                                        "environment now has observation size 4, action "
                                        "size 3"):
    check_resume_env(SPEC, other, "run")


def _random_like(tree, rng):
  return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), tree)


def test_abstract_params_lead_with_the_seed_axis():
  networks = SPEC.make_networks()
  one = jax.eval_shape(lambda key: nets.init_params(networks, key), jax.random.PRNGKey(0))
  abstract = abstract_policy_params(networks, 3)
  assert isinstance(abstract, PolicyParams)
  for a, x in zip(jax.tree.leaves(abstract.policy), jax.tree.leaves(one.policy), strict=True):
    assert (a.shape, a.dtype) == ((3, *x.shape), x.dtype)
  # mean and var [S, D] of the 4 observations, count [S]
  assert [(a.shape, a.dtype) for a in abstract.normalizer] == [
      ((3, 4), jnp.float32), ((3, 4), jnp.float32), ((3,), jnp.float32)]


def test_restore_reads_the_policy_and_normalizer_of_the_chosen_step(tmp_path):
  networks = SPEC.make_networks()
  abstract = abstract_policy_params(networks, 2)
  value_shapes = jax.eval_shape(jax.vmap(lambda key: nets.init_params(networks, key).value),
                                jax.random.split(jax.random.PRNGKey(0), 2))
  rng = np.random.default_rng(0)
  checkpointer = Checkpointer(tmp_path)
  saved = {}
  for step in (1, 2):
    policy, value, normalizer = (_random_like(x, rng) for x in (
        abstract.policy, value_shapes, abstract.normalizer))
    # What a TrainState is stored as: its NamedTuples as dicts, leaves the reader skips.
    checkpointer.save(step, {"params": {"policy": policy, "value": value},
                             "normalizer": normalizer._asdict(),
                             "key": jnp.zeros((2, 2), jnp.uint32)}, {"counters": {}})
    saved[step] = (normalizer, policy)
  checkpointer.close()
  for asked, expected in ((None, 2), (1, 1)):  # the newest, or the step asked for
    step, params = restore_policy_params(tmp_path, networks, 2, asked)
    assert step == expected
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(saved[expected]), strict=True):
      np.testing.assert_array_equal(x, y)


def test_load_policy_needs_no_code(tmp_path):
  result = spo_jax.train(TINY.replace(max_iterations=1), run_dir=tmp_path / "run")
  policy = spo_jax.load_policy(tmp_path / "run")
  obs = np.linspace(-1, 1, 12).reshape(3, 4).astype(np.float32)
  expected = result.make_policy(result.params)(obs)
  np.testing.assert_allclose(policy(obs), expected, rtol=1e-6)
  assert np.all(np.abs(policy(obs)) <= 1.0)
