"""spo_jax/envs.py: the env registry (a registered env is known to validation, `make_env`
and the episode limit). The interface check is in test_env_adapter.py."""

import pytest

from spo_jax import envs
from spo_jax.config import ConfigError


class _ShortReach(envs.PointReach):
  """A throwaway env: point_reach with a limit of 16 steps."""

  episode_limit = 16


def test_a_registered_env_is_known_to_validate_make_env_and_its_limit():
  import spo_jax

  envs.register_package_env("short_reach", _ShortReach, "test: point_reach, 16 steps")
  try:
    assert "short_reach" in envs.known_env_names()
    assert isinstance(envs.make_env("short_reach"), _ShortReach)
    config = spo_jax.preset("point_reach").replace(env="short_reach", episode_length=8)
    spo_jax.validate(config)
    with pytest.raises(ConfigError, match="at most 16"):
      spo_jax.validate(config.replace(episode_length=32))
  finally:
    envs.ENVS.unregister("short_reach")
  with pytest.raises(ConfigError, match="not a known environment"):
    envs.check_env_name("short_reach")
