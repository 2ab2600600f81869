"""Running the plan: OUT's plan.json checked on a resume (`prepare_out`), each unfinished
(seed, contender) trained in its own process in a rotating order (`run_order`, `run_all`),
and the child's side, one run (`run_one`).

Files are written with checkpoint.write_text_atomic: a reader or a kill never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

import spo_jax
import spo_jax.checkpoint
from spo_jax import brax_ppo
from spo_jax.checkpoint import write_text_atomic
from spo_jax.learning_bench.plans import BenchError
from spo_jax.learning_bench.report import write_outputs


def run_path(out: Path, contender: str, seed: int) -> Path:
  return out / "runs" / f"{contender}-seed{seed}.json"


def load_runs(out: Path, plan: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
  """Finished runs of the plan, by (contender, seed)."""
  runs = {}
  for seed in plan["seeds"]:
    for name in plan["contenders"]:
      path = run_path(out, name, seed)
      if path.is_file():
        try:
          runs[(name, seed)] = json.loads(path.read_text())
        except ValueError:  # not ours (atomic writes leave no half file): run it again
          continue
  return runs


def run_order(seeds: Sequence[int], contenders: Sequence[str]) -> list[tuple[int, str]]:
  """Seed after seed; the i-th seed starts at contender i mod C and wraps around (A B C,
  B C A, C A B, ...), so each contender runs first, second, ... equally often."""
  order = []
  for i, seed in enumerate(seeds):
    shift = i % len(contenders)
    order += [(seed, name) for name in (*contenders[shift:], *contenders[:shift])]
  return order


def run_one(out: Path, contender: str, seed: int) -> dict[str, Any]:
  """Train `contender` for `seed` as OUT/plan.json says; save OUT/runs/<contender>-seed<k>.json.

  The clock starts just before the trainer is called, imports done: it counts env
  construction, compilation, training and evaluations.
  """
  # Every run compiles from scratch: a persistent cache (JAX_COMPILATION_CACHE_DIR) filled by
  # an earlier run would hand the later ones their compilation for free.
  jax.config.update("jax_enable_compilation_cache", False)
  plan = json.loads((out / "plan.json").read_text())
  settings = plan["settings"][contender]
  if contender == "brax_ppo":
    kwargs = dict(settings["ppo_train_kwargs"])
    hidden = settings["hidden_sizes"]
    start = time.perf_counter()
    result = brax_ppo.train(plan["env"], kwargs.pop("num_envs"), plan["budget"], seed=seed,
                            num_evals=plan["num_evals"], backend=plan["backend"],
                            hidden_sizes=None if hidden is None else tuple(hidden),
                            settings=kwargs, start=start)
    curve, wall, env_steps = result["curve"], result["wall_s"], result["env_steps"]
    physics_steps = env_steps  # auto-reset rollouts: every executed step is a training step
  else:
    config = spo_jax.Config.from_dict({**settings["config"], "seed": seed})
    curve = []
    start = time.perf_counter()
    progress = lambda step, m: curve.append(
        (int(step), float(m["eval/episode_reward"]), time.perf_counter() - start))
    result = spo_jax.train(config, progress_fn=progress)
    wall = time.perf_counter() - start
    env_steps = int(result.metrics["step"])
    physics_steps = int(result.metrics["train/physics_steps_total"])
  record = {"contender": contender, "seed": seed, "env": plan["env"], "backend": plan["backend"],
            "budget": plan["budget"], "wall_s": wall, "env_steps": env_steps,
            "physics_steps": physics_steps,
            "curve": [{"env_steps": s, "eval_return": r, "wall_s": t} for s, r, t in curve],
            "device": str(jax.devices()[0].device_kind), "commit": _git_commit(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  path = run_path(out, contender, seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  write_text_atomic(path, json.dumps(record, indent=1))
  return record


def _git_commit() -> str | None:
  """The package checkout's commit (+ '-dirty' with uncommitted changes), for the record; None
  outside a git checkout. Not part of the plan: a commit elsewhere in the repository must not
  stop a resume."""
  here = Path(__file__).resolve().parent
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return head + ("-dirty" if dirty else "")


def _first_difference(saved: Any, current: Any, path: str = "") -> str | None:
  """Dotted path of the first field where two JSON values differ (None if equal)."""
  if isinstance(saved, dict) and isinstance(current, dict):
    for key in sorted(set(saved) | set(current)):
      diff = _first_difference(saved.get(key), current.get(key), f"{path}.{key}" if path else key)
      if diff is not None:
        return diff
    return None
  return None if saved == current else (path or "(plan)")


def _lookup(tree: Any, path: str) -> Any:
  for key in path.split("."):
    tree = tree.get(key) if isinstance(tree, dict) else None
  return tree


def prepare_out(out: Path, plan: dict[str, Any], overwrite: bool) -> None:
  """Create OUT with plan.json, or check that OUT's plan is this one (raises BenchError)."""
  plan_file = out / "plan.json"
  if out.exists() and not out.is_dir():
    raise BenchError(f"--out '{out}' is a file; choose a folder")
  if out.is_dir() and any(out.iterdir()) and not plan_file.is_file():
    raise BenchError(f"--out '{out}' holds files but no plan.json, so it is not a learning "
                     "benchmark's folder; choose a new --out")
  if plan_file.is_file() and overwrite:
    aside = out.with_name(f".{out.name}.deleting-{os.getpid()}")
    os.replace(out, aside)  # one atomic step: a kill leaves no half-deleted benchmark
    shutil.rmtree(aside)
  elif plan_file.is_file():
    saved = json.loads(plan_file.read_text())
    current = json.loads(json.dumps(plan))
    field = _first_difference(saved, current)
    if field is not None:
      raise BenchError(
          f"'{out}' holds runs of another plan ({field}: saved {_lookup(saved, field)!r}, now "
          f"{_lookup(current, field)!r}); use a new --out, or --overwrite to discard them")
    return
  out.mkdir(parents=True, exist_ok=True)
  write_text_atomic(plan_file, json.dumps(plan, indent=1))


