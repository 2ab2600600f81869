"""The time-averaged policy of a one-step game with discrete actions, and its exploitability.

SPO's guarantee (Swamy et al. 2024, Sec. 4) is for the AVERAGE of the iterates: with each
iteration a no-regret step against the current policy's win rates, the mixture
(1/T) sum_t pi_t approaches a Minimax Winner, while the last iterate pi_T may keep cycling or
collapse onto a pure action (on `cycle3` it does). In a one-step game with a fixed
observation (the `matrix_game` env) a policy IS a probability vector over the K actions, so
the average can be kept exactly, as a running mean of those vectors:

  avg_t = avg_{t-1} + (pi_t - avg_{t-1}) / t,   avg_0 arbitrary (the t = 1 step overwrites it),

pi_t the policy after iteration t's update (so the last iterate is part of the average).

Exploitability against a payoff table P [K, K] (P[i, j] = P(i preferred to j)):
  e(pi) = max_k (P pi)_k - 1/2,
the most a pure response beats pi by; 0 exactly at a Minimax Winner (spo_jax.minimax).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax import networks as nets
from spo_jax.minimax import minimax_winner
from spo_jax.teachers import TeacherProtocol, hook


class OneStepGame(NamedTuple):
  """What the averaged-policy metrics need, fixed at build time (host values)."""

  observation: np.ndarray  # [D] the observation every episode starts (and ends) from
  num_actions: int  # K
  table: np.ndarray | None  # [K, K] payoff table P, or None when the teacher has none
  minimax_winner: np.ndarray | None  # [K] exact MW of `table` (linear program), or None


def running_average(average: jax.Array, new: jax.Array, count: jax.Array) -> jax.Array:
  """Uniform mean of `count` vectors, the last of which is `new`: average, new [K], count [].

  avg + (new - avg) / count; with count = 1 the result is `new` whatever `average` held."""
  return average + (new - average) / count.astype(average.dtype)


def exploitability(table: jax.Array, policy: jax.Array) -> jax.Array:
  """max_k (P pi)_k - 1/2: table [K, K], policy [K] -> [] (as `spo_jax.minimax.exploitability`,
  in JAX, so it runs inside jit and under vmap over seeds)."""
  return jnp.max(table @ policy) - 0.5


def one_step_game(env: Any, teacher: TeacherProtocol, episode_length: int) -> OneStepGame | None:
  """The averaged policy is tracked for envs with discrete actions played for one step from a
  fixed observation (the observation of `reset` with key 0: such an env must not randomise it);
  None otherwise. The payoff table is the teacher's `table` (the `matrix_game` teacher's), if
  it has one; the Minimax Winner is then solved here, once, on the host."""
  if not nets.has_discrete_actions(env) or episode_length != 1:
    return None
  observation = np.asarray(jax.jit(env.reset)(jax.random.PRNGKey(0)).obs)
  table = hook(teacher, "table")
  if table is not None:
    table = np.asarray(table, np.float64)
    if table.shape != (env.action_size, env.action_size):
      table = None  # not this game's table: probabilities only
  mw = None if table is None else minimax_winner(table)
  return OneStepGame(observation, int(env.action_size), table, mw)


def policy_probs(networks: nets.Networks, policy_params: Any, normalizer: nets.Normalizer,
                 game: OneStepGame, normalize_observations: bool) -> jax.Array:
  """The categorical policy's action probabilities [K] at the game's observation."""
  obs = jnp.asarray(game.observation, jnp.float32)[None, :]
  logits = nets.apply_policy(networks, policy_params, normalizer, obs,
                             normalize_observations)[0]
  return jax.nn.softmax(logits)


def game_metrics(game: OneStepGame, last: jax.Array, average: jax.Array
                 ) -> dict[str, jax.Array]:
  """`eval/` metrics of the last iterate and the average, both [K] probability vectors:
  prob_last_<k>, prob_average_<k>, and with a table exploitability_last/_average and
  mw_distance_last/_average (L1 distance to the exact Minimax Winner)."""
  metrics = {}
  for k in range(game.num_actions):
    metrics[f"eval/prob_last_{k}"] = last[k]
    metrics[f"eval/prob_average_{k}"] = average[k]
  if game.table is not None:
    table = jnp.asarray(game.table, jnp.float32)
    mw = jnp.asarray(game.minimax_winner, jnp.float32)
    metrics["eval/exploitability_last"] = exploitability(table, last)
    metrics["eval/exploitability_average"] = exploitability(table, average)
    metrics["eval/mw_distance_last"] = jnp.sum(jnp.abs(last - mw))
    metrics["eval/mw_distance_average"] = jnp.sum(jnp.abs(average - mw))
  return metrics
