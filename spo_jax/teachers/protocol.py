"""The teacher (preference function) protocol, and its contract check.

A teacher answers "how likely is trajectory a to be preferred to trajectory b?" in two
parts, so that the pairwise part is cheap and past trajectories can be kept as opponents
without storing them:

  init() -> summary                     # pytree for ONE trajectory (e.g. {"return": 0.})
  update(summary, step) -> summary      # fold ONE time step in; called inside the rollout scan
  compare(a, b, key) -> p               # P(a preferred to b) in [0, 1] for ONE pair

Optional hooks, declared in `TEACHER_HOOKS` with the value a teacher without them gets, and
read only through `hook(teacher, name)`:

  abstain(a, b) -> bool                 # True where the teacher gives no label (never)
  check_env(env) -> None                # raise ConfigError if it cannot judge this env
                                        #   object (e.g. a payoff table's outcome count)
  num_outcomes: int | None              # finite-outcome teachers: the number K of outcomes,
                                        #   which sizes `matrix_game`'s action set
  table: tuple[tuple[float]] | None     # a payoff table P[i, j] over K outcomes: enables
                                        #   exploitability and Minimax-Winner metrics
  fit_metrics: Mapping[str, float] | None  # teachers fit before training: how the fit went
  return_based: bool                    # it compares returns: myopic/equal/skip may wrap it

The package vmaps `update` over the N environments and `compare` over all pairs, and only
folds in steps taken before termination (masked steps never reach `update`). Everything is
plain `jax.numpy`; a teacher is a frozen dataclass, so its parameters are static under jit.

Contract (checked by `validate_teacher`): p is finite and in [0, 1]; compare(a, a) = 1/2;
compare(a, b) + compare(b, a) = 1 for every pair on which the teacher does not abstain.
`check_teacher_protocol` refuses, in one line, an object whose members are missing or of the
wrong type; `ask(teacher, a, b, key, index)` is the one place the package puts a pair to a
teacher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax.envs import EnvSpec, env_spec  # noqa: F401  (re-exported: teachers read them)
from spo_jax.errors import TeacherContractError

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


@runtime_checkable
class TeacherProtocol(Protocol):
  """The members every teacher has (see the module docstring; optional hooks in
  `TEACHER_HOOKS`). Any object with them is a teacher; `Teacher` is a convenient base."""

  def init(self) -> Summary: ...

  def update(self, summary: Summary, step: TeacherStep) -> Summary: ...

  def compare(self, a: Summary, b: Summary, key: jax.Array) -> jax.Array: ...


def _never_abstain(a: Summary, b: Summary) -> jax.Array:
  del a, b
  return jnp.zeros((), bool)


def _accepts_any_env(env: Any) -> None:
  del env


# The optional hooks of the teacher protocol: name -> (default, what it must be). The only
# place they are declared; `hook` is the only place they are read.
TEACHER_HOOKS: dict[str, tuple[Any, str]] = {
    "abstain": (_never_abstain, "a method abstain(a, b) -> bool"),
    "check_env": (_accepts_any_env, "a method check_env(env) -> None"),
    "num_outcomes": (None, "an int >= 2 or None"),
    "table": (None, "a square tuple of tuples of floats or None"),
    "fit_metrics": (None, "a mapping of names to numbers or None"),
    "return_based": (False, "a bool"),
}


def hook(teacher: Any, name: str) -> Any:
  """The optional hook `name` of `teacher` (see `TEACHER_HOOKS`), or its default: a method
  that never abstains / accepts every env, or None for the attributes."""
  if name not in TEACHER_HOOKS:
    raise KeyError(f"{name!r} is not a teacher hook; hooks: {', '.join(TEACHER_HOOKS)}")
  value = getattr(teacher, name, None)
  return TEACHER_HOOKS[name][0] if value is None else value



def _hook_ok(name: str, value: Any) -> bool:
  if name in ("abstain", "check_env"):
    return callable(value)
  if name == "num_outcomes":
    return isinstance(value, int) and not isinstance(value, bool) and value >= 2
  if name == "return_based":
    return isinstance(value, bool)
  if name == "table":
    return (isinstance(value, (tuple, list)) and len(value) > 0
            and all(isinstance(row, (tuple, list)) and len(row) == len(value) for row in value))
  return isinstance(value, Mapping)


def check_teacher_protocol(teacher: Any) -> None:
  """Refuse an object that is not a teacher, before anything runs: raise
  `TeacherContractError` (one line) naming the first missing required method or ill-typed
  optional hook."""
  name = type(teacher).__name__
  for method in ("init", "update", "compare"):
    if not callable(getattr(teacher, method, None)):
      raise TeacherContractError(
          f"teacher {name} has no '{method}' method; a teacher needs "
          "init() -> summary, update(summary, step) -> summary and compare(a, b, key) -> p")
  for member, (_, expected) in TEACHER_HOOKS.items():
    value = getattr(teacher, member, None)
    if value is not None and not _hook_ok(member, value):
      raise TeacherContractError(f"teacher {name}: optional member '{member}' must be "
                                 f"{expected}, got {type(value).__name__} {value!r:.60}")


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


def teacher_abstain(teacher: TeacherProtocol, a: Summary, b: Summary) -> jax.Array:
  """`teacher.abstain(a, b)` where defined, else False (duck-typed teachers need not have it)."""
  return jnp.asarray(hook(teacher, "abstain")(a, b), bool)


def ask(teacher: TeacherProtocol, a: Summary, b: Summary, key: jax.Array,
        index: jax.Array | int) -> tuple[jax.Array, jax.Array]:
  """Put ONE pair to the teacher: (P(a preferred to b) as float32 [], abstains bool []).

  The comparison's key is `fold_in(key, index)`, so each pair of a batch (its `index`) gets
  its own stream from one key. Every site that asks a teacher (win rates, the reward model's
  queries, head-to-head evaluation, labels files, the contract check) calls this, so they all
  see the same answer for the same pair and key.
  """
  p = jnp.asarray(teacher.compare(a, b, jax.random.fold_in(key, index)), jnp.float32)
  return p, teacher_abstain(teacher, a, b)


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


def summarize(teacher: TeacherProtocol, steps: TeacherStep) -> Summary:
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


def validate_teacher(teacher: TeacherProtocol, summaries: Summary | None = None, *, num: int = 12,
                     horizon: int = 6, obs_size: int = 4, action_size: int = 2,
                     metric_names: tuple[str, ...] = (), key: jax.Array | None = None,
                     atol: float = 1e-5) -> None:
  """Check the teacher contract on sample data; raise `TeacherContractError` in words.

  Uses `summaries` (a pytree with leading axis M) if given, else folds `num` random
  trajectories of `horizon` steps through the teacher. Checks, for every pair (i, j):
  p finite and in [0, 1]; p(i, i) = 1/2; p(i, j) + p(j, i) = 1 where neither abstains.
  """
  check_teacher_protocol(teacher)
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
    return ask(teacher, a, b, k_cmp, i * size + j)

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
