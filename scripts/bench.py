"""Benchmark: time to a target return, and env steps/s against the raw physics, in one run.

  python scripts/bench.py                       # inverted_pendulum, N=64, H=1000 (~5 min CPU)
  python scripts/bench.py --env halfcheetah --num-envs 256 --skip-time-to-target

1. Time to target (skipped with --skip-time-to-target): `spo_jax.train` with the env's preset,
   evaluation every iteration, stopping at --target (default 900): SPO (oracle teacher) and
   PPO on the ground-truth reward, alternated --target-repeats times. Wall time includes
   compilation, as a user experiences it.
2. Throughput, in one process, alternating the contenders for --repeats rounds and reporting
   medians:
   - raw: a jitted `lax.scan` of `env.step` over N envs and H steps with random actions and no
     learning; every one of the N * H steps is simulated (the physical limit here);
   - spo / ground_truth: one training iteration (rollout + rewards + PPO) on a fixed state;
     spo_unguarded: the SPO iteration with `numerical_guard=False` (the guard's cost).
     The state is the policy trained in part 1 (or --warmup-iterations of SPO), so episodes
     last long, as in steady training. Reported per physics step executed (masked steps after
     termination included, as PERFORMANCE.md asks) and per valid step, with the fraction of
     useful steps.
   First calls (compile + run) are reported separately from the steady state.

Writes a markdown table to stdout and JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import spo_jax
from spo_jax.train import build


def raw_rollout_fn(env, num_envs: int, horizon: int):
  @jax.jit
  def run(key):
    state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

    def step(state, k):
      action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
      state = jax.vmap(env.step)(state, action)
      # Return something that depends on the physics: a constant reward (inverted_pendulum's
      # is 1 every step) would let XLA drop the simulation as dead code.
      return state, jnp.sum(state.obs) + jnp.sum(state.reward)

    _, checksums = jax.lax.scan(step, state, jax.random.split(key, horizon))
    return checksums.sum()

  return run


def timed(fn, *args):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - start, out


def time_to_target(config, target: float) -> dict:
  config = config.replace(target_return=target, eval_every=1, checkpoint_every=0)
  start = time.perf_counter()
  result = spo_jax.train(config)
  wall = time.perf_counter() - start
  return {"wall_s": wall, "env_steps": result.metrics["step"],
          "iterations": result.metrics["iteration"],
          "final_eval_return": result.metrics["eval/episode_reward"],
          "reached": result.metrics["eval/episode_reward"] >= target}, result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--env", default="inverted_pendulum")
  parser.add_argument("--num-envs", type=int, default=None, help="N (default: the preset's)")
  parser.add_argument("--episode-length", type=int, default=None, help="H (default: preset's)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--target", type=float, default=900.0)
  parser.add_argument("--target-repeats", type=int, default=1)
  parser.add_argument("--skip-time-to-target", action="store_true")
  parser.add_argument("--warmup-iterations", type=int, default=20)
  parser.add_argument("--out", default="bench_results/bench.json")
  args = parser.parse_args()

  config = spo_jax.preset(args.env)
  if args.num_envs:
    config = config.replace(num_envs=args.num_envs)
  if args.episode_length:
    config = config.replace(episode_length=args.episode_length)
  spo_jax.validate(config)
  num_envs, horizon = config.num_envs, config.episode_length
  report = {"env": args.env, "num_envs": num_envs, "horizon": horizon,
            "jax": jax.__version__, "device": str(jax.devices()[0]),
            "cpu": platform.processor() or platform.machine(), "results": {}}

  if not args.skip_time_to_target:
    runs = {"spo": [], "ground_truth": []}
    for _ in range(args.target_repeats):
      for source in runs:
        row, _ = time_to_target(config.replace(reward_source=source), args.target)
        runs[source].append(row)
        print(f"time to {args.target:g} [{source}]: {row}", flush=True)
    report["results"]["time_to_target"] = runs

  spo_setup = build(config)
  gt_setup = build(config.replace(reward_source="ground_truth"))
  init = jax.jit(spo_setup.fns.init)
  spo_iteration = jax.jit(spo_setup.fns.iteration)
  gt_iteration = jax.jit(gt_setup.fns.iteration)
  # The numerical guard's price: the same SPO iteration without its checks.
  unguarded_iteration = jax.jit(build(config.replace(numerical_guard=False)).fns.iteration)
  state = init(jax.random.PRNGKey(0))
  # Warm up with SPO so that episodes last as in steady training (see the docstring).
  first_spo, (state, _) = timed(spo_iteration, state)
  warm = jax.jit(spo_setup.fns.iteration, donate_argnums=0)
  for _ in range(args.warmup_iterations):
    state, metrics = warm(state)
  trained_state = state
  gt_state = gt_setup.fns.init(jax.random.PRNGKey(0))._replace(
      params=trained_state.params, opt_state=trained_state.opt_state,
      normalizer=trained_state.normalizer)
  raw = raw_rollout_fn(spo_setup.env, num_envs, horizon)
  first_raw, _ = timed(raw, jax.random.PRNGKey(0))
  first_gt, _ = timed(gt_iteration, gt_state)
  first_unguarded, _ = timed(unguarded_iteration, trained_state)

  samples = {"raw": [], "spo": [], "ground_truth": [], "spo_unguarded": []}
  steps = {"spo": None, "ground_truth": None, "spo_unguarded": None}
  for r in range(args.repeats):
    dt, _ = timed(raw, jax.random.PRNGKey(r + 1))
    samples["raw"].append(dt)
    dt, (_, m) = timed(spo_iteration, trained_state)
    samples["spo"].append(dt)
    steps["spo"] = m
    dt, (_, m) = timed(gt_iteration, gt_state)
    samples["ground_truth"].append(dt)
    steps["ground_truth"] = m
    dt, (_, m) = timed(unguarded_iteration, trained_state)
    samples["spo_unguarded"].append(dt)
    steps["spo_unguarded"] = m

  rows = []
  raw_rate = num_envs * horizon / statistics.median(samples["raw"])
  rows.append(("raw rollout (random actions)", first_raw, statistics.median(samples["raw"]),
               num_envs * horizon, num_envs * horizon, raw_rate))
  for name, first in (("spo", first_spo), ("ground_truth", first_gt),
                      ("spo_unguarded", first_unguarded)):
    med = statistics.median(samples[name])
    physics = int(steps[name]["train/physics_steps"][0])
    valid = int(steps[name]["train/env_steps"][0])
    rows.append((f"{name} training iteration", first, med, physics, valid, physics / med))
  print(f"\n{args.env}, N={num_envs}, H={horizon}, {report['device']}, jax {jax.__version__}, "
        f"median of {args.repeats} alternated repeats\n")
  print("| contender | first call (s) | steady call (s) | physics steps | valid steps "
        "| physics steps/s | valid steps/s | vs raw |")
  print("|---|---|---|---|---|---|---|---|")
  for name, first, med, physics, valid, rate in rows:
    print(f"| {name} | {first:.1f} | {med:.3f} | {physics:,d} | {valid:,d} | {rate:,.0f} "
          f"| {valid / med:,.0f} | {rate / raw_rate:.2f}x |")
    report["results"][name] = {"first_call_s": first, "steady_call_s": med,
                               "samples_s": samples.get(name.split()[0], []),
                               "physics_steps": physics, "valid_steps": valid,
                               "physics_steps_per_s": rate, "valid_steps_per_s": valid / med}
  guard = statistics.median(samples["spo"]) / statistics.median(samples["spo_unguarded"]) - 1
  print(f"\nNumerical guard: SPO iteration {100 * guard:+.1f}% with the guard than without "
        "(medians of alternated repeats)")
  report["results"]["numerical_guard_overhead"] = guard
  if "time_to_target" in report["results"]:
    print(f"\nTime to eval return >= {args.target:g} (wall clock incl. compilation):\n")
    print("| reward source | wall time (s) | env steps | iterations | final eval return |")
    print("|---|---|---|---|---|")
    for source, runs in report["results"]["time_to_target"].items():
      for row in runs:
        print(f"| {source} | {row['wall_s']:.0f} | {row['env_steps']:,d} | {row['iterations']} "
              f"| {row['final_eval_return']:.0f} |")
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=2, default=float))
  print(f"\nJSON: {out}")


if __name__ == "__main__":
  jnp.zeros(())  # initialise the backend before timing anything
  main()
