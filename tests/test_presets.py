"""Presets (spo_jax/presets.py): every shipped preset validates under its own name, family
spellings find the bare name's preset, an env without one gets the defaults, and the presets'
documented shapes hold (whole minibatches of N x H slots, segments that divide H)."""

import pytest

import spo_jax
from spo_jax import envs
from spo_jax.config import Config
from spo_jax.presets import PRESETS, default_config, preset

OPTIONAL_FAMILIES = {"gymnax": "gymnax", "playground": "mujoco_playground"}


def _skip_without_its_extra(name):
  family, sep, _ = name.partition(":")
  if sep and family in OPTIONAL_FAMILIES:
    pytest.importorskip(OPTIONAL_FAMILIES[family])  # optional extras, in `test`: CI runs them


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates_under_its_own_name(name):
  _skip_without_its_extra(name)
  config = preset(name)
  assert spo_jax.validate(config) is config
  # the key is the env the preset trains (a typo in either would train another env)
  assert config.env == name and envs.canonical_env_name(name) == name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_minibatches_and_segments_divide_the_iteration(name):
  # validate checks these too; here they are read as the preset's design: every minibatch
  # holds N * H / M slots, and SPO's segments tile each episode exactly
  config = preset(name)
  assert config.num_envs * config.episode_length % config.num_minibatches == 0
  assert config.segment_length == 0 or config.episode_length % config.segment_length == 0


def test_family_spellings_read_the_bare_names_preset():
  assert preset("brax:hopper") is PRESETS["hopper"]
  assert preset("brax:halfcheetah").backend == "spring"  # hopper's and halfcheetah's differ
  assert preset("brax:hopper").backend is None


def test_an_env_without_a_preset_gets_the_defaults_with_its_name():
  assert preset("walker2d") is PRESETS["walker2d"]
  assert preset("swimmer") == Config(env="swimmer")
  assert preset("brax:swimmer") == Config(env="swimmer")  # the bare name, as everywhere
  assert preset("gymnax:Acrobot-v1") == Config(env="gymnax:Acrobot-v1")  # kept as written


def test_default_run_is_spo_with_the_oracle_on_inverted_pendulum():
  config = default_config()
  assert config is PRESETS["inverted_pendulum"]
  assert (config.env, config.teacher, config.reward_source) == ("inverted_pendulum", "oracle",
                                                                "spo")
  # the README's first command finishes on a laptop CPU: 400k env steps of N = 64 x H = 1000
  assert (config.num_envs, config.episode_length, config.num_timesteps) == (64, 1000, 400_000)
