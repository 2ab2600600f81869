"""Config: JSON round trip; unknown fields and bad values refused, naming the field (the
presets are tested in test_presets.py, the checks one by one in test_config_checks.py)."""

import json

import pytest

import spo_jax
from spo_jax.config import Config, ConfigError


def test_json_round_trip_and_unknown_fields():
  config = spo_jax.preset("hopper")
  assert Config.from_dict(json.loads(config.to_json())) == config
  with pytest.raises(ConfigError, match="unknown config field"):
    Config.from_dict({"learning_rat": 1e-3})


@pytest.mark.parametrize("field, value", [
    ("num_envs", 2.5), ("num_envs", True), ("learning_rate", "fast"), ("gae_lambda", 1.5),
    ("num_opponents", -1), ("queue_size", -2), ("self_comparison", "include"),
    ("reward_placement", "middle"), ("activation", "sigmoid"), ("update_epochs", 0),
    ("eval_every", 0), ("backend", "physx"), ("max_grad_norm", 0.0), ("seed", -1),
])
def test_each_bad_value_names_its_field(field, value):
  with pytest.raises(ConfigError, match=f"'{field}'"):
    spo_jax.validate(Config(**{field: value}))
