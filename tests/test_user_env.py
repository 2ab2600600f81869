"""A user's own environment, end to end through the public API: trained under a name no
registry knows, recorded in the run directory by its class path, reloaded with
`load_policy(run_dir, env=...)` and `spo-eval --env-class`, refused in one line without it
or with an env of other sizes (spo_jax/saved_policy.py, docs/design.md "Your own
environment")."""

import dataclasses
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

import spo_jax
from spo_jax import envs, eval_cli, saved_policy
from spo_jax.config import ConfigError


class Line(Env):
  """A user's env written from scratch on the Brax interface: a point on a line steps by
  0.1 * action towards 0. obs = [x, t] (2), action [1], reward -|x|, no termination."""

  episode_limit = 16

  @property
  def observation_size(self):
    return 2

  @property
  def action_size(self):
    return 1

  @property
  def backend(self):
    return "jax"

  def reset(self, rng):
    x = jax.random.uniform(rng, (), minval=-1.0, maxval=1.0)
    zero = jnp.zeros(())
    return State(pipeline_state=None, obs=jnp.stack([x, zero]), reward=zero, done=zero,
                 metrics={"x": x}, info={})

  def step(self, state, action):
    x = state.obs[0] + 0.1 * jnp.clip(action[0], -1.0, 1.0)
    return state.replace(obs=jnp.stack([x, state.obs[1] + 1.0]), reward=-jnp.abs(x),
                         metrics={"x": x})


@dataclasses.dataclass(frozen=True)
class CloserToZero:
  """A user's teacher: prefers the trajectory whose summed |x| is smaller."""

  def init(self):
    return {"cost": jnp.zeros(())}

  def update(self, summary, step):
    return {"cost": summary["cost"] + step.mask * jnp.abs(step.obs[0])}

  def compare(self, a, b, key):
    return 0.5 * (1.0 + jnp.sign(b["cost"] - a["cost"]))


CONFIG = spo_jax.preset("point_reach").replace(
    env="line_world", num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1,
    num_eval_envs=2, policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9,
    max_iterations=2, eval_every=1, queue_size=0)
OBS = np.linspace(-1, 1, 6).reshape(3, 2).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One tiny run on `Line` under the name 'line_world': (run_dir, TrainResult)."""
  run_dir = tmp_path_factory.mktemp("user_env") / "run"
  result = spo_jax.train(CONFIG, env=Line(), teacher=CloserToZero(), run_dir=run_dir)
  return run_dir, result


def _no_checkpoint_read(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("the checkpoint was opened")

  monkeypatch.setattr(saved_policy, "restore_policy_params", refuse)


def test_validate_takes_any_name_with_an_env_object_and_checks_the_rest():
  with pytest.raises(ConfigError, match="not a known environment"):
    spo_jax.validate(CONFIG)  # no object: the name must be a registry's
  spo_jax.validate(CONFIG, Line())
  with pytest.raises(ConfigError, match="num_envs"):
    spo_jax.validate(CONFIG.replace(num_envs=-4), Line())
  with pytest.raises(ConfigError, match="'Line' episode lasts at most 16"):
    spo_jax.validate(CONFIG.replace(episode_length=32), Line())  # the object's own limit
  with pytest.raises(ConfigError, match="config field 'env'"):
    spo_jax.validate(CONFIG.replace(env=""), Line())
  with pytest.raises(ConfigError, match="'step' must be a method"):
    spo_jax.validate(CONFIG, type("NoStep", (Line,), {"step": None})())


def test_a_user_env_run_records_its_class_and_reloads_with_it(trained, monkeypatch):
  """The run trains under its own name; policy.json names the class; load_policy with the
  env acts exactly like the trained params, building neither the training setup nor a
  teacher."""
  run_dir, result = trained
  assert result.metrics["iteration"] == 2
  assert json.loads((run_dir / "config.json").read_text())["env"] == "line_world"
  recorded = json.loads((run_dir / "policy.json").read_text())["user_env_class"]
  assert recorded == envs.class_path(Line()) and recorded.endswith("test_user_env:Line")

  def refuse(*args, **kwargs):
    raise AssertionError("loading a policy built training or a teacher")

  for module in ("spo_jax.setup", "spo_jax.train"):
    monkeypatch.setattr(importlib.import_module(module), "build", refuse)
  monkeypatch.setattr(importlib.import_module("spo_jax.teachers"), "make_teacher", refuse)
  policy = spo_jax.load_policy(run_dir, env=Line())
  np.testing.assert_array_equal(policy(OBS), result.make_policy(result.params)(OBS))


def test_load_policy_without_the_env_says_so_in_one_line(trained, monkeypatch):
  run_dir, _ = trained
  _no_checkpoint_read(monkeypatch)
  with pytest.raises(ConfigError, match=r"own environment \S*test_user_env:Line.*env=") as error:
    spo_jax.load_policy(run_dir)
  assert "\n" not in str(error.value)


def test_an_env_of_other_sizes_is_refused_naming_both(trained, monkeypatch):
  run_dir, _ = trained
  _no_checkpoint_read(monkeypatch)
  with pytest.raises(ConfigError, match=r"PointReach \(observation size 4, action size 2\).*"
                     r"\(observation size 2, action size 1\)") as error:
    spo_jax.load_policy(run_dir, env=spo_jax.PointReach())
  assert "\n" not in str(error.value)


def test_resume_needs_the_env_again(trained):
  run_dir, _ = trained
  with pytest.raises(ConfigError, match="cannot resume.*test_user_env:Line.*env="):
    spo_jax.train(CONFIG.replace(max_iterations=3), run_dir=run_dir, resume=True)
  with pytest.raises(ConfigError, match="cannot resume.*observation size 2.*observation size 4"):
    spo_jax.train(CONFIG.replace(max_iterations=3), env=spo_jax.PointReach(), run_dir=run_dir,
                  resume=True)


def test_spo_eval_refuses_without_env_class_and_evaluates_with_it(trained, tmp_path, capsys):
  run_dir, _ = trained
  with pytest.raises(SystemExit) as exit_info:
    eval_cli.main([str(run_dir), "--episodes", "2"])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert err.count("\n") == 1 and "test_user_env:Line" in err and "--env-class" in err
  with pytest.raises(SystemExit) as exit_info:
    eval_cli.main([str(run_dir), "--env-class", "spo_jax.envs:Balance"])
  assert exit_info.value.code == 2 and "does not fit" in capsys.readouterr().err

  recorded = saved_policy.read_spec(run_dir).user_env_class
  eval_cli.main([str(run_dir), "--episodes", "2", "--env-class", recorded,
                 "--json", str(tmp_path / "r.json")])
  result = json.loads((tmp_path / "r.json").read_text())
  assert result["env"] == "line_world" and result["length_mean"] == 8
  assert -8 <= result["return_mean"] <= 0  # -|x| per step, |x| <= 1 + 0.1 t


@pytest.mark.parametrize("path, words", [
    ("no_colon", "MODULE:CLASS"),
    ("no_such_module_xyz:Env", "cannot import module"),
    ("spo_jax.envs:Nope", "has no 'Nope'"),
    ("spo_jax.envs:ENVS", "not a brax.envs.Env|building"),
    ("spo_jax.envs:MatrixGame.reset", "building"),
])
def test_env_class_paths_that_build_no_env_are_refused_in_one_line(path, words):
  with pytest.raises(ConfigError, match=words) as error:
    envs.from_class_path(path)
  assert "\n" not in str(error.value)
