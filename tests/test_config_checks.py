"""The checks behind `validate` (spo_jax/config_checks.py), one section at a time: what each
refuses, the one-line message naming the field and the fix, and that `validate` reports the
first problem in section order. Nothing here builds or compiles an env."""

import pytest

import spo_jax
from spo_jax import config_checks
from spo_jax.config import Config, ConfigError
from spo_jax.tiny_envs import PointReach


def _refused(check, config, *words):
  with pytest.raises(ConfigError) as error:
    check(config)
  message = str(error.value)
  assert "\n" not in message
  for word in words:
    assert word in message, (word, message)
  return message


@pytest.mark.parametrize("sizes, ok", [
    ((64, 64), True), ((1,), True), ((), False), ([64, 64], False), ((64, 0), False),
    ((64, True), False),  # a bool is an int to Python, not a layer size
    ((64, 2.0), False), (64, False)])
def test_sizes_are_non_empty_tuples_of_positive_ints(sizes, ok):
  assert config_checks._sizes_ok(sizes) is ok


def test_the_horizon_is_checked_against_the_envs_episode_limit():
  # point_reach's episodes last at most 200 steps (PointReach.episode_limit)
  check = lambda c: config_checks.check_env_and_budget(c, None)  # noqa: E731
  point = Config(env="point_reach", episode_length=200, num_minibatches=1)
  check(point)
  _refused(check, point.replace(episode_length=201), "'episode_length' = 201",
           "at most 200 steps", "episode_length <= 200")
  _refused(check, point.replace(eval_episode_length=300), "'eval_episode_length' = 300",
           "(0: the training horizon)")
  # a user's env object is named by its class, and its own limit applies
  user = point.replace(env="my_env", episode_length=201)
  _refused(lambda c: config_checks.check_env_and_budget(c, PointReach()), user,
           "the 'PointReach' episode lasts at most 200 steps")


def test_a_brax_backend_is_refused_for_envs_with_their_own_physics():
  _refused(spo_jax.validate, spo_jax.preset("point_reach").replace(backend="spring"),
           "'backend' = 'spring'", "applies to Brax's envs only", "leave backend unset")
  spo_jax.validate(spo_jax.preset("hopper").replace(backend="positional"))  # Brax: allowed


def test_minibatches_must_divide_the_iterations_slots():
  # N = 64 episodes x H = 1000 steps = 64,000 slots; 7 does not divide it, 16 does
  config = spo_jax.preset("inverted_pendulum")
  config_checks.check_ppo(config.replace(num_minibatches=16))
  _refused(config_checks.check_ppo, config.replace(num_minibatches=7),
           "'num_minibatches' = 7", "must divide num_envs * episode_length = 64000")


def test_compaction_factor_and_segments():
  config = Config(env="point_reach", episode_length=32)
  for factor in (0, 2, 4):
    config_checks.check_preference_rewards(config.replace(compaction_factor=factor))
  _refused(config_checks.check_preference_rewards, config.replace(compaction_factor=1),
           "must be 0 (off) or at least 2")
  config_checks.check_preference_rewards(config.replace(segment_length=8))  # 32 = 4 x 8
  _refused(config_checks.check_preference_rewards, config.replace(segment_length=10),
           "'segment_length' = 10", "must divide episode_length = 32")


def test_sharding_seeds_needs_several_seeds():
  _refused(config_checks.check_running, Config(shard="seeds"), "num_seeds >= 2",
           "shard='envs'")
  config_checks.check_running(Config(shard="seeds", num_seeds=2))


def test_validate_reports_the_first_problem_in_section_order():
  # an unknown env (the first section) wins over a bad learning rate (PPO, a later one);
  # a bad horizon (first section) wins over a bad activation (networks)
  bad = Config(env="nowhere", episode_length=32, learning_rate=-1.0)
  _refused(spo_jax.validate, bad, "'env' = 'nowhere'")
  _refused(spo_jax.validate, bad.replace(env="point_reach"), "'learning_rate' = -1.0")
  _refused(spo_jax.validate, Config(env="point_reach", episode_length=0, activation="gelu"),
           "'episode_length' = 0")
