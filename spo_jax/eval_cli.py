"""`spo-eval`: evaluate a saved policy, compare it with another, save an episode to watch.

  spo-eval RUN_DIR [--episodes 16] [--step N] [--seed-index i] [--stochastic] [--seed 0]
           [--against OTHER_RUN [--against-step M] [--against-seed-index j]] [--teacher EXPR]
           [--save-rollout out.html] [--video out.mp4|out.gif [--video-steps N]]
           [--json out.json] [--env-class MODULE:CLASS]
           [--exploitability {first,last,mixture} [--br-iterations 50] [--br-warm-start]]

Prints what trained the policy (provenance.json: spo_jax version and git commit, dirty flag,
library versions, devices; spo_jax/provenance.py) and the ground-truth return (mean, std,
min, max over `--episodes` episodes from reset,
at most the run's evaluation horizon: `eval_episode_length`, or `episode_length` when that is 0)
and the episode length (mean, std). With
`--against`, also the teacher's win rate of this policy against the other one
(`evaluate.head_to_head`: the same reset states for both, every episode of A compared with
every episode of B; 1/2 = as good as each other), the teacher being the run's own (its config)
or `--teacher EXPR` with the run's teacher parameters.

`--exploitability first|last|mixture` trains a best response (`best_response.exploitability`: a
fresh PPO policy with the run's config, rewarded by the teacher's preference of its trajectory
over a fresh one of the frozen policy) for `--br-iterations` iterations against the run's last
iterate, its oldest kept checkpoint (a near-untrained policy: the measure's starting value) or
the uniform mixture of its kept checkpoints (one drawn per episode), and reports
the final mean preference minus 1/2 over `--episodes` pairs (at least 2) with its 95%
interval, beside the same measure for the responder before training (the starting value).
With `--br-warm-start` the responder starts as a copy of the run's last iterate instead of
from scratch: needed for teachers with hard answers (majorities, thresholds), which give a
responder from scratch the same reward on every trajectory. The judge is the run's teacher,
or `--teacher EXPR`.

`--save-rollout PATH` writes one episode: for a Brax env, Brax's HTML viewer
(`brax.io.html.render`), which loads three.js and the viewer from unpkg.com and
cdn.jsdelivr.net when opened, so it needs network access; for the package's pure-JAX envs
(no physics system to draw), a JSON (or .npz) of observations, actions and rewards instead.
`--video PATH` (.mp4 or .gif) renders one episode of the policy to a video offline, with no
display and no network (spo_jax/video.py): MuJoCo's renderer for Brax envs, a matplotlib
drawing for the package's pure-JAX envs and gymnax's; `--video-steps N` stops it after N
steps (default: the whole episode, up to the evaluation horizon).
A run trained on the user's own env object (`train(config, env=MyEnv())`; its policy.json
names the class) needs `--env-class MODULE:CLASS`: the class is imported and built with no
arguments, and its sizes checked against the policy's (it may also replace the env of a
registry run of the same sizes). Without it such a run is refused in one line.

Bad input exits with code 2 and one line, before anything is compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax

from spo_jax import provenance, saved_policy
from spo_jax import teachers as teachers_lib
from spo_jax.best_response import TARGETS
from spo_jax.checkpoint import (
    complete_steps,
    find_checkpoint_dir,
    read_run_config,
    refuse_damaged_step,
)
from spo_jax.config import Config, ConfigError
from spo_jax.envs import canonical_env_name, from_class_path

# The measurements live in eval_measures.py; `evaluate_returns` and `save_rollout` are
# re-exported here, where they used to live.
from spo_jax.eval_measures import (  # noqa: F401  (re-exported)
    duel_fields,
    evaluate_returns,
    exploitability_fields,
    save_rollout,
)
from spo_jax.video import check_video_path, save_video


class SavedRun(NamedTuple):
  run_dir: Path
  config: Config
  step: int  # the checkpoint's training iteration
  seed_index: int


def locate(path: str | Path, step: int | None, seed_index: int) -> SavedRun:
  """Check a run directory (or its checkpoints/ folder), the step and the seed index; reads
  only JSON and checkpoint bytes, compiles nothing.

  Which checkpoints exist is `checkpoint.complete_steps`'s answer (the one place that knows:
  an unfinished or partly deleted folder is not one). Without `--step`, the newest whose files
  match its manifest; each newer damaged one is named on stderr in one line. An explicit
  `--step` that is damaged is refused.
  """
  checkpoint_dir = find_checkpoint_dir(path)
  run_dir = checkpoint_dir.parent
  config = read_run_config(run_dir)
  steps = complete_steps(checkpoint_dir)
  if not steps:
    raise ConfigError(f"'{run_dir}' holds no complete checkpoint yet")
  if step is not None and step not in steps:
    raise ConfigError(f"no checkpoint of iteration {step} in '{run_dir}'; saved: "
                      + ", ".join(map(str, steps)))
  if not 0 <= seed_index < config.num_seeds:
    raise ConfigError(f"--seed-index {seed_index} is out of range: '{run_dir}' trained "
                      f"{config.num_seeds} seed(s), use 0..{config.num_seeds - 1}")
  skipped: list[tuple[int, str]] = []
  verified = complete_steps(checkpoint_dir, verify=True, skipped=skipped)
  if step is not None:
    refuse_damaged_step(step, skipped, verified, run_dir)
    return SavedRun(run_dir, config, step, seed_index)
  if not verified:
    details = "; ".join(f"{s}: {why}" for s, why in skipped)
    raise ConfigError(f"no usable checkpoint in '{run_dir}' ({details}); restore the "
                      "checkpoints from a backup")
  for bad, why in skipped:
    if bad > verified[-1]:
      print(f"spo-eval: skipped checkpoint {bad} in '{run_dir}' ({why}); using checkpoint "
            f"{verified[-1]}", file=sys.stderr, flush=True)
  return SavedRun(run_dir, config, verified[-1], seed_index)


def _env_fix(user_env_class: str | None) -> str:
  """How to give spo-eval the user's env a run names (the end of `check_env`'s line)."""
  module = (user_env_class or "").partition(":")[0]
  if module and module != "__main__":
    return (f"pass --env-class {user_env_class} (its module importable, the class built with "
            "no arguments), or evaluate it in Python: spo_jax.load_policy(run_dir, env=...)")
  return ("define the class in an importable module and pass --env-class MODULE:CLASS, or "
          "evaluate it in Python: spo_jax.load_policy(run_dir, env=...)")


def check_env(saved: SavedRun, env) -> None:
  """Before anything is read from the checkpoint: a run on a user's own env needs
  `--env-class`, and a given env must fit the policy (`saved_policy.check_env_fits`)."""
  spec = saved_policy.read_spec(saved.run_dir)
  if spec is not None:
    saved_policy.check_env_fits(spec, env, saved.run_dir, _env_fix(spec.user_env_class))


def restore(saved: SavedRun, env=None):
  """The chosen seed's policy of a located run (`saved_policy.LoadedPolicy`): from its
  policy.json without building training (no teacher built, no labels file read), or, for a
  run from before policy.json, by building the saved config; a checkpoint Orbax cannot read
  raises `CheckpointError` (one line). `env`: the env to act in (`--env-class`) instead of
  the one the config names."""
  return saved_policy.load(saved.run_dir, saved.config, saved.step, saved.seed_index, env=env,
                           fix=_env_fix(None))


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
  """Every check first (paths, steps, seed indices, env compatibility, teacher name), then
  build, restore and evaluate."""
  saved, other, env = _check_request(args)
  setup = restore(saved, env)
  k_eval, k_duel, k_show = jax.random.split(jax.random.PRNGKey(args.seed), 3)
  deterministic = not args.stochastic
  result: dict[str, Any] = {"run": str(saved.run_dir), "env": saved.config.env,
                            "step": saved.step, "seed_index": saved.seed_index,
                            "episodes": args.episodes, "deterministic": deterministic}
  result.update(_provenance(saved.run_dir))
  result.update(evaluate_returns(setup, setup.params, args.episodes, k_eval, deterministic))
  if other is not None:
    result.update(duel_fields(saved, setup, other, restore(other, env), args.teacher,
                              args.episodes, k_duel, deterministic))
  if args.exploitability is not None:
    result.update(exploitability_fields(
        saved, setup, env, target=args.exploitability, expression=args.teacher,
        seed=args.seed, iterations=args.br_iterations, episodes=args.episodes,
        warm_start=args.br_warm_start,
        stochastic=args.stochastic))
  result.update(_save_episode(args, setup, k_show, deterministic))
  return result


def _check_request(args: argparse.Namespace) -> tuple[SavedRun, SavedRun | None, Any]:
  """Every check of the command line that needs no compiling, in the order bad input is
  reported: counts, the run (and --against's, of the same env), --teacher, the output paths,
  --env-class and its fit to both runs. Returns (run, other run or None, env or None)."""
  if args.episodes < 1:
    raise ConfigError(f"--episodes {args.episodes} must be at least 1")
  if args.exploitability is not None and (args.br_iterations < 1 or args.episodes < 2):
    raise ConfigError(f"--exploitability needs --br-iterations >= 1 (got {args.br_iterations}) "
                      f"and --episodes >= 2 (got {args.episodes})")
  saved = locate(args.run, args.step, args.seed_index)
  other = None
  if args.against is not None:
    other = locate(args.against, args.against_step, args.against_seed_index)

    if canonical_env_name(other.config.env) != canonical_env_name(saved.config.env):
      raise ConfigError(f"cannot compare: '{saved.run_dir}' trained on {saved.config.env} and "
                        f"'{other.run_dir}' on {other.config.env}; --against needs a run of "
                        "the same environment")
  if args.teacher is not None:
    teachers_lib.check_teacher_name(args.teacher)
  if args.save_rollout is not None and Path(args.save_rollout).is_dir():
    raise ConfigError(f"--save-rollout '{args.save_rollout}' is a directory; give a file path")
  if args.video is not None:
    check_video_path(args.video)
  if args.video_steps is not None and args.video_steps < 1:
    raise ConfigError(f"--video-steps {args.video_steps} must be at least 1")
  env = None
  if args.env_class is not None:
    env = from_class_path(args.env_class)
  for run in (saved, other):
    if run is not None:
      check_env(run, env)
  return saved, other, env


def _save_episode(args: argparse.Namespace, setup, key, deterministic: bool
                  ) -> dict[str, str]:
  """--save-rollout and --video: one episode each (from the same key), as result notes."""
  notes = {}
  if args.save_rollout is not None:
    notes["rollout_note"] = save_rollout(setup, setup.params, Path(args.save_rollout), key,
                                         deterministic)
  if args.video is not None:
    notes["video_note"] = save_video(setup, setup.params, Path(args.video), key, deterministic,
                                     args.video_steps)
  return notes


def _provenance(run_dir: Path) -> dict[str, Any]:
  """{"provenance": the run's record (None: none recorded)}, or {"provenance_error": why}:
  a damaged provenance.json is reported, never a reason not to evaluate."""
  try:
    return {"provenance": provenance.read(run_dir)}
  except (OSError, ValueError) as error:
    return {"provenance_error": str(error)}


def _report(r: dict[str, Any]) -> str:
  lines = [f"{r['run']} (iteration {r['step']}, seed index {r['seed_index']}, "
           f"{'deterministic' if r['deterministic'] else 'stochastic'} policy, {r['env']}):",
           f"  return {r['return_mean']:.2f} ± {r['return_std']:.2f} (min {r['return_min']:.2f}, "
           f"max {r['return_max']:.2f}) over {r['episodes']} episodes; "
           f"episode length {r['length_mean']:.1f} ± {r['length_std']:.1f}"]
  if "win_rate" in r:
    lines.append(f"  win rate against {r['against']} (iteration {r['against_step']}): "
                 f"{r['win_rate']:.3f} ± {r['win_rate_stderr']:.3f} (teacher {r['teacher']}, "
                 f"{r['num_labels']} labelled pairs; returns from the same reset states: "
                 f"{r['duel_return_mean']:.2f} vs {r['against_return_mean']:.2f})")
  if "exploitability" in r:
    e = r["exploitability"]
    target = {"first": "oldest kept iterate"}.get(e["target"], e["target"])
    lines.append(f"  exploitability of the {target} ({e['num_iterates']} iterate(s)) by a "
                 f"best response of {e['iterations']} iterations (teacher {e['teacher']}): "
                 f"{e['estimate']:.3f} [{e['interval'][0]:.3f}, {e['interval'][1]:.3f}]; "
                 f"{'the copy' if e.get('warm_start') else 'the untrained responder'} before "
                 f"training {e['start']:.3f} [{e['start_interval'][0]:.3f}, "
                 f"{e['start_interval'][1]:.3f}]")
  for note in ("rollout_note", "video_note"):
    if note in r:
      lines.append(f"  {r[note]}")
  if "provenance_error" in r:
    lines.append(f"  provenance: unreadable ({r['provenance_error']})")
  else:
    lines.extend(f"  {line}" for line in provenance.summary(r.get("provenance")))
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  parser = argparse.ArgumentParser(
      prog="spo-eval", description="Evaluate a saved spo_jax policy: ground-truth return and "
      "episode length; with --against, the teacher's win rate against another saved policy.")
  parser.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT",
                      help="a run directory written by spo-train, or its checkpoints/ folder")
  parser.add_argument("--episodes", type=int, default=16, help="episodes (default 16)")
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint iteration (default: the latest)")
  parser.add_argument("--seed-index", type=int, default=0,
                      help="which seed of a --num-seeds run (default 0)")
  parser.add_argument("--stochastic", action="store_true",
                      help="sample actions instead of the deterministic tanh(mean)")
  parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the evaluation")
  parser.add_argument("--against", default=None, metavar="OTHER_RUN",
                      help="another run of the same env: report this policy's win rate")
  parser.add_argument("--against-step", type=int, default=None)
  parser.add_argument("--against-seed-index", type=int, default=0)
  parser.add_argument("--teacher", default=None, metavar="EXPR",
                      help="teacher for --against (default: the run's), e.g. bradley_terry")
  parser.add_argument("--save-rollout", default=None, metavar="PATH",
                      help="write one episode: HTML viewer (Brax envs) or JSON/.npz")
  parser.add_argument("--video", default=None, metavar="PATH",
                      help="render one episode to a video (.mp4 or .gif), offline and headless")
  parser.add_argument("--video-steps", type=int, default=None, metavar="N",
                      help="stop the video after N steps (default: the whole episode)")
  parser.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
  parser.add_argument("--env-class", default=None, metavar="MODULE:CLASS",
                      help="the env to act in, built as CLASS() after importing MODULE: needed "
                      "for a run trained on your own env (its policy.json names the class)")
  parser.add_argument("--exploitability", choices=TARGETS, default=None,
                      help="train a best response against the last iterate, the oldest kept "
                      "checkpoint or the uniform mixture of the kept checkpoints; report its "
                      "preference minus 1/2")
  parser.add_argument("--br-iterations", type=int, default=50,
                      help="PPO iterations of the best response (default 50)")
  parser.add_argument("--br-warm-start", action="store_true",
                      help="start the best response from the run's last iterate, not from "
                      "scratch (for teachers with hard 0/1 answers)")
  args = parser.parse_args(argv)
  try:
    result = run_eval(args)
  except ConfigError as error:
    print(f"spo-eval: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
  print(_report(result), flush=True)
  if args.json is not None:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  main()
