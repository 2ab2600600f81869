"""The benchmark's measurements: throughput and the SPO breakdown, time to target, the
win-rate share, many seeds (the package docstring describes each)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import spo_jax
from spo_jax import brax_ppo, ppo
from spo_jax import envs as envs_lib
from spo_jax import reward_sources as sources
from spo_jax import teachers as teachers_lib
from spo_jax.bench.common import median, raw_rollout_fn, timed
from spo_jax.evaluate import rollout_policy
from spo_jax.iteration import training_rollout
from spo_jax.rollout import DEFAULT_CHUNK, RolloutResult, Trajectory
from spo_jax.teachers import TeacherStep
from spo_jax.train import build, init_over_seeds, over_seeds, policy_params, ppo_hyperparams

# -------------------------------------------------------------------------------------
# 1-2. Throughput and breakdown
# -------------------------------------------------------------------------------------

def throughput(config, contenders, repeats: int, warmup: int, breakdown: bool) -> dict:
  results: dict[str, Any] = {}
  spo_setup = build(config.replace(reward_source="spo"))
  state = jax.jit(spo_setup.fns.init)(jax.random.PRNGKey(config.seed))
  if warmup:
    warm = jax.jit(spo_setup.fns.iteration, donate_argnums=0)
    for _ in range(warmup):
      state, _ = warm(state)
  calls: dict[str, tuple[Callable, Any]] = {}
  for name in contenders:
    if name == "raw":
      fn = raw_rollout_fn(spo_setup.env, config.num_envs, config.episode_length)
      arg = jax.random.PRNGKey(1)
    else:
      if name == "spo":
        setup = spo_setup
      elif name == "spo_full_update":
        setup = build(config.replace(reward_source="spo", num_microbatches=1))
      else:
        setup = build(config.replace(reward_source=name))
      arg = setup.fns.init(jax.random.PRNGKey(config.seed))._replace(
          params=state.params, opt_state=state.opt_state, normalizer=state.normalizer)
      if name == "spo":
        arg = state
      fn = jax.jit(setup.fns.iteration)
    start = time.perf_counter()
    compiled = fn.lower(arg).compile()
    compile_s = time.perf_counter() - start
    first_s, out = timed(compiled, arg)
    calls[name] = (compiled, arg)
    results[name] = {"compile_s": compile_s, "first_run_s": first_s, "samples_s": []}
    if name != "raw":
      m = jax.device_get(out[1])
      results[name].update(physics_steps=int(m["train/physics_steps"][0]),
                           valid_steps=int(m["train/env_steps"][0]),
                           ppo_work=float(m["ppo/work_fraction"].ravel()[0]))
    else:
      n = config.num_envs * config.episode_length
      results[name].update(physics_steps=n, valid_steps=n)
  for _ in range(repeats):
    for name, (fn, arg) in calls.items():
      dt, _ = timed(fn, arg)
      results[name]["samples_s"].append(dt)
  raw_rate = None
  for name, r in results.items():
    r["median_s"] = median(r["samples_s"])
    r["physics_steps_per_s"] = r["physics_steps"] / r["median_s"]
    r["valid_steps_per_s"] = r["valid_steps"] / r["median_s"]
    r["useful_fraction"] = r["valid_steps"] / r["physics_steps"]
    if name == "raw":
      raw_rate = r["physics_steps_per_s"]
  for r in results.values():
    r["vs_raw"] = r["physics_steps_per_s"] / raw_rate if raw_rate else None
  if breakdown and "spo" in contenders:
    results["spo_breakdown"], steps = spo_breakdown(spo_setup, state, repeats)
    # The rollout alone against raw physics: valid steps per second of the jitted rollout.
    results["spo_rollout"] = dict(
        steps, valid_steps_per_s=steps["valid_steps"] / results["spo_breakdown"]["rollout"],
        vs_raw=(steps["valid_steps"] / results["spo_breakdown"]["rollout"] / raw_rate
                if raw_rate else None))
  return results


def spo_breakdown(setup, state, repeats: int) -> tuple[dict[str, float], dict[str, int]]:
  """Median seconds of each stage of the SPO iteration, each jitted alone on the same data,
  and the valid and physics steps of the rollout they were timed on."""
  config, env, networks = setup.config, setup.env, setup.networks
  spec = teachers_lib.env_spec(env, config.episode_length, config.env)
  source = sources.make_reward_source(config, setup.teacher, spec)
  optimizer = ppo.make_optimizer(config.learning_rate, config.max_grad_norm)

  def policy_fn(state):
    # Training's sampling policy, whatever the action distribution (matrix_game's too).
    return rollout_policy(networks, policy_params(state), config.normalize_observations,
                          deterministic=False)

  # The rollout as training runs it: segments, whole-episode summaries, compaction.
  training = training_rollout(config, env, setup.teacher, source)
  do_rollout = jax.jit(lambda s, k: training(policy_fn(s), k))
  do_rewards = jax.jit(lambda s, r, k: source.rewards(s.reward_state, r, k)[0])

  def update(s, traj, rewards, k):
    return ppo.ppo_update(s.params, s.opt_state, optimizer, networks, s.normalizer, traj.obs,
                          traj.raw_action, traj.log_prob, rewards * config.reward_scale,
                          traj.mask, k, ppo_hyperparams(config))[0]

  do_update = jax.jit(update)
  key = jax.random.PRNGKey(2)
  result = jax.block_until_ready(do_rollout(state, key))
  rewards = jax.block_until_ready(do_rewards(state, result, key))
  jax.block_until_ready(do_update(state, result.trajectory, rewards, key))
  samples: dict[str, list[float]] = {"rollout": [], "win rates + placement": [], "ppo update": []}
  for _ in range(repeats):
    samples["rollout"].append(timed(do_rollout, state, key)[0])
    samples["win rates + placement"].append(timed(do_rewards, state, result, key)[0])
    samples["ppo update"].append(timed(do_update, state, result.trajectory, rewards, key)[0])
  steps = {"valid_steps": int(result.trajectory.mask.sum()),
           "physics_steps": int(result.physics_steps)}
  return {k: median(v) for k, v in samples.items()}, steps


# -------------------------------------------------------------------------------------
# 3. Time to target
# -------------------------------------------------------------------------------------

def time_to_target(config, contenders, target: float, repeats: int, brax_steps: int) -> dict:
  runs: dict[str, list[dict]] = {name: [] for name in ("spo", "brax_ppo") if name in contenders}
  for _ in range(repeats):
    if "spo" in runs:
      curve: list[tuple[int, float, float]] = []
      start = time.perf_counter()
      progress = lambda step, m, curve=curve, start=start: curve.append(
          (int(step), float(m["eval/episode_reward"]), time.perf_counter() - start))
      result = spo_jax.train(config.replace(target_return=target, eval_every=1,
                                            checkpoint_every=0), progress_fn=progress)
      wall = time.perf_counter() - start
      reached = result.metrics["eval/episode_reward"] >= target
      runs["spo"].append({"wall_s": wall, "wall_to_target_s": wall if reached else None,
                          "env_steps": result.metrics["step"],
                          "physics_steps": result.metrics["train/physics_steps_total"],
                          "final_return": result.metrics["eval/episode_reward"],
                          "curve": curve})
      print(f"time to {target:g} [spo]: {wall:.1f} s, reached {reached}", flush=True)
    if "brax_ppo" in runs:
      row = brax_ppo.train(config.env, config.num_envs, brax_steps,
                           episode_length=config.episode_length, target_return=target,
                           seed=config.seed, hidden_sizes=config.policy_hidden_sizes)
      curve = row["curve"]
      # Steady rate between the first and last evaluation (compilation precedes the first).
      if len(curve) >= 3:
        (s0, _, t0), (s1, _, t1) = curve[1], curve[-1]
        row["steady_env_steps_per_s"] = (s1 - s0) / max(t1 - t0, 1e-9)
      print(f"time to {target:g} [brax_ppo]: {row['wall_to_target_s']} s", flush=True)
      runs["brax_ppo"].append(row)
  return runs


# -------------------------------------------------------------------------------------
# 4. Win-rate share
# -------------------------------------------------------------------------------------

def winrate_share(config, sizes: list[int], horizon: int, opponents: int, repeats: int,
                  seconds_per_slot: float) -> list[dict]:
  """Seconds of the teacher fold + preference matrix + placement at each N, alone."""
  env = envs_lib.make_env(config.env, config.backend)
  spec = teachers_lib.env_spec(env, horizon, config.env)
  teacher = teachers_lib.make_teacher(config, spec)
  rows = []
  for n in sizes:
    for k in (0, opponents):
      # Whole-episode comparisons (the fold below folds whole episodes); segments of L steps
      # ask H / L times as many queries, of the same kind.
      source = sources.make_reward_source(
          config.replace(num_envs=n, episode_length=horizon, num_opponents=k, segment_length=0,
                         episode_weight=0.0),
          teacher, spec)

      @jax.jit
      def machinery(rewards, source=source, n=n):
        """Fold H steps of N trajectories into summaries, then win rates and placement."""
        zeros_obs = jnp.zeros((n, spec.observation_size))
        zeros_act = jnp.zeros((n, spec.action_size))
        metrics = {name: jnp.zeros((n,)) for name in spec.metric_names}

        def fold(summaries, inputs):
          t, reward = inputs
          step = TeacherStep(obs=zeros_obs + reward[:, None], next_obs=zeros_obs,
                             action=zeros_act, reward=reward, metrics=metrics,
                             mask=jnp.ones((n,)), t=jnp.full((n,), t, jnp.int32))
          return jax.vmap(teacher.update)(summaries, step), None

        summaries = jax.vmap(lambda _: teacher.init())(jnp.arange(n))
        summaries, _ = jax.lax.scan(fold, summaries, (jnp.arange(horizon), rewards))
        mask = jnp.ones((horizon, n))
        traj = Trajectory(jnp.zeros((horizon, n, 1)), jnp.zeros((horizon, n, 1)), mask,
                          rewards, mask, jnp.zeros((horizon, n)))
        result = RolloutResult(traj, summaries, jnp.zeros((), jnp.int32),
                               jnp.zeros((), jnp.int32))
        state = source.init(jax.random.PRNGKey(0), teacher.init())
        return source.rewards(state, result, jax.random.PRNGKey(1))[0]

      rewards = jax.random.uniform(jax.random.PRNGKey(n), (horizon, n))
      first, _ = timed(machinery, rewards)
      seconds = median([timed(machinery, rewards)[0] for _ in range(repeats)])
      iteration_s = seconds_per_slot * n * horizon
      rows.append({"num_envs": n, "horizon": horizon,
                   "opponents": "all pairs" if k == 0 else k, "machinery_s": seconds,
                   "first_call_s": first, "iteration_s_extrapolated": iteration_s,
                   "share": seconds / iteration_s})
      print(f"win-rate machinery N={n} opponents={rows[-1]['opponents']}: {seconds:.4f} s, "
            f"{100 * rows[-1]['share']:.3f}% of an iteration", flush=True)
  return rows


# -------------------------------------------------------------------------------------
# 5. Seeds
# -------------------------------------------------------------------------------------

def seeds_section(config, seeds: list[int], chunks: list[str], repeats: int) -> list[dict]:
  calls = {}
  for chunk_name in chunks:
    chunk = config.episode_length if chunk_name == "horizon" else (
        DEFAULT_CHUNK if chunk_name == "default" else int(chunk_name))
    for s in seeds:
      setup = build(config, chunk=chunk)
      keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(s)])
      state = jax.jit(init_over_seeds(setup.fns.init, s))(keys)
      fn = jax.jit(over_seeds(setup.fns.iteration, s)).lower(state).compile()
      _, (_, m) = timed(fn, state)
      m = jax.device_get(m)
      # One seed: the per-step cond skips inside the last chunk, physics_steps is exact.
      # Vmapped seeds run in step to the longest loop of any seed.
      physics = (int(np.sum(m["train/physics_steps"])) if s == 1 else
                 config.num_envs * int(np.max(m["train/loop_steps"])) * s)
      calls[(chunk_name, s)] = (fn, state, int(np.sum(m["train/env_steps"])), physics)
  samples: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
  for _ in range(repeats):
    for key, (fn, state, _, _) in calls.items():
      samples[key].append(timed(fn, state)[0])
  rows = []
  for (chunk_name, s), (_, _, valid, physics) in calls.items():
    med = median(samples[(chunk_name, s)])
    single = median(samples.get((chunk_name, 1), []))
    rows.append({"chunk": chunk_name, "seeds": s, "median_s": med, "valid_steps": valid,
                 "physics_steps": physics, "useful_fraction": valid / physics,
                 "valid_steps_per_s": valid / med, "physics_steps_per_s": physics / med,
                 "sequential_s_extrapolated": s * single if single == single else None})
  return rows