def _run_subprocess(out: Path, name: str, seed: int) -> int:
  log = out / "logs" / f"{name}-seed{seed}.log"
  log.parent.mkdir(parents=True, exist_ok=True)
  with open(log, "w") as file:
    return subprocess.run([sys.executable, "-m", "spo_jax.learning_bench", "--run-one", name,
                           "--seed", str(seed), "--out", str(out)],
                          stdout=file, stderr=subprocess.STDOUT, check=False).returncode


def _last_line(path: Path) -> str:
  try:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
  except OSError:
    return ""
  return lines[-1] if lines else ""


def run_all(out: Path, plan: dict[str, Any], runs: dict[tuple[str, int], dict[str, Any]],
             order: list[tuple[int, str]], failed: list[str]) -> None:
  """Run every unfinished (seed, contender) of `order` in its own process; after each, add it
  to `runs` and rewrite the outputs. Failures are appended to `failed`."""
  for i, (seed, name) in enumerate(order, 1):
    tag = f"[{i}/{len(order)}] {name} seed {seed}"
    if (name, seed) in runs:
      print(f"{tag}: done already ({run_path(out, name, seed)})", flush=True)
      continue
    print(f"{tag}: running ...", flush=True)
    rc = _run_subprocess(out, name, seed)
    path = run_path(out, name, seed)
    if rc != 0 or not path.is_file():
      log = out / "logs" / f"{name}-seed{seed}.log"
      failed.append(f"{name} seed {seed}")
      print(f"{tag}: FAILED (exit {rc}; {log}): {_last_line(log)}", flush=True)
      continue
    runs[(name, seed)] = json.loads(path.read_text())
    run = runs[(name, seed)]
    final = run["curve"][-1]["eval_return"] if run["curve"] else float("nan")
    print(f"{tag}: {run['wall_s']:.1f} s, {run['env_steps']:,d} env steps, final return "
          f"{final:.1f}", flush=True)
    write_outputs(out, plan, runs)
