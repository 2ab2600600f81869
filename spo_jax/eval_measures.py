"""What `spo-eval` measures of a restored policy (eval_cli.py parses, checks and reports):
the ground-truth return and episode length, the teacher's win rate against another policy,
the exploitability by a trained best response, and one episode written to a file.

`setup` below is a `saved_policy.LoadedPolicy` (or a `setup.Setup`): the run's `config`,
`env`, `networks`, `user_env` and `teacher` (None when loaded from policy.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax import best_response as br
from spo_jax import teachers as teachers_lib
from spo_jax.errors import ConfigError
from spo_jax.evaluate import head_to_head, rollout_policy
from spo_jax.reward_sources import REWARD_SOURCES
from spo_jax.rollout import rollout


def evaluate_returns(setup, params, episodes: int, key, deterministic: bool = True
                     ) -> dict[str, float]:
  """Ground-truth return and length over `episodes` episodes from reset (jitted rollout);
  `setup` has the run's `config`, `env` and `networks` (a `LoadedPolicy` or a `Setup`)."""
  config = setup.config

  @jax.jit
  def run(params, key):
    policy_fn = rollout_policy(setup.networks, params, config.normalize_observations,
                               deterministic)
    traj = rollout(setup.env, policy_fn, key, episodes, config.eval_horizon).trajectory
    return jnp.sum(traj.reward, axis=0), jnp.sum(traj.mask, axis=0)

  returns, lengths = (np.asarray(x, np.float64) for x in jax.device_get(run(params, key)))
  return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
          "return_min": float(returns.min()), "return_max": float(returns.max()),
          "length_mean": float(lengths.mean()), "length_std": float(lengths.std())}


def run_teacher(setup, expression: str | None):
  """The run's teacher, or `expression` with the run's teacher parameters; returns
  (teacher, its name)."""
  config = setup.config
  spec = teachers_lib.env_spec(setup.env, config.episode_length, registry_name(setup))
  # A run whose reward source asked no teacher has none of its own: build the configured one.
  # A policy loaded from policy.json comes without its teacher: only a duel builds one.
  if (expression is None and REWARD_SOURCES.get(config.reward_source).uses_teacher
      and setup.teacher is not None):
    return setup.teacher, config.teacher
  name = config.teacher if expression is None else expression
  return teachers_lib.make_teacher(config.replace(teacher=name), spec), name


def registry_name(setup) -> str:
  """The env's registry name for `env_spec`, '' for a user's own env (whose `config.env` is
  only a label): teachers then see the class name, as in training (`setup.build`)."""
  return "" if setup.user_env else setup.config.env


def duel_fields(saved, setup, other, other_setup, expression: str | None, episodes: int,
                key, deterministic: bool = True) -> dict[str, Any]:
  """The teacher's win rate of `setup`'s policy against `other_setup`'s
  (`evaluate.head_to_head`: the same reset states for both), as spo-eval's result fields.

  `saved`, `other`: the two located runs (eval_cli.SavedRun); `expression`: --teacher, or
  None for the run's own. Raises `ConfigError` when the two policies' sizes differ.
  """
  sizes = (setup.networks.observation_size, setup.env.action_size)
  other_sizes = (other_setup.networks.observation_size, other_setup.env.action_size)
  if sizes != other_sizes:
    raise ConfigError(f"cannot compare: observation/action sizes {sizes} and {other_sizes} "
                      "differ")
  teacher, teacher_name = run_teacher(setup, expression)
  if expression is not None:
    teachers_lib.validate_teacher(teacher, obs_size=setup.networks.observation_size,
                                  action_size=setup.env.action_size,
                                  metric_names=teachers_lib.env_spec(
                                      setup.env, saved.config.episode_length,
                                      registry_name(setup)).metric_names,
                                  horizon=min(saved.config.episode_length, 6))
  policy_a = rollout_policy(setup.networks, setup.params, saved.config.normalize_observations,
                            deterministic)
  policy_b = rollout_policy(other_setup.networks, other_setup.params,
                            other.config.normalize_observations, deterministic)
  duel = jax.jit(lambda k: head_to_head(setup.env, teacher, policy_a, policy_b, k,
                                        episodes, saved.config.episode_length))
  verdict = jax.device_get(duel(key))
  return {"against": str(other.run_dir), "against_step": other.step,
          "against_seed_index": other.seed_index, "teacher": teacher_name,
          "win_rate": float(verdict["win_rate"]),
          "win_rate_stderr": float(verdict["win_rate_stderr"]),
          "num_labels": int(verdict["num_labels"]),
          # both policies' returns on the duel's (shared) reset states
          "duel_return_mean": float(verdict["return_a"]),
          "against_return_mean": float(verdict["return_b"])}


