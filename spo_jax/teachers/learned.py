"""The 'learned' teacher: a neural preference model P_theta(a > b) fit to labelled pairs.

Three parts, each usable on its own:

1. A fixed trajectory *feature* fold (`TrajectoryFeatures`), a teacher-style summary
   (init/update) giving F = 2 + D + A + M numbers per trajectory from its T valid steps
   t = 0..T-1 (action a_t taken in s_t, reaching s_{t+1} with reward r_t and metrics m_t):

     x = [ R = sum_t r_t,                         # return            (1)
           T,                                     # valid steps       (1)
           (1/T) sum_t s_{t+1},                   # mean observation  (D)
           (1/T) sum_t |a_t|,                     # mean |action|     (A)
           sum_t m_t^k  for each metric k ]       # metric sums       (M)

   with D, A the env's observation and action sizes and M its `State.metrics` in the order
   of `EnvSpec.metric_names` (`feature_names(spec)` spells the layout out).

2. The preference network P_theta(a > b) over two feature vectors and its fit by binary
   cross-entropy: `spo_jax.teachers.preference_model`.

3. The teacher (`LearnedPreference`) and its labels file (`load_labels`, `build_learned`).

Labels file (`teacher_labels_file`, an .npz; `load_labels` checks it):

  features_a  [P, F] float   features of the first trajectory of each pair
  features_b  [P, F] float   features of the second one
  labels      [P]    float   P(a preferred to b) in [0, 1]: 1 = a, 0 = b, 1/2 = tie

Other arrays are ignored (`scripts/make_labels.py` adds `feature_names`). Real human labels
need only the same feature layout: fold the trajectories the rater saw through
`TrajectoryFeatures` (or `batch_features`) and store the rater's answers as `labels`.
`spo_jax.teachers.labels.make_labels` writes such a file from a simulated teacher.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax.errors import ConfigError
from spo_jax.teachers.preference_model import PreferenceModel, fit_preference_model
from spo_jax.teachers.protocol import (
  EnvSpec,
  Summary,
  Teacher,
  TeacherStep,
  summarize,
)

LABEL_ARRAYS = ("features_a", "features_b", "labels")
# build_learned's fitting settings; none has a config field, so they are fixed here.
_FIT_LEARNING_RATE = 1e-3
_FIT_HOLDOUT = 0.2
# Minibatches bound the cost of a step for large label files; smaller files fit full-batch.
_FIT_BATCH_SIZE = 512
_FIT_SALT = 0x1EA2  # folded into the seed: the fit's key differs from the run's other keys


# -------------------------------------------------------------------------------------
# 1. Trajectory features
# -------------------------------------------------------------------------------------

def feature_size(spec: EnvSpec) -> int:
  """F = 2 + D + A + M: return, length, mean obs (D), mean |action| (A), metric sums (M)."""
  return 2 + spec.observation_size + spec.action_size + len(spec.metric_names)


def feature_names(spec: EnvSpec) -> list[str]:
  """Names of the F features, in order, e.g. ['return', 'length', 'obs_mean[0]', ...]."""
  return (["return", "length"]
          + [f"obs_mean[{i}]" for i in range(spec.observation_size)]
          + [f"abs_action_mean[{i}]" for i in range(spec.action_size)]
          + [f"metric_sum[{name}]" for name in spec.metric_names])


@dataclasses.dataclass(frozen=True)
class TrajectoryFeatures:
  """The feature fold: init/update like a teacher's summary, `vector` gives x [F].

  The summary keeps running sums (means are taken in `vector`, so a trajectory stopped at
  any step has well-defined features):

    return  []   sum_t r_t            obs_sum     [D]  sum_t s_{t+1}
    length  []   T (valid steps)      action_sum  [A]  sum_t |a_t|
                                      metric_sum  [M]  sum_t m_t^k

  The observation folded is the one *after* the action (`next_obs`), the state whose reward
  the step reports; the first, reset observation is the same for every policy.
  """

  observation_size: int
  action_size: int
  metric_names: tuple[str, ...] = ()

  @classmethod
  def from_spec(cls, spec: EnvSpec) -> TrajectoryFeatures:
    return cls(spec.observation_size, spec.action_size, tuple(spec.metric_names))

  @property
  def size(self) -> int:
    return 2 + self.observation_size + self.action_size + len(self.metric_names)

  def init(self) -> Summary:
    return {"return": jnp.zeros(()), "length": jnp.zeros(()),
            "obs_sum": jnp.zeros((self.observation_size,)),
            "action_sum": jnp.zeros((self.action_size,)),
            "metric_sum": jnp.zeros((len(self.metric_names),))}

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    if self.metric_names:
      metrics = jnp.stack([jnp.reshape(jnp.asarray(step.metrics[name], jnp.float32), ())
                           for name in self.metric_names])
    else:
      metrics = jnp.zeros((0,))
    return {"return": summary["return"] + step.reward,
            "length": summary["length"] + 1.0,
            "obs_sum": summary["obs_sum"] + step.next_obs,
            "action_sum": summary["action_sum"] + jnp.abs(step.action),
            "metric_sum": summary["metric_sum"] + metrics}

  def vector(self, summary: Summary) -> jax.Array:
    """Summary of ONE trajectory -> x [F] (layout in the class docstring)."""
    # max(T, 1): a trajectory with no valid step gets mean features 0, not 0/0.
    steps = jnp.maximum(summary["length"], 1.0)
    return jnp.concatenate([
        jnp.stack([summary["return"], summary["length"]]),
        summary["obs_sum"] / steps,
        summary["action_sum"] / steps,
        summary["metric_sum"],
    ]).astype(jnp.float32)


def batch_features(fold: TrajectoryFeatures, steps: TeacherStep) -> jax.Array:
  """Features of N trajectories from their steps [H, N, ...] (masked steps skipped) -> [N, F]."""
  return jax.vmap(fold.vector)(summarize(fold, steps))


# -------------------------------------------------------------------------------------
# 2. The teacher
# -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class LearnedPreference(Teacher):
  """Teacher P(a > b) = P_theta(a > b) of a fitted `PreferenceModel`; summary = the feature
  fold. The weights are constants of whatever program compares with it.

  fit_metrics: what `fit_preference_model` reported (held-out accuracy, losses), for logs.
  """

  model: PreferenceModel
  features: TrajectoryFeatures
  fit_metrics: dict[str, float] = dataclasses.field(default_factory=dict)

  # Identity, not field, equality: comparing weight arrays with == is elementwise, and the
  # inherited Teacher.__eq__ would call every LearnedPreference equal to every other.
  __hash__ = object.__hash__

  def __eq__(self, other: object) -> bool:
    return self is other

  def init(self) -> Summary:
    return self.features.init()

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    return self.features.update(summary, step)

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    del key
    return self.model.prob(self.features.vector(a), self.features.vector(b))


# -------------------------------------------------------------------------------------
# 5. The labels file
# -------------------------------------------------------------------------------------

_FIELD = "teacher_labels_file"


def _where(path: str) -> str:
  return f"labels file '{path}' (config field '{_FIELD}')"


def load_labels(path: str | os.PathLike, feature_size: int, *,
                names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Read and check a labels file; returns features_a [P, F], features_b [P, F], labels [P]
  as float32, or raises `ConfigError` naming the array, its shape or the first bad row.

  feature_size: F expected for this environment; `names` (the feature names) make the
  message on a mismatch spell out the expected layout.
  """
  path = os.fspath(path)
  _check_labels_path(path)
  arrays = _read_label_arrays(path)
  _check_label_shapes(path, arrays, feature_size, names)
  out = _checked_label_values(path, arrays)
  return out["features_a"], out["features_b"], out["labels"]


