"""spo_jax/env_adapter.py: what the trainer needs of an environment (`check_env`, refused in
one line before anything compiles), the optional class attributes (`env_hook`) and the
observation size read without running a reset."""

import jax
import pytest

from spo_jax.config import ConfigError
from spo_jax.env_adapter import check_env, env_hook, observation_size
from spo_jax.envs import make_env
from spo_jax.errors import ProtocolError
from spo_jax.tiny_envs import MatrixGame, PointReach


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

  check_env(LazyEnv())


def test_check_env_names_the_missing_method():
  class NoStep:
    def reset(self, key):
      return None

    observation_size, action_size = 2, 1

  with pytest.raises(ConfigError, match="has no 'step'"):
    check_env(NoStep())


def test_package_envs_report_their_constants():
  # PointReach: position and target (2 + 2); Balance: cart position and velocity, pole angle
  # and angular velocity (4).
  assert observation_size(make_env("point_reach")) == 4
  assert observation_size(make_env("balance")) == 4


def test_brax_observation_size_comes_from_an_abstract_reset():
  """inverted_pendulum observes qpos (cart, pole) and qvel (cart, pole): 4 numbers. The size
  is read from a traced reset: the key `reset` receives is abstract, never a concrete array
  (Brax's own property runs reset eagerly, ~9 s on a 2-core CPU)."""
  env = make_env("inverted_pendulum")
  seen = []
  real_reset = env.reset

  def spy(key):
    seen.append(isinstance(key, jax.core.Tracer))
    return real_reset(key)

  env.reset = spy
  assert observation_size(env) == 4
  assert seen == [True]
  assert observation_size(env) == 4  # remembered: no second trace
  assert seen == [True]


@pytest.mark.parametrize("attributes, member", [
    ({"step": None}, "'step'"),
    ({"_action_size": 0}, "'action_size'"),
    ({"discrete_actions": "yes"}, "'discrete_actions'"),
    ({"episode_limit": 2.5}, "'episode_limit'"),
])
def test_an_env_that_breaks_the_protocol_is_refused_in_one_line(attributes, member):
  broken = type("Broken", (PointReach,), attributes)()
  with pytest.raises(ProtocolError, match=member) as error:
    check_env(broken)
  assert "\n" not in str(error.value)


def test_env_hook_defaults():
  assert env_hook(PointReach(), "discrete_actions") is False
  assert env_hook(MatrixGame(), "discrete_actions") is True
  assert env_hook(object(), "episode_limit") is None
