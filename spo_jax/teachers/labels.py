"""Labels files for the 'learned' teacher, made from a simulated teacher's answers.

Apart from `learned.py` because it rolls out an environment: the teacher package is imported
by `rollout`, so the teachers themselves must not import `rollout` back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax.rollout import rollout
from spo_jax.teachers.learned import TrajectoryFeatures
from spo_jax.teachers.protocol import Summary, TeacherProtocol, TeacherStep, ask, env_spec

# -------------------------------------------------------------------------------------
# Making a labels file from a simulated teacher
# -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Both:
  """Folds one trajectory through two summaries at once (features, teacher)."""

  first: Any
  second: Any

  def init(self) -> Summary:
    return self.first.init(), self.second.init()

  def update(self, summary: Summary, step: TeacherStep) -> Summary:
    return self.first.update(summary[0], step), self.second.update(summary[1], step)


def _make_random_policy(action_size: int) -> Callable:
  """Random actions: raw action u ~ N(0, I), env action tanh(u); log_prob = log N(u; 0, I)."""

  def policy(obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    raw = jax.random.normal(key, obs.shape[:1] + (action_size,))
    return raw, -0.5 * jnp.sum(raw**2 + jnp.log(2.0 * jnp.pi), axis=-1)

  return policy


def make_labels(env: Any, teacher: TeacherProtocol, num_pairs: int, horizon: int, key: jax.Array,
                policy: Callable | None = None, *, labels: str = "soft",
                num_trajectories: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Labelled pairs in the labels-file format, from rollouts judged by a simulated teacher.

  Rolls out `num_trajectories` episodes of at most `horizon` steps (default 2 * num_pairs,
  paired (0, 1), (2, 3), ... so no trajectory is in two pairs; otherwise random distinct
  pairs) with `policy` (obs [N, D], key) -> (raw_action [N, A], log_prob [N]), by default
  random actions tanh(u), u ~ N(0, I). Features come from `TrajectoryFeatures`, labels from
  `teacher.compare`: 'soft' keeps P(a > b), 'sampled' draws one Bernoulli(P) label.
  Pairs the teacher abstains on are dropped, so fewer than num_pairs rows may come back.

  Returns numpy features_a [P, F], features_b [P, F], labels [P] (float32).
  """
  if labels not in ("soft", "sampled"):
    raise ValueError(f"labels = {labels!r} must be 'soft' or 'sampled'")
  if num_pairs < 1 or horizon < 1:
    raise ValueError(f"num_pairs = {num_pairs} and horizon = {horizon} must be >= 1")
  spec = env_spec(env, horizon)
  fold = TrajectoryFeatures.from_spec(spec)
  policy = _make_random_policy(spec.action_size) if policy is None else policy
  num = 2 * num_pairs if num_trajectories is None else int(num_trajectories)
  if num < 2:
    raise ValueError(f"num_trajectories = {num} must be >= 2 to form a pair")
  k_rollout, k_pairs, k_compare, k_sample = jax.random.split(key, 4)

  @jax.jit
  def run(k_rollout, k_pairs, k_compare, k_sample):
    result = rollout(env, policy, k_rollout, num, horizon, _Both(fold, teacher))
    feature_summary, teacher_summary = result.summaries
    x = jax.vmap(fold.vector)(feature_summary)  # [N, F]
    if num_trajectories is None:
      first = jnp.arange(num_pairs) * 2
      second = first + 1
    else:
      k_first, k_offset = jax.random.split(k_pairs)
      first = jax.random.randint(k_first, (num_pairs,), 0, num)
      second = (first + jax.random.randint(k_offset, (num_pairs,), 1, num)) % num

    def judge(i, j, index):
      a = jax.tree.map(lambda s: s[i], teacher_summary)
      b = jax.tree.map(lambda s: s[j], teacher_summary)
      return ask(teacher, a, b, k_compare, index)

    p, abstain = jax.vmap(judge)(first, second, jnp.arange(num_pairs))
    if labels == "sampled":
      p = (jax.random.uniform(k_sample, p.shape) < p).astype(jnp.float32)
    return x[first], x[second], p, abstain

  x_a, x_b, y, abstain = jax.device_get(run(k_rollout, k_pairs, k_compare, k_sample))
  keep = ~np.asarray(abstain)
  return (np.asarray(x_a, np.float32)[keep], np.asarray(x_b, np.float32)[keep],
          np.asarray(y, np.float32)[keep])
