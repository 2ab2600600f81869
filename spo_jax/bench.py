"""Benchmark: throughput against the raw physics, Brax PPO, the win-rate share, many seeds.

  spo-bench                                     # small default: a few minutes on 2 CPU cores
  python -m spo_jax.bench --env halfcheetah --num-envs 256 --contenders raw,spo
  python -m spo_jax.bench --full                # the table of docs/performance.md

One process, one env, one N and H. Sections (each skipped when its contenders are not asked):

1. Throughput (`raw`, `spo`, `spo_full_update` = SPO with `num_microbatches = 1`, PPO over
   every slot, `ground_truth`, `reward_model`): one jitted call each, alternated
   for --repeats rounds, medians reported. `raw` is a `lax.scan` of `env.step` over N envs
   and H steps with random actions (the physical limit: all N x H steps simulated). The
   learning contenders run one training iteration (rollout + rewards + PPO) on the same state:
   --warmup-iterations of SPO from init (0: a fresh policy, short episodes early in training;
   more: long episodes as in steady training). "physics steps" counts every `env.step`
   executed, masked steps after termination included; "useful" is valid / physics steps;
   "PPO work" the share of a full pass over all N x H slots that the PPO update ran.
   Compilation of the first iteration is timed apart (ahead-of-time `lower().compile()`).
2. Breakdown of the SPO iteration (with `spo`): rollout, win rates + reward placement, PPO
   update, each jitted alone on the same data.
3. Time to --target (`spo` and/or `brax_ppo`, unless --skip-time-to-target): wall time from
   the call to the first evaluation with return >= target, compilation included, for
   `spo_jax.train` (SPO, oracle teacher) and Brax's `ppo.train` with the same N; Brax's
   steady env steps/s from its evaluation clock.
4. Win-rate share (with `spo`, --winrate-sizes): the teacher fold over H steps of N
   trajectories plus the preference matrix, win rates and reward placement, timed alone at
   each N for all pairs and for k = --opponents opponents; divided by an SPO iteration at
   that N and H *extrapolated* from the measured one: iteration(N, H) = measured iteration
   seconds x (N x H) / (bench N x bench H) (rollout and PPO are linear in the N x H slots; a
   fresh policy's short episodes make the measured iteration cheap, so the share comes out
   high, on the safe side).
5. Seeds (with `spo`, --seeds): aggregate env steps/s of S seeds as one vmapped iteration
   from fresh policies, for each rollout chunking in --chunks ('default' and 'horizon', the
   single-scan layout, give the before/after of the while loop); S sequential runs are
   *extrapolated* as S x the measured S = 1 call.

Prints markdown tables, writes JSON to --out. Unknown contenders: exit 2 with the valid list.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# `spo_full_update`: SPO with num_microbatches = 1, every PPO minibatch over all its slots
# (masked ones included), to show in one process what following the valid steps saves.
CONTENDERS = ("raw", "spo", "spo_full_update", "ground_truth", "reward_model", "brax_ppo")
LEARNERS = ("spo", "ground_truth", "reward_model", "spo_full_update")


class BenchError(ValueError):
  """Bad benchmark arguments: one line naming the problem and the fix."""


def parse_contenders(text: str) -> tuple[str, ...]:
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  unknown = [n for n in names if n not in CONTENDERS]
  if unknown or not names:
    raise BenchError(f"unknown contender(s) {', '.join(unknown) or '(none given)'} in "
                     f"--contenders '{text}'; valid: {','.join(CONTENDERS)}")
  return names


def _int_list(text: str, flag: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise BenchError(f"{flag} '{text}' must be comma-separated integers, e.g. 1,4,16") from None
  if not values or min(values) < 1:
    raise BenchError(f"{flag} '{text}' must list positive integers")
  return values


def cpu_model() -> str:
  """The CPU's model name from `lscpu` (else what `platform` knows)."""
  cpu = platform.processor() or platform.machine()
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                if ln.startswith("Model name")), cpu)
  except OSError:
    pass
  return cpu


def machine() -> dict[str, Any]:
  import os

  import jax

  return {"cpu": cpu_model(), "cores": os.cpu_count(), "device": str(jax.devices()[0]),
          "jax": jax.__version__, "python": platform.python_version()}


def timed(fn: Callable, *args) -> tuple[float, Any]:
  import jax

  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - start, out


