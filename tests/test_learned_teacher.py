"""Tests for spo_jax/teachers/learned.py: the feature fold, the antisymmetric preference
network, fitting it to a known teacher, the labels file's checks, the factory, training with
it, and scripts/make_labels.py.

point_reach (obs = [position, target], actions 2-D, metric `distance`) has F = 2 + 4 + 2 + 1
= 9 features: [return, length, obs_mean[0..3], abs_action_mean[0..1], metric_sum[distance]].
"""

import runpy
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax.config import ConfigError
from spo_jax.teachers import EnvSpec, Mistake, TeacherStep, make_teacher, validate_teacher
from spo_jax.teachers.labels import make_labels
from spo_jax.teachers.learned import (
  LearnedPreference,
  TrajectoryFeatures,
  batch_features,
  feature_names,
  feature_size,
  load_labels,
)
from spo_jax.teachers.preference_model import fit_preference_model, init_preference_model
from spo_jax.teachers.returns import Oracle

KEY = jax.random.PRNGKey(0)
SPEC = EnvSpec("point_reach", 4, 2, ("distance",), 32)
F = 9
ROOT = Path(__file__).resolve().parents[1]


def synthetic_labels(num: int, seed: int = 0):
  """Random point_reach-shaped features; the label prefers the higher return (column 0)."""
  rng = np.random.default_rng(seed)
  x_a = rng.normal(size=(num, F)).astype(np.float32)
  x_b = rng.normal(size=(num, F)).astype(np.float32)
  return x_a, x_b, (x_a[:, 0] > x_b[:, 0]).astype(np.float32)


def write_labels(path, **arrays):
  x_a, x_b, y = synthetic_labels(20)
  data = {"features_a": x_a, "features_b": x_b, "labels": y}
  data.update(arrays)
  np.savez(path, **{k: v for k, v in data.items() if v is not None})
  return str(path)


# --- the feature fold -------------------------------------------------------------------

def test_feature_layout_and_hand_values():
  assert feature_size(SPEC) == F
  assert feature_names(SPEC) == [
      "return", "length", "obs_mean[0]", "obs_mean[1]", "obs_mean[2]", "obs_mean[3]",
      "abs_action_mean[0]", "abs_action_mean[1]", "metric_sum[distance]"]
  # Two trajectories, H = 3, D = 1, A = 1, one metric 'm'. Trajectory 1 terminates after
  # step 1 (mask 1, 1, 0), so its third step is not folded in.
  fold = TrajectoryFeatures(1, 1, ("m",))
  next_obs = jnp.array([[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [100.0]]])  # [H, N, D]
  action = jnp.array([[[-0.5], [0.5]], [[0.5], [-1.0]], [[0.0], [1.0]]])
  steps = TeacherStep(
      obs=jnp.zeros((3, 2, 1)), next_obs=next_obs, action=action,
      reward=jnp.array([[1.0, -1.0], [2.0, -2.0], [3.0, -50.0]]),
      metrics={"m": jnp.array([[0.1, 1.0], [0.2, 2.0], [0.3, 40.0]])},
      mask=jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]),
      t=jnp.broadcast_to(jnp.arange(3, dtype=jnp.int32)[:, None], (3, 2)))
  x = batch_features(fold, steps)
  # trajectory 0: R = 1 + 2 + 3 = 6, T = 3, mean obs (1 + 3 + 5) / 3 = 3,
  #   mean |a| (0.5 + 0.5 + 0) / 3 = 1/3, metric sum 0.1 + 0.2 + 0.3 = 0.6
  # trajectory 1: R = -1 - 2 = -3, T = 2, mean obs (2 + 4) / 2 = 3, mean |a| (0.5 + 1) / 2
  #   = 0.75, metric sum 1 + 2 = 3
  np.testing.assert_allclose(x, [[6.0, 3.0, 3.0, 1 / 3, 0.6], [-3.0, 2.0, 3.0, 0.75, 3.0]],
                             rtol=1e-6)


# --- the network: antisymmetric by construction -----------------------------------------

def test_antisymmetric_and_self_tie_for_random_params():
  k_model, k_mean, k_x = jax.random.split(KEY, 3)
  model = init_preference_model(k_model, F, hidden_sizes=(16, 16),
                                mean=jax.random.normal(k_mean, (F,)), std=jnp.full((F,), 2.0))
  x = 3.0 * jax.random.normal(k_x, (12, F))
  pref = jax.jit(jax.vmap(jax.vmap(model.prob, (None, 0)), (0, None)))(x, x)  # [12, 12]
  assert not np.allclose(pref, 0.5, atol=1e-3)  # an untrained net still has opinions
  np.testing.assert_allclose(pref + pref.T, 1.0, atol=1e-6)
  np.testing.assert_array_equal(np.diagonal(pref), 0.5)  # sigmoid(g - g) = sigmoid(0), exactly


# --- fitting: agrees with the teacher that labelled the pairs ---------------------------

