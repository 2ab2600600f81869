"""The reward-source seam: its protocol, its registry, and a plug-in registered from outside
the package that trains (a worked example of docs/design.md, "Adding a plug-in")."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import teachers as teachers_lib
from spo_jax.cli import registered_plugins
from spo_jax.errors import ConfigError, ProtocolError
from spo_jax.reward_sources import (
    REWARD_SOURCES,
    GroundTruth,
    RewardSource,
    RewardSourceEntry,
    SelfPlayPreference,
    check_reward_source,
    make_reward_source,
)

TINY = spo_jax.preset("point_reach").replace(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9, max_iterations=2,
    eval_every=1)
SPEC = spo_jax.envs.EnvSpec("point_reach", 4, 2, ("distance",), 8)


@dataclasses.dataclass(frozen=True)
class NegatedDistance:
  """A throwaway reward source: reward = -distance to the target at each valid step, read
  from the env's metrics through the rollout (no teacher)."""

  uses_teacher = False
  segment_length = 0

  def init(self, key, summary_template):
    del key, summary_template
    return jnp.zeros((), jnp.int32)  # a counter, to see the state threaded through

  def rewards(self, state, result, key):
    del key
    traj = result.trajectory
    zero = jnp.zeros((), jnp.int32)
    return traj.reward * traj.mask, state + 1, {"num_queries": zero, "num_labels": zero}


@pytest.fixture
def registered():
  """Registers `negated_distance` for one test and removes it afterwards."""
  REWARD_SOURCES.register("negated_distance", RewardSourceEntry(
      lambda config, teacher, spec: NegatedDistance(), "test: the env reward, masked",
      uses_teacher=False))
  yield
  REWARD_SOURCES.unregister("negated_distance")


def test_registry_lists_the_built_in_sources_and_builds_them():
  assert REWARD_SOURCES.names()[:3] == ("spo", "ground_truth", "reward_model")
  spo = make_reward_source(TINY, spo_jax.Oracle(), SPEC)
  assert isinstance(spo, SelfPlayPreference) and spo.uses_teacher
  truth = make_reward_source(TINY.replace(reward_source="ground_truth"), None, SPEC)
  assert isinstance(truth, GroundTruth) and not truth.uses_teacher
  for source in (spo, truth):
    assert isinstance(source, RewardSource)


def test_validate_reads_the_registry(registered):
  spo_jax.validate(TINY.replace(reward_source="negated_distance"))
  with pytest.raises(ConfigError, match="not a known reward source.*negated_distance"):
    spo_jax.validate(TINY.replace(reward_source="nonexistent"))


def test_spo_entry_refuses_segments_with_a_queue():
  with pytest.raises(ConfigError, match="segment_length"):
    spo_jax.validate(TINY.replace(segment_length=4, queue_size=8))
  # The same combination is fine for a source that does not queue opponents.
  spo_jax.validate(TINY.replace(segment_length=4, queue_size=8, reward_source="ground_truth"))


def test_spo_entry_refuses_an_episode_weight_without_segments():
  with pytest.raises(ConfigError, match="episode_weight.*needs segment_length > 0"):
    spo_jax.validate(TINY.replace(episode_weight=1.0))
  with pytest.raises(ConfigError, match="episode_weight"):
    spo_jax.validate(TINY.replace(segment_length=4, episode_weight=-1.0))
  spo_jax.validate(TINY.replace(segment_length=4, episode_weight=1.0))


def test_a_registered_source_trains_and_needs_no_teacher(registered):
  built = []

  def no_teacher(*args):
    built.append(args)
    raise AssertionError("a source with uses_teacher=False must not build a teacher")

  teachers_lib.TEACHERS.register("refuses_to_build", teachers_lib.TeacherEntry(
      no_teacher, "test"), replace=True)
  try:
    config = TINY.replace(reward_source="negated_distance", teacher="refuses_to_build")
    setup = spo_jax.build(config)
    state = jax.jit(setup.fns.init)(jax.random.PRNGKey(0))
    iteration = jax.jit(setup.fns.iteration)
    for _ in range(2):
      state, metrics = iteration(state)
  finally:
    teachers_lib.TEACHERS.unregister("refuses_to_build")
  assert not built
  assert int(state.reward_state) == 2  # the source's state went through both iterations
  assert int(metrics["train/num_queries"][0]) == 0
  assert np.isfinite(float(metrics["ppo/policy_loss"][0]))
  assert "negated_distance" in registered_plugins()


@pytest.mark.parametrize("broken, member", [
    (type("NoRewards", (), {"uses_teacher": False, "segment_length": 0,
                            "init": lambda self, k, s: ()}), "rewards"),
    (type("BadFlag", (NegatedDistance,), {"uses_teacher": "no"}), "uses_teacher"),
    (type("BadSegments", (NegatedDistance,), {"segment_length": -1}), "segment_length"),
])
def test_a_source_that_breaks_the_protocol_is_refused_in_one_line(broken, member):
  with pytest.raises(ProtocolError, match=f"'{member}'") as error:
    check_reward_source(broken())
  assert "\n" not in str(error.value)
  # Through the registry, before anything is compiled: build() raises, naming the member.
  REWARD_SOURCES.register("broken", RewardSourceEntry(lambda c, t, s: broken(), "test",
                                                      uses_teacher=False))
  try:
    with pytest.raises(ProtocolError, match=f"'{member}'"):
      spo_jax.build(TINY.replace(reward_source="broken"))
  finally:
    REWARD_SOURCES.unregister("broken")


def test_registry_refuses_a_taken_or_malformed_name():
  entry = RewardSourceEntry(lambda c, t, s: GroundTruth(), "test", uses_teacher=False)
  with pytest.raises(ConfigError, match="already registered"):
    REWARD_SOURCES.register("spo", entry)
  with pytest.raises(ConfigError, match="lower-case identifier"):
    REWARD_SOURCES.register("Not A Name", entry)
