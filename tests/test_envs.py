"""Tests for spo_jax/envs.py: the interface check and observation sizes read without a run."""

import jax
import pytest

from spo_jax import envs
from spo_jax.config import ConfigError


def test_check_env_does_not_evaluate_properties():
  """A property is looked up, not called: Brax's `observation_size` would run a reset."""

  class LazyEnv:
    def reset(self, key):
      raise AssertionError("reset must not run")

    def step(self, state, action):
      raise AssertionError("step must not run")

    @property
    def observation_size(self):
      raise AssertionError("observation_size must not be evaluated")

    action_size = 1

  envs.check_env(LazyEnv())


def test_check_env_names_the_missing_method():
  class NoStep:
    def reset(self, key):
      return None

    observation_size, action_size = 2, 1

  with pytest.raises(ConfigError, match="has no 'step'"):
    envs.check_env(NoStep())


def test_package_envs_report_their_constants():
  # PointReach: position and target (2 + 2); Balance: cart position and velocity, pole angle
  # and angular velocity (4).
  assert envs.observation_size(envs.make_env("point_reach")) == 4
  assert envs.observation_size(envs.make_env("balance")) == 4


def test_brax_observation_size_comes_from_an_abstract_reset():
  """inverted_pendulum observes qpos (cart, pole) and qvel (cart, pole): 4 numbers. The size
  is read from a traced reset: the key `reset` receives is abstract, never a concrete array
  (Brax's own property runs reset eagerly, ~9 s on a 2-core CPU)."""
  env = envs.make_env("inverted_pendulum")
  seen = []
  real_reset = env.reset

  def spy(key):
    seen.append(isinstance(key, jax.core.Tracer))
    return real_reset(key)

  env.reset = spy
  assert envs.observation_size(env) == 4
  assert seen == [True]
  assert envs.observation_size(env) == 4  # remembered: no second trace
  assert seen == [True]


# -------------------------------------------------------------------------------------
# The env registry and EnvAdapter (docs/design.md, "Adding a plug-in")
# -------------------------------------------------------------------------------------

from spo_jax.errors import ProtocolError  # noqa: E402


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


@pytest.mark.parametrize("attributes, member", [
    ({"step": None}, "'step'"),
    ({"_action_size": 0}, "'action_size'"),
    ({"discrete_actions": "yes"}, "'discrete_actions'"),
    ({"episode_limit": 2.5}, "'episode_limit'"),
])
def test_an_env_that_breaks_the_protocol_is_refused_in_one_line(attributes, member):
  broken = type("Broken", (envs.PointReach,), attributes)()
  with pytest.raises(ProtocolError, match=member) as error:
    envs.check_env(broken)
  assert "\n" not in str(error.value)


def test_env_hook_defaults():
  assert envs.env_hook(envs.PointReach(), "discrete_actions") is False
  assert envs.env_hook(envs.MatrixGame(), "discrete_actions") is True
  assert envs.env_hook(object(), "episode_limit") is None
