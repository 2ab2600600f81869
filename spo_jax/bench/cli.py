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

This module holds the arguments, the markdown tables and the order the sections run in
(`common.py`: contenders, bad input, machine, timing; `measures.py`: the sections). Prints
markdown tables, writes JSON to --out. Unknown contenders: exit 2 with the valid list.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spo_jax.bench.common import (
  CONTENDERS,
  LEARNERS,
  BenchError,
  int_list,
  machine,
  parse_contenders,
)
from spo_jax.bench.measures import (
  seeds_section,
  throughput,
  time_to_target,
  winrate_share,
)
from spo_jax.config import ConfigError, validate
from spo_jax.envs import require_family
from spo_jax.presets import preset

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
    head = (f"{report['env']} ({report.get('backend') or 'default backend'}), "
            f"N={report['num_envs']}, "
            f"H={report['horizon']}, "
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
  parser.add_argument("--backend", default=None,
                      help="Brax physics backend (default: the preset's), for every contender")
  parser.add_argument("--compaction-factor", type=int, default=None,
                      help="the rollout's compaction factor (default: the preset's; 0: off)")
  parser.add_argument("--contenders", default=",".join(CONTENDERS),
                      help=f"comma-separated subset of {','.join(CONTENDERS)}")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--warmup-iterations", type=int, default=0,
                      help="SPO iterations before timing (0: a fresh policy)")
  parser.add_argument("--no-breakdown", action="store_true")
  parser.add_argument("--skip-throughput", action="store_true",
                      help="skip section 1, the throughput (refused with --winrate-sizes: the "
                      "win-rate share needs the SPO iteration it measures)")
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
  args = build_parser().parse_args(argv)
  if args.full:
    for k, v in FULL.items():
      setattr(args, k, v)
  try:
    contenders = parse_contenders(args.contenders)
    sizes = int_list(args.winrate_sizes, "--winrate-sizes") if args.winrate_sizes else []
    seeds = int_list(args.seeds, "--seeds") if args.seeds else []
    if seeds and 1 not in seeds:
      seeds = [1, *seeds]  # sequential runs are extrapolated from S = 1
    if args.repeats < 1:
      raise BenchError(f"--repeats {args.repeats} must be >= 1")
    if args.skip_throughput and sizes and "spo" in contenders:
      raise BenchError("--skip-throughput with --winrate-sizes: the win-rate share is divided "
                       "by the SPO iteration that section 1 measures; pass --winrate-sizes ''")

    # brax:hopper is hopper; gymnax's envs and other families are not benchmarked here (the
    # raw-physics and Brax PPO contenders are written for Brax's and the package's envs)
    args.env = require_family(args.env, ("package", "brax"), "spo-bench")
    config = preset(args.env).replace(num_envs=args.num_envs, iterations_per_call=1)
    if args.episode_length:
      config = config.replace(episode_length=args.episode_length)
    if args.compaction_factor is not None:
      config = config.replace(compaction_factor=args.compaction_factor)
    if args.backend:
      config = config.replace(backend=args.backend)
    validate(config)
  except (BenchError, ConfigError) as e:
    print(f"spo-bench: {e}", file=sys.stderr)
    return 2

  report: dict[str, Any] = {"env": args.env, "backend": config.backend,
                            "num_envs": config.num_envs,
                            "horizon": config.episode_length, "repeats": args.repeats,
                            "target": args.target, "machine": machine(),
                            "command": " ".join(["spo-bench", *(argv or sys.argv[1:])]),
                            "results": {}}
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)

  def save() -> None:  # after every section: a run stopped late keeps what it measured
    out.write_text(json.dumps(report, indent=2, default=float))

  learners = [c for c in contenders if c in ("raw", *LEARNERS)]
  if learners and not args.skip_throughput:
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
