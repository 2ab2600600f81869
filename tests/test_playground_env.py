"""MuJoCo Playground environments (`--env playground:CartpoleBalance`,
spo_jax/playground_env.py): the adapter against Playground's own reset and step, the rollout's
masks and metric names, a rendered video, names refused in one line, and the dict-observation
key. CartpoleBalance's MJX step compiles in ~10 s on a 2-core CPU, so the compiled checks are
few and each compiles once; the refusals and the dict-observation checks compile nothing MJX.

Playground is in the `test` extra; without it (a core install) the module is skipped.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax  # first: it chooses MuJoCo's headless OpenGL (EGL) before MuJoCo is imported

pytest.importorskip("mujoco_playground")

from spo_jax import envs, playground_env, video  # noqa: E402
from spo_jax import networks as nets  # noqa: E402
from spo_jax.config import ConfigError  # noqa: E402
from spo_jax.evaluate import PolicyParams, rollout_policy  # noqa: E402
from spo_jax.playground_env import PlaygroundEnv  # noqa: E402
from spo_jax.rollout import rollout  # noqa: E402
from spo_jax.teachers import Oracle  # noqa: E402

NAME = "playground:CartpoleBalance"
CARTPOLE_METRICS = ("reward/angle_in_bounds", "reward/cart_in_bounds", "reward/centered",
                    "reward/small_control", "reward/small_velocity", "reward/upright")


@pytest.fixture(scope="module")
def cartpole():
  return envs.make_env(NAME)


def test_contract_sizes_limit_and_metric_names(cartpole):
  envs.check_env(cartpole)
  # obs = [cart position, cos θ, sin θ, cart velocity, pole angular velocity]; one force
  assert (envs.observation_size(cartpole), cartpole.action_size) == (5, 1)
  assert not getattr(cartpole, "discrete_actions", False)
  assert envs.max_episode_length(NAME) == cartpole.episode_limit == 1000
  spec = envs.env_spec(cartpole, 1000, NAME)
  assert sorted(spec.metric_names) == list(CARTPOLE_METRICS)


def test_reset_and_step_equal_playgrounds_own(cartpole):
  """Reference: Playground's `reset` and `step` (the same `impl='jax'` env), run side by side
  with the adapter on the same key and actions in one compiled scan: observations, rewards,
  `done` and every metric agree exactly, and the whole Playground state is carried."""
  from mujoco_playground import registry

  own = registry.load("CartpoleBalance", config_overrides={"impl": playground_env.MJX_IMPL})
  actions = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (6, 1)), jnp.float32)

  @jax.jit
  def both(key):
    def step(carry, action):
      ours, theirs = carry
      ours, theirs = cartpole.step(ours, action), own.step(theirs, action)
      return (ours, theirs), (ours.obs, theirs.obs, ours.reward, theirs.reward, ours.done,
                              theirs.done, ours.metrics, theirs.metrics)
    first = (cartpole.reset(key), own.reset(key))
    return first, jax.lax.scan(step, first, actions)[1]

  with jax.numpy_rank_promotion("allow"):  # Playground's own code broadcasts implicitly
    (ours0, theirs0), steps = both(jax.random.PRNGKey(4))
  np.testing.assert_array_equal(ours0.obs, theirs0.obs)
  obs, own_obs, reward, own_reward, done, own_done, metrics, own_metrics = steps
  np.testing.assert_array_equal(obs, own_obs)
  np.testing.assert_array_equal(reward, own_reward)
  np.testing.assert_array_equal(done, own_done)
  assert set(metrics) == set(own_metrics) == set(CARTPOLE_METRICS)
  for name in CARTPOLE_METRICS:
    np.testing.assert_array_equal(metrics[name], own_metrics[name])
  assert np.all((np.asarray(reward) > 0) & (np.asarray(reward) <= 1))  # DM Control: [0, 1]
  assert np.ptp(np.asarray(obs)[:, 0]) > 0  # the cart moves under random forces
  assert isinstance(ours0.pipeline_state, type(theirs0))  # Playground's State, whole


def test_rollout_masks_and_oracle_sum_the_rewards(cartpole):
  """CartpoleBalance never ends early (`done` only on NaN): every step of H is valid, and the
  oracle's summary is the sum of Playground's rewards."""
  networks = nets.make_networks(5, 1, (8,), (8,))
  params = PolicyParams(nets.normalizer_init(5),
                        nets.init_params(networks, jax.random.PRNGKey(0)).policy)
  policy_fn = rollout_policy(networks, params, normalize_observations=False,
                             deterministic=False)
  horizon, n = 12, 4
  result = jax.jit(lambda key: rollout(cartpole, policy_fn, key, n, horizon, Oracle()))(
      jax.random.PRNGKey(5))
  traj = result.trajectory
  np.testing.assert_array_equal(traj.mask, np.ones((horizon, n)))
  np.testing.assert_array_equal(traj.done, np.zeros((horizon, n)))
  np.testing.assert_allclose(result.summaries["return"], np.sum(traj.reward, axis=0),
                             rtol=1e-6)
  assert np.all(np.asarray(traj.reward) > 0)


def test_a_video_is_rendered_by_mujoco_and_the_cart_moves(cartpole, tmp_path):
  iio = pytest.importorskip("imageio.v3")
  push = lambda obs, key: jnp.ones((1,), jnp.float32)  # noqa: E731
  episode = video.play_episode(cartpole, push, jax.random.PRNGKey(0), 8)
  assert isinstance(episode.pipeline_states, video.Pose)
  qpos = np.asarray(episode.pipeline_states.q)  # [cart position, pole angle]
  assert qpos.shape == (9, 2) and qpos[-1, 0] > qpos[0, 0]  # pushed right
  frames, fps = video.render(cartpole, episode, NAME)
  assert (len(frames), fps) == (9, pytest.approx(1 / cartpole.dt))
  assert frames[0].shape == (video.HEIGHT, video.WIDTH, 3) and frames[0].max() > 0
  assert not np.array_equal(frames[0], frames[-1])
  # 100 frames per second (dt = 0.01 s) is faster than browsers play a GIF (50): every
  # second frame is kept, 0, 2, 4, 6, 8, at 50 per second
  path = tmp_path / "cartpole.gif"
  assert video.write_video(frames, path, fps) == (5, pytest.approx(50.0))
  written = iio.imread(path, index=None)
  assert written.shape == (5, video.HEIGHT, video.WIDTH, 3)
  assert iio.immeta(path, index=0)["duration"] == pytest.approx(20.0)  # milliseconds


def test_unknown_names_list_the_suite_in_one_line():
  with pytest.raises(ConfigError, match="available .DM Control suite.: playground:Acrobot") as e:
    envs.env_entry("playground:CartpoleBalanse")
  assert "\n" not in str(e.value) and "playground:CartpoleBalance" in str(e.value)
  with pytest.raises(ConfigError, match="empty observation key"):
    spo_jax.validate(spo_jax.Config(env="playground:CartpoleBalance:"))


def test_menagerie_suites_are_refused_without_the_assets(monkeypatch, tmp_path):
  # Playground clones MuJoCo Menagerie from GitHub on first use; spo_jax refuses instead
  monkeypatch.setattr(playground_env, "menagerie_path", lambda: tmp_path / "absent")
  with pytest.raises(ConfigError, match="needs MuJoCo Menagerie's robot models") as error:
    spo_jax.validate(spo_jax.Config(env="playground:Go1JoystickFlatTerrain:state"))
  assert "\n" not in str(error.value) and str(tmp_path / "absent") in str(error.value)
  assert playground_env.menagerie_commit() in str(error.value)  # the commit Playground pins


class _DictObsEnv:
  """Stands in for a Playground env whose observation is a dict (the locomotion suite's
  'state' / 'privileged_state'): Playground's `State`, a 1-D point, no MJX."""

  action_size = 1

  def reset(self, rng):
    from mujoco_playground._src.mjx_env import State
    del rng
    return State(data=jnp.zeros(1), obs={"state": jnp.arange(3.0), "privileged_state":
                                         jnp.ones((2, 2))}, reward=jnp.zeros(()),
                 done=jnp.zeros(()), metrics={"speed": jnp.zeros(()), "vector": jnp.zeros(3)},
                 info={})

  def step(self, state, action):
    obs = {"state": state.obs["state"] + action[0], "privileged_state": state.obs[
        "privileged_state"]}
    return state.replace(obs=obs, reward=jnp.sum(obs["state"]), metrics={
        "speed": action[0], "vector": jnp.ones(3)})