def raw_rollout_fn(env, num_envs: int, horizon: int):
  """A jitted scan of `env.step` with uniform random actions in [-1, 1]; returns a checksum
  of the observations (a constant reward would let XLA drop the physics as dead code)."""
  import jax
  import jax.numpy as jnp

  @jax.jit
  def run(key):
    state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

    def step(state, k):
      action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      state = jax.vmap(env.step)(state, action)
      return state, jnp.sum(state.obs) + jnp.sum(state.reward)

    _, checksums = jax.lax.scan(step, state, jax.random.split(key, horizon))
    return checksums.sum()

  return run


def _median(xs: list[float]) -> float:
  return statistics.median(xs) if xs else float("nan")


# -------------------------------------------------------------------------------------
# 1-2. Throughput and breakdown
# -------------------------------------------------------------------------------------

def throughput(config, contenders, repeats: int, warmup: int, breakdown: bool) -> dict:
  import jax

  from spo_jax.train import build

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
    r["median_s"] = _median(r["samples_s"])
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
  import jax

  from spo_jax import ppo
  from spo_jax import reward_sources as sources
  from spo_jax import teachers as teachers_lib
  from spo_jax.evaluate import rollout_policy
  from spo_jax.rollout import compaction_sizes, rollout
  from spo_jax.train import policy_params, ppo_hyperparams

  config, env, networks = setup.config, setup.env, setup.networks
  spec = teachers_lib.env_spec(env, config.episode_length, config.env)
  source = sources.make_reward_source(config, setup.teacher, spec)
  optimizer = ppo.make_optimizer(config.learning_rate, config.max_grad_norm)

  def policy_fn(state):
    # Training's sampling policy, whatever the action distribution (matrix_game's too).
    return rollout_policy(networks, policy_params(state), config.normalize_observations,
                          deterministic=False)

  # The rollout as training runs it: the same segments and compaction (train.py).
  batch_sizes = compaction_sizes(config.num_envs, config.compaction_factor)
  do_rollout = jax.jit(lambda s, k: rollout(env, policy_fn(s), k, config.num_envs,
                                            config.episode_length, setup.teacher,
                                            segment_length=source.segment_length,
                                            batch_sizes=batch_sizes))
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
  return {k: _median(v) for k, v in samples.items()}, steps


# -------------------------------------------------------------------------------------
# 3. Time to target
# -------------------------------------------------------------------------------------

def time_to_target(config, contenders, target: float, repeats: int, brax_steps: int) -> dict:
  import spo_jax
  from spo_jax import brax_ppo

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
  import jax
  import jax.numpy as jnp

  from spo_jax import envs as envs_lib
  from spo_jax import reward_sources as sources
  from spo_jax import teachers as teachers_lib
  from spo_jax.rollout import RolloutResult, Trajectory
  from spo_jax.teachers import TeacherStep

  env = envs_lib.make_env(config.env, config.backend)
  spec = teachers_lib.env_spec(env, horizon, config.env)
  teacher = teachers_lib.make_teacher(config, spec)
  rows = []
  for n in sizes:
    for k in (0, opponents):
      # Whole-episode comparisons (the fold below folds whole episodes); segments of L steps
      # ask H / L times as many queries, of the same kind.
      source = sources.make_reward_source(
          config.replace(num_envs=n, episode_length=horizon, num_opponents=k, segment_length=0),
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
      seconds = _median([timed(machinery, rewards)[0] for _ in range(repeats)])
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
  import jax
  import jax.numpy as jnp
  import numpy as np

  from spo_jax.rollout import DEFAULT_CHUNK
  from spo_jax.train import build, over_seeds

  calls = {}
  for chunk_name in chunks:
    chunk = config.episode_length if chunk_name == "horizon" else (
        DEFAULT_CHUNK if chunk_name == "default" else int(chunk_name))
    for s in seeds:
      setup = build(config, chunk=chunk)
      keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(s)])
      state = jax.jit(over_seeds(setup.fns.init, s))(keys)
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
    med = _median(samples[(chunk_name, s)])
    single = _median(samples.get((chunk_name, 1), []))
    rows.append({"chunk": chunk_name, "seeds": s, "median_s": med, "valid_steps": valid,
                 "physics_steps": physics, "useful_fraction": valid / physics,
                 "valid_steps_per_s": valid / med, "physics_steps_per_s": physics / med,
                 "sequential_s_extrapolated": s * single if single == single else None})
  return rows


# -------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------

def _fmt(x: Any, spec: str = ",.0f") -> str:
  return "–" if x is None else format(x, spec)