def test_fit_agrees_with_the_oracle_on_held_out_pairs():
  """2000 pairs of random-action point_reach episodes (H = 32, seed 0) labelled by the
  oracle; 1600 fit the model (200 Adam steps, learning rate 3e-3, minibatches of 256), 400
  are held out of the fit and of the standardization. Measured held-out accuracy: 0.99."""
  env = spo_jax.make_env("point_reach")
  x_a, x_b, y = make_labels(env, Oracle(), 2000, 32, KEY)
  assert x_a.shape == x_b.shape == (2000, F) and set(np.unique(y)) <= {0.0, 0.5, 1.0}
  model, metrics = fit_preference_model(x_a, x_b, y, steps=200, learning_rate=3e-3,
                                        key=jax.random.PRNGKey(1), batch_size=256)
  assert metrics["num_train"] == 1600 and metrics["num_holdout"] == 400
  assert metrics["train_loss"] < 0.5 * metrics["initial_loss"]
  assert metrics["holdout_accuracy"] >= 0.9, metrics


def test_fit_accepts_soft_labels():
  x_a, x_b, _ = synthetic_labels(500)
  # Bradley-Terry labels with beta = 1 on feature 0: P = sigmoid(x_a[0] - x_b[0])
  soft = 1.0 / (1.0 + np.exp(-(x_a[:, 0] - x_b[:, 0])))
  model, metrics = fit_preference_model(x_a, x_b, soft, steps=200, key=KEY)
  assert metrics["train_loss"] < metrics["initial_loss"]
  assert metrics["holdout_accuracy"] >= 0.9, metrics
  # Standardization statistics are the training pairs' and travel with the weights.
  assert model.mean.shape == (F,) and model.std.shape == (F,)


# --- the labels file --------------------------------------------------------------------