def test_a_dict_observation_needs_a_chosen_key(monkeypatch):
  from mujoco_playground._src import registry

  monkeypatch.setattr(registry.dm_control_suite, "ALL_ENVS", ("DictObs",))
  monkeypatch.setattr(registry, "load", lambda name, config_overrides=None: _DictObsEnv())
  monkeypatch.setattr(registry, "get_default_config", lambda name: {"action_repeat": 1})
  monkeypatch.setattr(playground_env, "playground_episode_limit", lambda name: 50)
  with pytest.raises(ConfigError, match="the observation is a dict and needs a chosen key; "
                     "write playground:DictObs:KEY with KEY one of privileged_state, state"):
    PlaygroundEnv("DictObs")
  with pytest.raises(ConfigError, match="has no key 'pixels'"):
    PlaygroundEnv("DictObs:pixels")
  env = PlaygroundEnv("DictObs:privileged_state")
  assert env.observation_size == 4  # a [2, 2] entry, flattened
  env = PlaygroundEnv("DictObs:state")
  state = env.step(env.reset(jax.random.PRNGKey(0)), jnp.ones(1))
  np.testing.assert_array_equal(state.obs, [1.0, 2.0, 3.0])
  assert float(state.reward) == 6.0 and set(state.metrics) == {"speed"}  # scalar metrics only
  # an env whose default config repeats each action (Playground's training wrapper would) is
  # refused: the adapter steps once per action
  monkeypatch.setattr(registry, "get_default_config", lambda name: {"action_repeat": 2})
  with pytest.raises(ConfigError, match="action_repeat = 2 in its default config"):
    PlaygroundEnv("DictObs:state")


def test_missing_playground_names_the_install_command(monkeypatch):
  playground_env._import_playground.cache_clear()
  monkeypatch.setitem(sys.modules, "mujoco_playground._src.registry", None)
  try:
    with pytest.raises(ConfigError, match=r"pip install 'spo_jax\[playground\]'") as error:
      spo_jax.validate(spo_jax.Config(env="playground:CheetahRun"))
    assert "\n" not in str(error.value)
  finally:
    playground_env._import_playground.cache_clear()