def print_tables(report: dict, sections: tuple[str, ...] | None = None) -> None:
  """Markdown tables of the finished sections (all, or `sections`), as each one ends, so
  that a long run interrupted late still shows what it measured."""
  r = {k: v for k, v in report["results"].items() if sections is None or k in sections}
  if sections is None or "throughput" in sections:
    head = (f"{report['env']}, N={report['num_envs']}, H={report['horizon']}, "
            f"{report['machine']['cpu']} ({report['machine']['cores']} cores), "
            f"jax {report['machine']['jax']}, medians of {report['repeats']} alternated repeats")
    print(f"\n{head}\n")
  if "throughput" in r:
    print("| contender | compile (s) | steady call (s) | physics steps | useful | PPO work "
          "| physics steps/s | valid steps/s | vs raw |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t in r["throughput"].items():
      if name in ("spo_breakdown", "spo_rollout"):
        continue
      print(f"| {name} | {t['compile_s']:.1f} | {t['median_s']:.3f} | {t['physics_steps']:,d} "
            f"| {t['useful_fraction']:.2f} | {_fmt(t.get('ppo_work'), '.2f')} "
            f"| {t['physics_steps_per_s']:,.0f} "
            f"| {t['valid_steps_per_s']:,.0f} | {_fmt(t['vs_raw'], '.2f')}x |")
    if "spo_breakdown" in r["throughput"]:
      parts = r["throughput"]["spo_breakdown"]
      total = sum(parts.values())
      print("\n| SPO stage (jitted alone) | median (s) | share |\n|---|---|---|")
      for k, v in parts.items():
        print(f"| {k} | {v:.3f} | {100 * v / total:.0f}% |")
      steps = r["throughput"].get("spo_rollout")
      if steps:
        print(f"\nRollout alone: {steps['valid_steps']:,d} valid of {steps['physics_steps']:,d} "
              f"physics steps, {steps['valid_steps_per_s']:,.0f} valid steps/s "
              f"({_fmt(steps['vs_raw'], '.2f')}x raw)")
  if "time_to_target" in r:
    print(f"\nTime to eval return >= {report['target']:g} (wall clock incl. compilation):\n")
    print("| trainer | wall to target (s) | total wall (s) | env steps | steady env steps/s |")
    print("|---|---|---|---|---|")
    for name, runs in r["time_to_target"].items():
      for row in runs:
        print(f"| {name} | {_fmt(row.get('wall_to_target_s'), '.1f')} | {row['wall_s']:.1f} "
              f"| {row['env_steps']:,d} | {_fmt(row.get('steady_env_steps_per_s'))} |")
  if "winrate_share" in r:
    print("\n| N | H | opponents | machinery (s) | iteration (s, extrapolated) | share |")
    print("|---|---|---|---|---|---|")
    for row in r["winrate_share"]:
      print(f"| {row['num_envs']} | {row['horizon']} | {row['opponents']} "
            f"| {row['machinery_s']:.4f} | {row['iteration_s_extrapolated']:.2f} "
            f"| {100 * row['share']:.3f}% |")
  if "seeds" in r:
    print(f"\nSeeds, N = {report['seeds_num_envs']} each, fresh policies:\n")
    print("| chunk | seeds S | vmapped call (s) | useful | valid steps/s | physics steps/s "
          "| S sequential (s, extrapolated) | vmapped speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for row in r["seeds"]:
      seq = row["sequential_s_extrapolated"]
      print(f"| {row['chunk']} | {row['seeds']} | {row['median_s']:.3f} "
            f"| {row['useful_fraction']:.2f} | {row['valid_steps_per_s']:,.0f} "
            f"| {row['physics_steps_per_s']:,.0f} | {_fmt(seq, '.3f')} "
            f"| {_fmt(seq / row['median_s'] if seq else None, '.2f')}x |")


FULL = {"winrate_sizes": "256,1024,4096,8192", "seeds": "1,4,16,64", "repeats": 5,
        "target_repeats": 2}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="spo-bench", description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n", 2)[2])
  parser.add_argument("--env", default="inverted_pendulum")
  parser.add_argument("--num-envs", type=int, default=64, help="N (default 64)")
  parser.add_argument("--episode-length", type=int, default=None,
                      help="H (default: the preset's)")
  parser.add_argument("--compaction-factor", type=int, default=None,
                      help="the rollout's compaction factor (default: the preset's; 0: off)")
  parser.add_argument("--contenders", default=",".join(CONTENDERS),
                      help=f"comma-separated subset of {','.join(CONTENDERS)}")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--warmup-iterations", type=int, default=0,
                      help="SPO iterations before timing (0: a fresh policy)")
  parser.add_argument("--no-breakdown", action="store_true")
  parser.add_argument("--target", type=float, default=900.0)
  parser.add_argument("--target-repeats", type=int, default=1)
  parser.add_argument("--skip-time-to-target", action="store_true")
  parser.add_argument("--brax-timesteps", type=int, default=400_000,
                      help="Brax PPO budget in env steps (it stops at the budget, not the "
                      "target; the time to target is read from its evaluations)")
  parser.add_argument("--winrate-sizes", default="256,1024",
                      help="N values for the win-rate share ('' to skip)")
  parser.add_argument("--winrate-horizon", type=int, default=1000)
  parser.add_argument("--opponents", type=int, default=16, help="k of the k-opponents rows")
  parser.add_argument("--seeds", default="1,4", help="S values ('' to skip)")
  parser.add_argument("--seeds-num-envs", type=int, default=None,
                      help="N of each seed in the seeds section (default: --num-envs)")
  parser.add_argument("--chunks", default="default,horizon",
                      help="rollout chunkings for the seeds section")
  parser.add_argument("--full", action="store_true",
                      help="the full table: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                           for k, v in FULL.items()))
  parser.add_argument("--out", default="bench_results/bench.json")
  return parser


def main(argv: list[str] | None = None) -> int:
  from spo_jax.config import ConfigError, validate
  from spo_jax.presets import preset

  args = build_parser().parse_args(argv)
  if args.full:
    for k, v in FULL.items():
      setattr(args, k, v)
  try:
    contenders = parse_contenders(args.contenders)
    sizes = _int_list(args.winrate_sizes, "--winrate-sizes") if args.winrate_sizes else []
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else []
    if seeds and 1 not in seeds:
      seeds = [1, *seeds]  # sequential runs are extrapolated from S = 1
    if args.repeats < 1:
      raise BenchError(f"--repeats {args.repeats} must be >= 1")
    from spo_jax.envs import require_family

    # brax:hopper is hopper; gymnax's envs and other families are not benchmarked here (the
    # raw-physics and Brax PPO contenders are written for Brax's and the package's envs)
    args.env = require_family(args.env, ("package", "brax"), "spo-bench")
    config = preset(args.env).replace(num_envs=args.num_envs, iterations_per_call=1)
    if args.episode_length:
      config = config.replace(episode_length=args.episode_length)
    if args.compaction_factor is not None:
      config = config.replace(compaction_factor=args.compaction_factor)
    validate(config)
  except (BenchError, ConfigError) as e:
    print(f"spo-bench: {e}", file=sys.stderr)
    return 2

  report: dict[str, Any] = {"env": args.env, "num_envs": config.num_envs,
                            "horizon": config.episode_length, "repeats": args.repeats,
                            "target": args.target, "machine": machine(),
                            "command": " ".join(["spo-bench", *(argv or sys.argv[1:])]),
                            "results": {}}
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)

  def save() -> None:  # after every section: a run stopped late keeps what it measured
    out.write_text(json.dumps(report, indent=2, default=float))

  learners = [c for c in contenders if c in ("raw", *LEARNERS)]
  if learners:
    report["results"]["throughput"] = throughput(config, learners, args.repeats,
                                                 args.warmup_iterations, not args.no_breakdown)
    print_tables(report, ("throughput",))
    save()
  if not args.skip_time_to_target and ({"spo", "brax_ppo"} & set(contenders)):
    report["results"]["time_to_target"] = time_to_target(
        config, contenders, args.target, args.target_repeats, args.brax_timesteps)
    print_tables(report, ("time_to_target",))
    save()
  if "spo" in contenders and sizes:
    spo = report["results"]["throughput"]["spo"]
    report["results"]["winrate_share"] = winrate_share(
        config, sizes, args.winrate_horizon, args.opponents, args.repeats,
        spo["median_s"] / (config.num_envs * config.episode_length))
    print_tables(report, ("winrate_share",))
    save()
  if "spo" in contenders and seeds:
    seeds_config = config.replace(num_envs=args.seeds_num_envs or config.num_envs)
    report["results"]["seeds"] = seeds_section(seeds_config, seeds, args.chunks.split(","),
                                               args.repeats)
    report["seeds_num_envs"] = seeds_config.num_envs
    print_tables(report, ("seeds",))
    save()
  save()
  print(f"\nJSON: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
