"""Learning benchmark: Brax PPO, our PPO on the env reward, and SPO, side by side.

  spo-learning-bench --env point_reach --budget 6144 --seeds 0,1     # 2-3 min on 2 CPU cores
  spo-learning-bench --env halfcheetah --budget 5000000 --seeds 0,1,2 --out runs/lb-cheetah
  spo-learning-bench --env hopper --backend positional --budget 10000000 --seeds 0,1,2,3,4

For one env, one physics backend and one budget of env steps, trains each contender for each
seed and records its learning curve: evaluation return against env steps and against wall
time (compilation included).

  brax_ppo      Brax's own PPO (`brax.training.agents.ppo.train`, through spo_jax/brax_ppo.py)
                with Brax's published settings for the env (SETTINGS), scaled to our N parallel
                envs, and Brax's default networks.
  ground_truth  `spo_jax.train` on the env reward: `preset(env)` with reward_source
                'ground_truth'.
  spo           `spo_jax.train` with reward_source 'spo' and the preset's teacher (oracle).

Every (contender, seed) run is a fresh subprocess (no compile cache or memory carried over),
seed after seed, the contenders' order rotating from one seed to the next (A B C, B C A, ...)
so that a drifting machine favours none. A finished run is saved at once, atomically, as
OUT/runs/<contender>-seed<k>.json; rerunning the same command skips finished runs. OUT/plan.json
holds the plan; a rerun with another plan into the same OUT is refused (use a new --out, or
--overwrite). After every run: OUT/curves.csv (tidy), OUT/summary.csv, OUT/summary.md (also
printed at the end) and OUT/curves.png.

Brax's settings are scaled as: num_envs = N (our preset's num_envs); batch_size =
published batch_size x N / published num_envs, rounded, then raised to the next multiple of
N / gcd(N, num_minibatches), because Brax needs batch_size x num_minibatches % num_envs == 0;
every other published field is kept, except the evaluation, made ours (16 episodes of the
deterministic policy). Our trainer evaluates each time its env steps pass a multiple of
budget / num_evals (`eval_every_steps`), and always at the end of the budget.

Bad arguments: one line on stderr naming the problem and the fix, exit code 2, before any
environment is built or anything compiled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spo_jax.learning_bench.plans import (
    CONTENDERS,
    BenchError,
    describe_machine,
    make_plan,
    versions,
)
from spo_jax.learning_bench.report import write_outputs
from spo_jax.learning_bench.running import load_runs, prepare_out, run_all, run_one, run_order
from spo_jax.learning_bench.settings import (
    SETTINGS,
    brax_steps_per_training_step,
    brax_total_steps,
)


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> None:  # one line, like every other refusal here
    self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="spo-learning-bench", description=__doc__.split("\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   epilog=__doc__.split("\n", 2)[2])
  parser.add_argument("--env", default="inverted_pendulum",
                      help=f"environment with learning-bench settings: {', '.join(SETTINGS)} "
                      "(default inverted_pendulum)")
  parser.add_argument("--backend", default=None,
                      help="Brax physics backend (generalized, positional, spring, mjx) for every "
                      "contender; default: the preset's (halfcheetah: spring), else the env's own")
  parser.add_argument("--budget", type=int, default=1_000_000,
                      help="env steps per run, every contender (default 1,000,000); at least one "
                      "iteration of ours (N x H) and one Brax PPO training step")
  parser.add_argument("--seeds", default="0,1,2",
                      help="comma-separated non-negative seeds (default 0,1,2)")
  parser.add_argument("--contenders", default=",".join(CONTENDERS),
                      help=f"comma-separated subset of {','.join(CONTENDERS)}, each optionally "
                      "@<backend> (e.g. brax_ppo@positional); all must end on one backend")
  parser.add_argument("--num-evals", type=int, default=None,
                      help="evaluations of Brax PPO, its step-0 one included (default: the "
                      "env's published num_evals); ours evaluate about as often")
  parser.add_argument("--out", default=None,
                      help="output folder (default bench_results/learning-<env>); rerunning "
                      "into it resumes")
  parser.add_argument("--overwrite", action="store_true",
                      help="discard OUT's runs and outputs and start the plan afresh")
  return parser


def _fail(message: str) -> int:
  print(f"spo-learning-bench: {message}", file=sys.stderr)
  return 2


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ["--run-one"]:
    private = _Parser(prog="spo-learning-bench --run-one")
    private.add_argument("--run-one", required=True, choices=CONTENDERS)
    private.add_argument("--seed", type=int, required=True)
    private.add_argument("--out", required=True)
    args = private.parse_args(argv)
    run_one(Path(args.out), args.run_one, args.seed)
    return 0

  args = build_parser().parse_args(argv)
  try:
    plan = make_plan(args.env, args.backend, args.budget, args.seeds, args.contenders,
                     args.num_evals)
  except BenchError as error:
    return _fail(str(error))
  out = Path(args.out or f"bench_results/learning-{plan['env']}")
  plan.update(machine=describe_machine(), versions=versions())
  try:
    prepare_out(out, plan, args.overwrite)
  except BenchError as error:
    return _fail(str(error))

  brax = plan["settings"].get("brax_ppo")
  if brax and brax["env_steps_run"] > plan["budget"]:
    epoch = brax_total_steps(1, plan["num_evals"],
                             brax_steps_per_training_step(brax["ppo_train_kwargs"]))
    print(f"note: Brax PPO runs whole epochs of training steps: {brax['env_steps_run']:,d} env "
          f"steps for the budget of {plan['budget']:,d} (the table compares at equal env "
          f"steps; a budget that is a multiple of {epoch:,d} runs exactly)", flush=True)
  runs = load_runs(out, plan)
  order = run_order(plan["seeds"], plan["contenders"])
  failed = []
  try:
    run_all(out, plan, runs, order, failed)
  except KeyboardInterrupt:
    write_outputs(out, plan, runs)
    print("spo-learning-bench: interrupted; finished runs are saved in "
          f"{out}/runs: rerun the same command to do the rest", file=sys.stderr)
    return 130
  summary = write_outputs(out, plan, runs)
  print("\n" + summary["markdown"])
  print(f"files: {out}/curves.csv, summary.csv, summary.md, curves.png, runs/, logs/")
  if failed:
    print(f"spo-learning-bench: {len(failed)} run(s) failed ({', '.join(failed)}); see "
          f"{out}/logs; rerun the same command to retry them", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