BAD_FILES = {
    # case: (arrays to override (None removes), words the message must contain)
    "missing array": ({"labels": None}, ["'labels'", "features_a"]),
    "features 1-D": ({"features_a": np.zeros(20, np.float32)},
                     ["'features_a'", "(20,)", "(P, 9)"]),
    "F mismatch": ({"features_b": np.zeros((20, 8), np.float32)},
                   ["'features_b'", "(20, 8)", "(P, 9)", "obs_mean[0]"]),
    "labels 2-D": ({"labels": np.zeros((20, 1), np.float32)}, ["'labels'", "(20, 1)", "(P,)"]),
    "P mismatch": ({"features_b": np.zeros((19, F), np.float32)},
                   ["'features_b'", "19 rows", "20"]),
    "label above 1": ({"labels": np.r_[np.zeros(3), 1.5, np.zeros(16)]},
                      ["'labels'", "row 3", "1.5", "[0, 1]"]),
    "label below 0": ({"labels": np.r_[np.zeros(7), -0.1, np.zeros(12)]},
                      ["'labels'", "row 7", "[0, 1]"]),
    "nan feature": ({"features_b": np.where(np.arange(20)[:, None] == 5, np.nan,
                                            np.zeros((20, F)))},
                    ["'features_b'", "row 5", "non-finite"]),
    "inf label": ({"labels": np.r_[np.zeros(11), np.inf, np.zeros(8)]},
                  ["'labels'", "row 11", "non-finite"]),
    "strings": ({"labels": np.array(["yes"] * 20)}, ["'labels'", "numbers"]),
    "no pairs": ({"features_a": np.zeros((0, F)), "features_b": np.zeros((0, F)),
                  "labels": np.zeros(0)}, ["no pairs"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_labels_file_is_refused_naming_the_problem(tmp_path, case):
  arrays, words = BAD_FILES[case]
  path = write_labels(tmp_path / "labels.npz", **arrays)
  with pytest.raises(ConfigError) as error:
    load_labels(path, F, names=feature_names(SPEC))
  for word in words + ["teacher_labels_file"]:
    assert word in str(error.value), (word, str(error.value))


def test_missing_or_invalid_labels_file_is_refused(tmp_path):
  missing = str(tmp_path / "nowhere.npz")
  with pytest.raises(ConfigError, match="teacher_labels_file.*nowhere.npz.*does not exist"):
    load_labels(missing, F)
  with pytest.raises(ConfigError, match="is a directory"):
    load_labels(tmp_path, F)
  text = tmp_path / "labels.npz"
  text.write_text("features_a,features_b,labels\n")
  with pytest.raises(ConfigError, match="not a valid .npz"):
    load_labels(text, F)
  single = tmp_path / "single.npz"
  with open(single, "wb") as handle:
    np.save(handle, np.zeros((3, F)))
  with pytest.raises(ConfigError, match="not a valid .npz.*single .npy array"):
    load_labels(single, F)


def test_valid_labels_file_loads_as_float32(tmp_path):
  x_a, x_b, y = synthetic_labels(20)
  path = write_labels(tmp_path / "ok.npz", labels=y.astype(bool), extra=np.arange(3))
  a, b, labels = load_labels(path, F)
  assert a.dtype == b.dtype == labels.dtype == np.float32
  np.testing.assert_array_equal(a, x_a)
  np.testing.assert_array_equal(labels, y)


# --- the factory, training, the script ---------------------------------------------------

@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("labels") / "labels.npz"
  x_a, x_b, y = synthetic_labels(500)
  np.savez(path, features_a=x_a, features_b=x_b, labels=y)
  return str(path)


def test_factory_builds_a_valid_deterministic_teacher_and_mistake_composes(labels_file):
  config = spo_jax.Config(env="point_reach", teacher="learned", teacher_labels_file=labels_file,
                          teacher_fit_steps=200, episode_length=32)
  teacher = make_teacher(config, SPEC)
  assert isinstance(teacher, LearnedPreference)
  # Labels prefer the higher feature 0; 100 of the 500 pairs are held out.
  assert teacher.fit_metrics["num_holdout"] == 100
  assert teacher.fit_metrics["holdout_accuracy"] >= 0.9, teacher.fit_metrics
  validate_teacher(teacher, obs_size=4, action_size=2, metric_names=("distance",))
  # Without a spec the factory builds point_reach itself: same layout, same seed, same fit.
  again = make_teacher(config)
  for leaf, leaf_again in zip(jax.tree.leaves(teacher.model), jax.tree.leaves(again.model),
                              strict=True):
    np.testing.assert_array_equal(leaf, leaf_again)

  noisy = make_teacher(config.replace(teacher="mistake(learned)", teacher_epsilon=0.2), SPEC)
  assert isinstance(noisy, Mistake) and isinstance(noisy.inner, LearnedPreference)
  fold = teacher.features
  a = {**fold.init(), "return": jnp.array(3.0), "length": jnp.array(1.0)}
  b = fold.init()
  p, p_inner, p_noisy = jax.jit(lambda a, b: (
      teacher.compare(a, b, KEY), noisy.inner.compare(a, b, KEY), noisy.compare(a, b, KEY)))(a, b)
  # mistake: (1 - eps) P + eps (1 - P), with the same fitted network inside
  np.testing.assert_allclose(p_inner, p, rtol=1e-6)
  np.testing.assert_allclose(p_noisy, 0.8 * p + 0.2 * (1 - p), rtol=1e-6)
  with pytest.raises(ConfigError, match="return-based"):
    make_teacher(config.replace(teacher="myopic(learned)"), SPEC)


def test_factory_refuses_a_file_for_another_environment(labels_file):
  config = spo_jax.Config(env="balance", teacher="learned", teacher_labels_file=labels_file,
                          teacher_fit_steps=1, episode_length=8)
  spec = EnvSpec("balance", 4, 1, ("angle", "position"), 8)  # F = 2 + 4 + 1 + 2 = 9 ...
  make_teacher(config, spec)
  spec = EnvSpec("balance", 4, 1, ("angle",), 8)  # ... F = 8 is not the file's 9
  with pytest.raises(ConfigError, match=r"'features_a' has shape \(500, 9\); expected \(P, 8\)"):
    make_teacher(config, spec)


def test_train_one_iteration_with_the_learned_teacher(labels_file):
  config = spo_jax.preset("point_reach").replace(
      teacher="learned", teacher_labels_file=labels_file, teacher_fit_steps=20,
      num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=2,
      policy_hidden_sizes=(8,), value_hidden_sizes=(8,), max_iterations=1)
  metrics = spo_jax.train(config).metrics
  assert metrics["iteration"] == 1
  assert metrics["train/total_queries"] == 8 * 7 // 2  # all pairs of N = 8
  assert np.isfinite(metrics["eval/episode_reward"])


def test_make_labels_script_writes_a_loadable_file(tmp_path, capsys):
  out = tmp_path / "labels.npz"
  done = subprocess.run(
      [sys.executable, str(ROOT / "scripts" / "make_labels.py"), "--env", "point_reach",
       "--teacher", "mistake(oracle)", "--set", "teacher_epsilon=0.25", "--labels", "sampled",
       "--num-pairs", "40", "--horizon", "8", "--out", str(out)],
      capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert done.returncode == 0, done.stderr
  assert "40 pairs" in done.stdout
  x_a, x_b, y = load_labels(out, F)
  assert x_a.shape == x_b.shape == (40, F)
  assert set(np.unique(y)) <= {0.0, 1.0}  # sampled labels are hard
  assert list(np.load(out)["feature_names"]) == feature_names(SPEC)
  # Bad input: exit code 2 and one line naming the problem (in-process: no second start-up).
  script = runpy.run_path(str(ROOT / "scripts" / "make_labels.py"))
  with pytest.raises(SystemExit) as exit_info:
    script["main"](["--teacher", "oracel", "--out", str(tmp_path / "x.npz")])
  assert exit_info.value.code == 2
  assert "'oracel' is not a known teacher" in capsys.readouterr().err