def exploitability_fields(saved, setup, env, *, target: str, expression: str | None,
                          seed: int, iterations: int, episodes: int, stochastic: bool,
                          warm_start: bool = False) -> dict[str, Any]:
  """`best_response.exploitability` of the run's last iterate or mixture (`target`), as
  spo-eval's result fields. `saved`: the located run (eval_cli.SavedRun); `env`: the
  --env-class env or None; `expression`: --teacher or None."""
  # The frozen iterates act as the evaluation does: their mode, or samples with --stochastic.
  frozen = br.load_frozen(saved.run_dir, target, saved.seed_index, env,
                          deterministic=not stochastic)
  teacher, teacher_name = run_teacher(setup, expression)
  verdict = br.exploitability(frozen, setup.env, teacher, saved.config,
                              jax.random.PRNGKey(seed), iterations=iterations,
                              eval_episodes=episodes, warm_start=warm_start)
  return {"exploitability": {**verdict.to_dict(), "target": target, "warm_start": warm_start,
                             "teacher": teacher_name, "steps": list(frozen.steps)}}


def save_rollout(setup, params, path: Path, key, deterministic: bool = True) -> str:
  """One episode of the policy to `path`; returns a sentence saying what was written."""
  config, env = setup.config, setup.env
  policy = setup.make_policy(params, deterministic=deterministic)
  reset, step, act = jax.jit(env.reset), jax.jit(env.step), jax.jit(policy)
  k_reset, k_act = jax.random.split(key)
  state = reset(k_reset)
  states, observations, actions, rewards = [state.pipeline_state], [state.obs], [], []
  for t in range(config.eval_horizon):
    action = act(state.obs, jax.random.fold_in(k_act, t))
    state = step(state, action)
    states.append(state.pipeline_state)
    observations.append(state.obs)
    actions.append(action)
    rewards.append(state.reward)
    if float(state.done):
      break
  path.parent.mkdir(parents=True, exist_ok=True)
  system = getattr(env, "sys", None)
  if system is not None:
    from brax.io import html  # lazy: it imports jinja2 (~0.2 s), for this HTML only

    if hasattr(env, "dt"):  # one viewer frame per env step, not per physics substep
      system = system.tree_replace({"opt.timestep": env.dt})
    path.write_text(html.render(system, jax.device_get(states)))
    return (f"wrote {path}: {len(actions)} steps in Brax's HTML viewer (open it in a browser "
            "with network access: it loads three.js and the viewer from unpkg.com and "
            "cdn.jsdelivr.net)")
  data = {"env": config.env, "observations": np.asarray(observations).tolist(),
          "actions": np.asarray(actions).tolist(), "rewards": np.asarray(rewards).tolist(),
          "return": float(np.sum(rewards))}
  if path.suffix == ".npz":
    np.savez(path, **{k: np.asarray(v) for k, v in data.items()})
    written = path
  else:
    written = path if path.suffix == ".json" else path.with_suffix(".json")
    written.write_text(json.dumps(data))
  what = (f"your env {type(env).__name__} has no `sys`" if setup.user_env
          else f"{config.env} is a pure-JAX env with no physics system")
  return (f"wrote {written}: {len(actions)} steps of observations, actions and rewards "
          f"({what} for Brax's HTML viewer)")