def _check_labels_path(path: str) -> None:
  """The path names a file that starts like a .npz (zip) or .npy archive."""
  if not path:
    raise ConfigError(f"config field '{_FIELD}' is empty: the 'learned' teacher needs a .npz "
                      "file with features_a [P, F], features_b [P, F] and labels [P] "
                      "(scripts/make_labels.py writes one)")
  if not os.path.isfile(path):
    what = "is a directory" if os.path.isdir(path) else "does not exist"
    raise ConfigError(f"config field '{_FIELD}' = {path!r} is invalid: the file {what}; give "
                      "the path of a .npz labels file (scripts/make_labels.py writes one)")
  with open(path, "rb") as file:
    magic = file.read(4)
  if magic not in (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUM"):
    # np.load would take anything else for a pickle and say so, which misleads.
    raise ConfigError(f"{_where(path)} is not a valid .npz file: it is neither a zip archive "
                      f"nor a .npy array; write the arrays {', '.join(LABEL_ARRAYS)} with "
                      "numpy.savez, or use scripts/make_labels.py")


def _read_label_arrays(path: str) -> dict[str, np.ndarray]:
  """The arrays `LABEL_ARRAYS` of the .npz at `path`, as stored (no pickles)."""
  try:
    archive = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise ConfigError(f"{_where(path)} is not a valid .npz file ({type(error).__name__}: "
                      f"{error}); write it with numpy.savez") from error
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise ConfigError(f"{_where(path)} is not a valid .npz file: it holds a single .npy array; "
                      f"write the arrays {', '.join(LABEL_ARRAYS)} with numpy.savez")
  arrays = {}
  with archive:
    for field in LABEL_ARRAYS:
      if field not in archive.files:
        raise ConfigError(f"{_where(path)} has no array '{field}' (it holds "
                          f"{sorted(archive.files)}); a labels file needs "
                          f"{', '.join(LABEL_ARRAYS)}")
      try:
        arrays[field] = archive[field]
      except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{_where(path)}: array '{field}' cannot be read ({error}); it must "
                          "be a numeric array saved with numpy.savez") from error
  return arrays


