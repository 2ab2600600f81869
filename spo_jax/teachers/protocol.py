"""The teacher (preference function) protocol, and its contract check.

A teacher answers "how likely is trajectory a to be preferred to trajectory b?" in two
parts, so that the pairwise part is cheap and past trajectories can be kept as opponents
without storing them:

  init() -> summary                     # pytree for ONE trajectory (e.g. {"return": 0.})
  update(summary, step) -> summary      # fold ONE time step in; called inside the rollout scan
  compare(a, b, key) -> p               # P(a preferred to b) in [0, 1] for ONE pair
  abstain(a, b) -> bool                 # optional: True where the teacher gives no label

The package vmaps `update` over the N environments and `compare` over all pairs, and only
folds in steps taken before termination (masked steps never reach `update`). Everything is
plain `jax.numpy`; a teacher is a frozen dataclass, so its parameters are static under jit.

Contract (checked by `validate_teacher`): p is finite and in [0, 1]; compare(a, a) = 1/2;
compare(a, b) + compare(b, a) = 1 for every pair on which the teacher does not abstain.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Summary = Any  # a pytree


class TeacherStep(NamedTuple):
  """What a teacher sees of one time step of one trajectory."""

  obs: jax.Array  # [obs_size], observation the action was taken in
  next_obs: jax.Array  # [obs_size]
  action: jax.Array  # [action_size], in [-1, 1]
  reward: jax.Array  # [], the environment's reward for this step
  metrics: dict[str, jax.Array]  # the environment's State.metrics after the step, each []
  mask: jax.Array  # [], 1.0 while the episode runs (always 1 inside `update`)
  t: jax.Array  # [], int32 step index from 0


class EnvSpec(NamedTuple):
  """What a teacher factory may need to know about the environment it will judge."""

  name: str  # registry name, or the class name of a user's Env
  observation_size: int
  action_size: int
  metric_names: tuple[str, ...]  # keys of the env's State.metrics
  episode_length: int  # the horizon H of the run
  discrete_actions: bool = False  # actions are one-hot vectors [action_size] (matrix_game)


# Metric names of registry envs, by (name, class, sizes): tracing a Brax env's reset takes
# 10-20 s on a 2-core CPU, and training, the checks and every reload would pay it again.
_METRIC_NAMES: dict[tuple, tuple[str, ...]] = {}


def env_spec(env: Any, horizon: int, name: str = "") -> EnvSpec:
  """The `EnvSpec` of a Brax `Env`: sizes, and metric names from an abstract reset (traced,
  not compiled or run; remembered per registry `name`, a user's env without one is traced
  each time)."""
  from spo_jax.envs import observation_size

  obs_size = observation_size(env)
  key = (name, type(env).__name__, obs_size, env.action_size)
  metric_names = _METRIC_NAMES.get(key) if name else None
  if metric_names is None:
    metric_names = tuple(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).metrics)
    if name:
      _METRIC_NAMES[key] = metric_names
  return EnvSpec(name or type(env).__name__, obs_size, env.action_size,
                 metric_names, horizon, bool(getattr(env, "discrete_actions", False)))


class TeacherContractError(ValueError):
  """A teacher breaks the protocol; the message names the rule and the offending pair."""


@dataclasses.dataclass(frozen=True)
class Teacher:
  """Base class with the default `abstain` (never). Subclass it, or write any object with
  `init`, `update` and `compare` methods (and optionally `abstain`)."""

  def init(self) -> Summary:
    raise NotImplementedError

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    raise NotImplementedError

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array:
    raise NotImplementedError

  def abstain(self, a: Summary, b: Summary) -> jax.Array:
    del a, b
    return jnp.zeros((), bool)


def invalid_answer(p: jax.Array) -> jax.Array:
  """True where a teacher's answer is not a probability: nan, inf, or outside [0, 1]."""
  return ~jnp.isfinite(p) | (p < 0.0) | (p > 1.0)


def teacher_abstain(teacher: Any, a: Summary, b: Summary) -> jax.Array:
  """`teacher.abstain(a, b)` where defined, else False (duck-typed teachers need not have it)."""
  abstain = getattr(teacher, "abstain", None)
  if abstain is None:
    return jnp.zeros((), bool)
  return jnp.asarray(abstain(a, b), bool)


# -------------------------------------------------------------------------------------
# Contract check
# -------------------------------------------------------------------------------------

def random_steps(key: jax.Array, num: int, horizon: int, obs_size: int, action_size: int,
                 metric_names: tuple[str, ...] = ()) -> TeacherStep:
  """Random time steps shaped [horizon, num, ...] for exercising a teacher."""
  keys = jax.random.split(key, 5)
  metrics = {name: jax.random.normal(jax.random.fold_in(keys[4], i), (horizon, num))
             for i, name in enumerate(metric_names)}
  return TeacherStep(
      obs=jax.random.normal(keys[0], (horizon, num, obs_size)),
      next_obs=jax.random.normal(keys[1], (horizon, num, obs_size)),
      action=jax.random.uniform(keys[2], (horizon, num, action_size), minval=-1, maxval=1),
      # Integer-valued rewards make exact ties (and hence the 1/2 branch) likely.
      reward=jnp.round(jax.random.normal(keys[3], (horizon, num)) * 2.0),
      metrics=metrics,
      mask=jnp.ones((horizon, num)),
      t=jnp.broadcast_to(jnp.arange(horizon, dtype=jnp.int32)[:, None], (horizon, num)),
  )


