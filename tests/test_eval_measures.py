"""spo_jax/eval_measures.py: what `spo-eval` measures of a restored policy, on point_reach and
matrix_game with an all-zero policy, whose episodes can be worked out by hand: its action is
tanh(0) = 0 (point_reach: the point never moves, so every step pays the same -distance) or
outcome 0 (matrix_game: the first of equal logits)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import networks as nets
from spo_jax import teachers as teachers_lib
from spo_jax.config import ConfigError
from spo_jax.eval_measures import (
    duel_fields,
    evaluate_returns,
    registry_name,
    run_teacher,
    save_rollout,
)
from spo_jax.evaluate import PolicyParams, make_policy_factory, rollout_policy
from spo_jax.rollout import rollout
from spo_jax.saved_policy import LoadedPolicy, PolicySpec
from spo_jax.tiny_envs import Balance, MatrixGame, PointReach

POINT = spo_jax.preset("point_reach").replace(
    episode_length=8, policy_hidden_sizes=(8,), value_hidden_sizes=(8,))
GAME = spo_jax.preset("matrix_game").replace(policy_hidden_sizes=(8,), value_hidden_sizes=(8,))


def _zero_policy(config, env, user_env=False, teacher=None):
  """A LoadedPolicy (as `saved_policy.load` returns) whose every weight is 0."""
  spec = PolicySpec.from_config(config, env, env.observation_size, {})
  networks = spec.make_networks()
  shapes = jax.eval_shape(lambda key: nets.init_params(networks, key).policy,
                          jax.random.PRNGKey(0))
  params = PolicyParams(nets.normalizer_init(env.observation_size),
                        jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes))
  return LoadedPolicy(config, env, networks,
                      make_policy_factory(networks, config.normalize_observations), params,
                      step=1, teacher=teacher, user_env=user_env)


def test_returns_and_lengths_against_a_numpy_reference():
  loaded = _zero_policy(POINT, PointReach())
  key = jax.random.PRNGKey(3)
  measured = evaluate_returns(loaded, loaded.params, 5, key)
  # The same episodes' start states: a rollout with the same key and number of episodes.
  policy_fn = rollout_policy(loaded.networks, loaded.params, deterministic=True)
  start = np.asarray(jax.jit(lambda k: rollout(loaded.env, policy_fn, k, 5, 8))(key)
                     .trajectory.obs[0], np.float64)
  # The point stays where it starts inside [-1, 1]^2, so no episode ends early: 8 steps,
  # each paying -|position - target|.
  returns = -8 * np.linalg.norm(start[:, :2] - start[:, 2:], axis=1)
  expected = {"return_mean": returns.mean(), "return_std": returns.std(),
              "return_min": returns.min(), "return_max": returns.max(),
              "length_mean": 8.0, "length_std": 0.0}
  assert measured.keys() == expected.keys()
  for name, value in expected.items():
    assert measured[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
  assert returns.std() > 0.1  # five different episodes: the spread is really compared


def test_a_one_step_game_lasts_one_step_and_returns_nothing():
  loaded = _zero_policy(GAME, MatrixGame(3))
  assert evaluate_returns(loaded, loaded.params, 4, jax.random.PRNGKey(0)) == {
      "return_mean": 0.0, "return_std": 0.0, "return_min": 0.0, "return_max": 0.0,
      "length_mean": 1.0, "length_std": 0.0}


def test_save_rollout_writes_one_episode_as_json_or_npz(tmp_path):
  loaded = _zero_policy(POINT, PointReach())
  key = jax.random.PRNGKey(1)
  note = save_rollout(loaded, loaded.params, tmp_path / "episode.txt", key)
  assert not (tmp_path / "episode.txt").exists()  # neither .json nor .npz: JSON
  episode = json.loads((tmp_path / "episode.json").read_text())
  assert note.startswith(f"wrote {tmp_path / 'episode.json'}: 8 steps of observations")
  assert "point_reach is a pure-JAX env with no physics system" in note
  obs = np.asarray(episode["observations"])
  # reset + 8 steps of a point that never moves: 9 equal observations, 8 equal rewards.
  assert obs.shape == (9, 4) and np.all(obs == obs[0])
  np.testing.assert_array_equal(episode["actions"], np.zeros((8, 2)))
  distance = np.linalg.norm(obs[0, :2] - obs[0, 2:])
  np.testing.assert_allclose(episode["rewards"], np.full(8, -distance), rtol=1e-5)
  assert episode["env"] == "point_reach"
  assert episode["return"] == pytest.approx(-8 * distance, rel=1e-5)

  user = loaded._replace(user_env=True)
  note = save_rollout(user, user.params, tmp_path / "episode.npz", key)
  assert "your env PointReach has no `sys`" in note
  with np.load(tmp_path / "episode.npz") as saved:
    np.testing.assert_array_equal(saved["observations"], obs)  # the same key: the same episode
    assert saved["return"] == pytest.approx(episode["return"])


def test_save_rollout_stops_when_the_episode_ends(tmp_path):
  loaded = _zero_policy(GAME, MatrixGame(3))
  save_rollout(loaded, loaded.params, tmp_path / "game.json", jax.random.PRNGKey(0))
  episode = json.loads((tmp_path / "game.json").read_text())
  # One step (done = 1), not eval_horizon: the one-hot of outcome 0 and reward 0.
  assert episode["actions"] == [[1.0, 0.0, 0.0]] and episode["rewards"] == [0.0]
  assert episode["observations"] == [[1.0], [1.0]] and episode["return"] == 0.0


def test_the_duels_teacher_is_the_runs_own_or_the_one_asked_for():
  env = PointReach()
  spec = teachers_lib.env_spec(env, POINT.episode_length, "point_reach")
  own = teachers_lib.make_teacher(POINT, spec)
  assert run_teacher(_zero_policy(POINT, env, teacher=own), None) == (own, "oracle")
  # Loaded from policy.json: no teacher came with it, so the configured one is built.
  built, name = run_teacher(_zero_policy(POINT, env), None)
  assert name == "oracle" and type(built) is type(own)
  # A run on the env reward holds a stand-in teacher it never asked: not the run's own.
  ground_truth = POINT.replace(reward_source="ground_truth", teacher="bradley_terry")
  built, name = run_teacher(_zero_policy(ground_truth, env, teacher=own), None)
  assert name == "bradley_terry" and type(built) is not type(own)
  built, name = run_teacher(_zero_policy(POINT, env, teacher=own), "bradley_terry")
  assert name == "bradley_terry" and built is not own


def test_registry_name_is_empty_for_a_users_env():
  assert registry_name(_zero_policy(POINT, PointReach())) == "point_reach"
  assert registry_name(_zero_policy(POINT, PointReach(), user_env=True)) == ""


def test_a_duel_between_policies_of_other_sizes_is_refused_before_anything_runs():
  a, b = _zero_policy(POINT, PointReach()), _zero_policy(POINT, Balance())
  with pytest.raises(ConfigError, match=r"cannot compare: observation/action sizes \(4, 2\) "
                                        r"and \(4, 1\) differ"):
    duel_fields(None, a, None, b, None, 2, jax.random.PRNGKey(0))