def _check_label_shapes(path: str, arrays: dict[str, np.ndarray], feature_size: int,
                        names: Sequence[str] | None) -> None:
  """Real-number dtypes, features [P, F] and labels [P] with one row per pair, P > 0."""
  layout = ""
  if names is not None:
    layout = f" [{', '.join(names)}]"
  for field in LABEL_ARRAYS:
    value = arrays[field]
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
            or value.dtype == bool):
      raise ConfigError(f"{_where(path)}: array '{field}' has dtype {value.dtype}; it must hold "
                        "real numbers")
    if field == "labels":
      if value.ndim != 1:
        raise ConfigError(f"{_where(path)}: array 'labels' has shape {value.shape}; expected "
                          "(P,), one label per pair")
    elif value.ndim != 2 or value.shape[1] != feature_size:
      raise ConfigError(
          f"{_where(path)}: array '{field}' has shape {value.shape}; expected (P, "
          f"{feature_size}): F = {feature_size} features per trajectory for this "
          f"environment{layout}")
  num = arrays["features_a"].shape[0]
  for field in LABEL_ARRAYS[1:]:
    if arrays[field].shape[0] != num:
      raise ConfigError(f"{_where(path)}: array '{field}' has {arrays[field].shape[0]} rows but "
                        f"'features_a' has {num}; every array needs one row per pair")
  if num == 0:
    raise ConfigError(f"{_where(path)} holds no pairs (P = 0)")


def _checked_label_values(path: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The arrays as float32, every entry finite and every label in [0, 1]."""
  num = arrays["features_a"].shape[0]
  out = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
  for field in LABEL_ARRAYS:
    finite = np.isfinite(out[field]).reshape(num, -1).all(axis=1)
    if not finite.all():
      row = int(np.argmin(finite))
      raise ConfigError(f"{_where(path)}: array '{field}' row {row} holds a non-finite value "
                        f"({out[field][row]}); every entry must be a finite number")
  labels = out["labels"]
  outside = (labels < 0.0) | (labels > 1.0)
  if outside.any():
    row = int(np.argmax(outside))
    raise ConfigError(f"{_where(path)}: array 'labels' row {row} is {labels[row]:g}; labels "
                      "are P(a preferred to b) and must lie in [0, 1]")
  return out


# -------------------------------------------------------------------------------------
# 6. The factory
# -------------------------------------------------------------------------------------

def build_learned(cfg, spec: EnvSpec) -> LearnedPreference:
  """Load `cfg.teacher_labels_file` and fit for `cfg.teacher_fit_steps` Adam steps, seeded
  from `cfg.seed` (the same config gives the same teacher): (64, 64) tanh MLP, learning rate
  1e-3, minibatches of 512 pairs (full batch below that), 20% of the pairs held out and
  their accuracy reported in `teacher.fit_metrics`.

  `spec` gives the feature layout."""
  size = feature_size(spec)
  x_a, x_b, y = load_labels(cfg.teacher_labels_file, size, names=feature_names(spec))
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), _FIT_SALT)
  model, metrics = fit_preference_model(x_a, x_b, y, steps=cfg.teacher_fit_steps,
                                        learning_rate=_FIT_LEARNING_RATE, key=key,
                                        holdout_fraction=_FIT_HOLDOUT,
                                        batch_size=_FIT_BATCH_SIZE)
  return LearnedPreference(model, TrajectoryFeatures.from_spec(spec), metrics)