def summarize(teacher: Any, steps: TeacherStep) -> Summary:
  """Fold steps [H, N, ...] into N summaries with the teacher's `init`/`update`."""
  num = steps.reward.shape[1]
  init = jax.vmap(lambda _: teacher.init())(jnp.arange(num))

  def fold(summary, step):
    new = jax.vmap(teacher.update)(summary, step)
    keep = step.mask > 0
    return jax.tree.map(lambda n, o: jnp.where(_expand(keep, n), n, o), new, summary), None

  summary, _ = jax.lax.scan(fold, init, steps)
  return summary


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
  return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def validate_teacher(teacher: Any, summaries: Summary | None = None, *, num: int = 12,
                     horizon: int = 6, obs_size: int = 4, action_size: int = 2,
                     metric_names: tuple[str, ...] = (), key: jax.Array | None = None,
                     atol: float = 1e-5) -> None:
  """Check the teacher contract on sample data; raise `TeacherContractError` in words.

  Uses `summaries` (a pytree with leading axis M) if given, else folds `num` random
  trajectories of `horizon` steps through the teacher. Checks, for every pair (i, j):
  p finite and in [0, 1]; p(i, i) = 1/2; p(i, j) + p(j, i) = 1 where neither abstains.
  """
  for method in ("init", "update", "compare"):
    if not callable(getattr(teacher, method, None)):
      raise TeacherContractError(
          f"teacher {type(teacher).__name__} has no '{method}' method; a teacher needs "
          "init() -> summary, update(summary, step) -> summary and compare(a, b, key) -> p")
  key = jax.random.PRNGKey(0) if key is None else key
  k_steps, k_cmp = jax.random.split(key)
  if summaries is None:
    try:
      steps = random_steps(k_steps, num, horizon, obs_size, action_size, metric_names)
      summaries = summarize(teacher, steps)
    except TeacherContractError:
      raise
    except Exception as error:  # the user's code failed: say where
      raise TeacherContractError(
          f"teacher {type(teacher).__name__}: init/update failed on sample steps "
          f"(obs size {obs_size}, action size {action_size}, metrics {list(metric_names)}): "
          f"{type(error).__name__}: {error}") from error
  size = jax.tree.leaves(summaries)[0].shape[0]
  idx = jnp.arange(size)

  def pair(i, j):
    a = jax.tree.map(lambda x: x[i], summaries)
    b = jax.tree.map(lambda x: x[j], summaries)
    k = jax.random.fold_in(k_cmp, i * size + j)
    return jnp.asarray(teacher.compare(a, b, k), jnp.float32), teacher_abstain(teacher, a, b)

  try:
    pref, abstain = jax.jit(jax.vmap(jax.vmap(pair, (None, 0)), (0, None)))(idx, idx)
  except Exception as error:
    raise TeacherContractError(
        f"teacher {type(teacher).__name__}: compare failed on a pair of summaries: "
        f"{type(error).__name__}: {error}") from error
  if pref.shape != (size, size):
    raise TeacherContractError(
        f"teacher {type(teacher).__name__}: compare(a, b, key) must return one number per "
        f"pair, got shape {pref.shape[2:]}")
  name = type(teacher).__name__
  import numpy as np

  pref, abstain = np.asarray(pref), np.asarray(abstain)
  bad = ~np.isfinite(pref)
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise TeacherContractError(
        f"teacher {name} breaks the contract: compare(a, b) = {pref[i, j]} for pair "
        f"({i}, {j}) is not a finite number")
  bad = (pref < -atol) | (pref > 1 + atol)
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise TeacherContractError(
        f"teacher {name} breaks the contract: compare(a, b) = {pref[i, j]:.6g} for pair "
        f"({i}, {j}) lies outside [0, 1]; it must be a probability")
  diag = np.diagonal(pref)
  bad = np.abs(diag - 0.5) > atol
  if bad.any():
    i = int(np.argwhere(bad)[0][0])
    raise TeacherContractError(
        f"teacher {name} breaks the contract: compare(a, a) = {diag[i]:.6g} for trajectory "
        f"{i}; a trajectory against itself must give 1/2")
  labelled = ~(abstain | abstain.T)
  gap = np.abs(pref + pref.T - 1.0)
  bad = (gap > atol) & labelled
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise TeacherContractError(
        f"teacher {name} breaks the contract: compare(a, b) + compare(b, a) = "
        f"{pref[i, j]:.6g} + {pref[j, i]:.6g} = {pref[i, j] + pref[j, i]:.6g} for pair "
        f"({i}, {j}); it must equal 1 (antisymmetry)")
