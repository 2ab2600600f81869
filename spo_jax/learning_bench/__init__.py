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
import csv
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from spo_jax.checkpoint import write_text_atomic

CONTENDERS = ("brax_ppo", "ground_truth", "spo")
OURS = ("ground_truth", "spo")
# Fixed colours, so that a contender looks the same in every figure.
COLOURS = {"brax_ppo": "tab:blue", "ground_truth": "tab:orange", "spo": "tab:green"}
# Table columns: the return at these fractions of the budget, interpolated.
GRID_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
PLOT_POINTS = 101


class BenchError(ValueError):
  """Bad benchmark arguments: one line naming the problem and the fix."""


# -------------------------------------------------------------------------------------
# Brax PPO's settings per env
# -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BraxPPOSettings:
  """Brax PPO's settings for one env, as published for `num_envs` parallel envs (Brax's
  training notebook). Field names are `brax.training.agents.ppo.train`'s arguments."""

  num_evals: int
  reward_scaling: float
  episode_length: int
  normalize_observations: bool
  action_repeat: int
  unroll_length: int
  num_minibatches: int
  num_updates_per_batch: int
  discounting: float
  learning_rate: float
  entropy_cost: float
  num_envs: int
  """Parallel envs the settings were published for (replaced by our N)."""
  batch_size: int
  """Published batch size (scaled to our N: `scaled_batch_size`)."""
  source: str
  """Where the numbers come from."""
  hidden_sizes: tuple[int, ...] | None = None
  """Hidden layers of both networks; None: Brax's default networks."""


_ANT = dict(num_evals=10, reward_scaling=10.0, episode_length=1000, normalize_observations=True,
            action_repeat=1, unroll_length=5, num_minibatches=32, num_updates_per_batch=4,
            discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, num_envs=4096,
            batch_size=2048)

SETTINGS: dict[str, BraxPPOSettings] = {
    "halfcheetah": BraxPPOSettings(
        num_evals=20, reward_scaling=1.0, episode_length=1000, normalize_observations=True,
        action_repeat=1, unroll_length=20, num_minibatches=32, num_updates_per_batch=8,
        discounting=0.95, learning_rate=3e-4, entropy_cost=1e-3, num_envs=2048, batch_size=512,
        source="Brax training notebook, PPO on halfcheetah"),
    "ant": BraxPPOSettings(**_ANT, source="Brax training notebook, PPO on ant"),
    "hopper": BraxPPOSettings(
        **_ANT, source="Brax publishes SAC, not PPO, for hopper: its published PPO settings for "
        "ant, a locomotion task with early termination (Brax training notebook)"),
    "walker2d": BraxPPOSettings(
        **_ANT, source="Brax publishes SAC, not PPO, for walker2d: its published PPO settings "
        "for ant, a locomotion task with early termination (Brax training notebook)"),
    "inverted_pendulum": BraxPPOSettings(
        num_evals=20, reward_scaling=10.0, episode_length=1000, normalize_observations=True,
        action_repeat=1, unroll_length=5, num_minibatches=32, num_updates_per_batch=4,
        discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, num_envs=2048,
        batch_size=1024, source="Brax training notebook, PPO on inverted_pendulum (as in "
        "spo_jax/brax_ppo.py)"),
    # Not published: Brax-PPO-like settings sized for a run of seconds on the package's tiny
    # env (episodes of 32 steps, one training step = 32 x 4 x 8 = 1024 env steps at N = 64),
    # with the preset's (32, 32) networks, so that tests can run the whole pipeline.
    "point_reach": BraxPPOSettings(
        num_evals=4, reward_scaling=1.0, episode_length=32, normalize_observations=True,
        action_repeat=1, unroll_length=8, num_minibatches=4, num_updates_per_batch=2,
        discounting=0.97, learning_rate=3e-3, entropy_cost=1e-3, num_envs=64, batch_size=32,
        source="not published: Brax-PPO-like settings for a run of seconds on the package's "
        "tiny env (spo_jax/learning_bench.py)", hidden_sizes=(32, 32)),
}


def scaled_batch_size(published_batch_size: int, published_num_envs: int, num_envs: int,
                      num_minibatches: int) -> int:
  """Brax's batch size for `num_envs` parallel envs instead of the published ones.

  b = round(published_batch_size x num_envs / published_num_envs), at least 1, then raised to
  the next multiple of q = num_envs / gcd(num_envs, num_minibatches): a Brax training step
  takes batch_size x num_minibatches unrolls from whole sweeps of all num_envs envs, so it
  asserts batch_size x num_minibatches % num_envs == 0, which holds exactly when q divides b.
  E.g. halfcheetah (512 of 2048 envs, 32 minibatches) at N = 256: 512 x 256 / 2048 = 64, and
  64 x 32 = 2048 = 8 x 256 already; at N = 6: 1.5 rounds to 2, q = 6 / gcd(6, 32) = 3, so 3.
  """
  # round half up in integers: floor((2 b N + E) / (2 E)) = floor(b N / E + 1/2)
  b = max(1, (2 * published_batch_size * num_envs + published_num_envs)
          // (2 * published_num_envs))
  q = num_envs // math.gcd(num_envs, num_minibatches)
  return -(-b // q) * q


def brax_kwargs(settings: BraxPPOSettings, num_envs: int) -> dict[str, Any]:
  """`ppo.train` keyword arguments (budget, seed and num_evals aside) at `num_envs` envs."""
  kwargs = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if f.name not in ("source", "hidden_sizes", "num_evals")}
  kwargs.update(num_envs=num_envs, batch_size=scaled_batch_size(
      settings.batch_size, settings.num_envs, num_envs, settings.num_minibatches))
  return kwargs


def brax_evaluation(num_episodes: int) -> dict[str, Any]:
  """Brax's evaluation made ours: `num_episodes` episodes of the deterministic policy (Brax's
  defaults, 128 episodes of the stochastic policy, would cost 8x our evaluation's physics at
  16 episodes, all of it on Brax PPO's clock, and score a different policy)."""
  return {"num_eval_envs": num_episodes, "deterministic_eval": True}


def brax_steps_per_training_step(kwargs: dict[str, Any]) -> int:
  """Env steps of one Brax training step: batch_size x num_minibatches x unroll_length x
  action_repeat (Brax's `env_step_per_training_step`)."""
  return (kwargs["batch_size"] * kwargs["num_minibatches"] * kwargs["unroll_length"]
          * kwargs["action_repeat"])


def brax_total_steps(budget: int, num_evals: int, step: int) -> int:
  """Env steps Brax PPO runs for `budget`: num_evals - 1 epochs (at least 1) of
  ceil(budget / (epochs x step)) training steps each (Brax's `num_training_steps_per_epoch`),
  so at least the budget and up to one epoch more."""
  epochs = max(num_evals - 1, 1)
  return epochs * -(-budget // (epochs * step)) * step


# -------------------------------------------------------------------------------------
# Arguments and the plan
# -------------------------------------------------------------------------------------

def parse_contenders(text: str, backend: str | None) -> list[tuple[str, str | None]]:
  """'brax_ppo@positional,ground_truth,spo' -> [(name, backend or the --backend default)]."""
  items = [t.strip() for t in text.split(",") if t.strip()]
  if not items:
    raise BenchError(f"--contenders '{text}' names no contender; valid: {','.join(CONTENDERS)}")
  out = []
  for item in items:
    name, _, suffix = item.partition("@")
    if name not in CONTENDERS:
      raise BenchError(f"unknown contender '{name}' in --contenders '{text}'; valid: "
                       f"{','.join(CONTENDERS)} (each optionally @<backend>)")
    if "@" in item and not suffix:
      raise BenchError(f"contender '{item}' has an empty backend after '@'; write e.g. "
                       f"{name}@positional, or drop the '@'")
    out.append((name, suffix or backend))
  names = [n for n, _ in out]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise BenchError(f"contender '{repeated[0]}' is listed twice in --contenders '{text}'; "
                     "list each once")
  return out


def parse_seeds(text: str) -> list[int]:
  items = [t.strip() for t in text.split(",")]
  if not text.strip() or not all(t.isdigit() for t in items):
    raise BenchError(f"--seeds '{text}' must be comma-separated non-negative integers, e.g. "
                     "0,1,2")
  seeds = [int(t) for t in items]
  if len(set(seeds)) != len(seeds):
    raise BenchError(f"--seeds '{text}' repeats a seed; list each seed once")
  if max(seeds) > 2**31 - 1:
    raise BenchError(f"--seeds '{text}': seeds must be at most {2**31 - 1}")
  return seeds


def _default_backend(env: str) -> str | None:
  """The backend every contender runs on when none is given: the preset's (the one its
  settings were tuned on), else the one `brax.envs.get_environment(env)` uses (read from the
  env class's signature; nothing is built). None for the package's own envs."""
  from spo_jax import envs as envs_lib

  if env in envs_lib.PACKAGE_ENVS:
    return None
  from spo_jax.config import preset

  if preset(env).backend is not None:  # the backend the preset was tuned on
    return preset(env).backend
  import inspect

  from spo_jax._quiet import quiet_imports

  with quiet_imports():
    from brax import envs as brax_envs
  env_class = getattr(brax_envs, "_envs", {}).get(env)
  parameter = (inspect.signature(env_class.__init__).parameters.get("backend")
               if env_class is not None else None)
  return parameter.default if parameter is not None else "generalized"


def resolve_backend(env: str, contenders: list[tuple[str, str | None]]) -> str | None:
  """The one backend every contender runs on (None for the package's envs)."""
  from spo_jax import envs as envs_lib

  for name, backend in contenders:
    if backend is not None and backend not in envs_lib.BRAX_BACKENDS:
      raise BenchError(f"backend '{backend}' of contender {name} is not a Brax backend; use one "
                       f"of {', '.join(envs_lib.BRAX_BACKENDS)}")
  if env in envs_lib.PACKAGE_ENVS:
    given = [f"{n}@{b}" for n, b in contenders if b is not None]
    if given:
      raise BenchError(f"'{env}' is one of the package's pure-JAX envs and has no Brax physics "
                       f"backend, but {', '.join(given)} asks for one; drop --backend and the "
                       "@<backend> suffixes")
    return None
  default = _default_backend(env)
  resolved = {name: backend or default for name, backend in contenders}
  if len(set(resolved.values())) > 1:
    pairs = ", ".join(f"{n}@{b}" for n, b in resolved.items())
    raise BenchError(f"contenders run on different backends ({pairs}); a side-by-side "
                     "benchmark needs one: give every contender the same backend (--backend, or "
                     "equal @<backend> suffixes)")
  return next(iter(resolved.values()))


def our_config(env: str, reward_source: str, backend: str | None, budget: int,
               num_evals: int):
  """`preset(env)` for `reward_source`, sized to the budget, evaluated `num_evals` times as
  Brax does: each time the env steps pass a multiple of budget / num_evals (so early
  terminations, which make iterations short, do not multiply the evaluations), and at the end.
  """
  from spo_jax.config import preset

  config = preset(env)
  return config.replace(reward_source=reward_source, backend=backend, num_timesteps=budget,
                        eval_every_steps=max(1, budget // num_evals), target_return=None,
                        num_seeds=1)


def make_plan(env: str, backend_flag: str | None, budget: int, seeds_text: str,
              contenders_text: str, num_evals: int | None) -> dict[str, Any]:
  """Check every argument and resolve every contender's settings; nothing is built or compiled.

  Raises `BenchError` (one line: the problem and the fix). The plan holds no machine or
  versions yet (`describe_machine`), so that it can be checked without starting JAX.
  """
  from spo_jax import brax_ppo
  from spo_jax.config import ConfigError, preset, validate
  from spo_jax.envs import known_env_names

  seeds = parse_seeds(seeds_text)
  contenders = parse_contenders(contenders_text, backend_flag)
  names = [n for n, _ in contenders]
  if env not in known_env_names():
    raise BenchError(f"unknown env '{env}'; envs with learning-bench settings: "
                     f"{', '.join(SETTINGS)}")
  if "brax_ppo" in names:
    reason = brax_ppo.unsupported_reason(env)
    if reason is not None:
      others = ",".join(n for n in names if n != "brax_ppo") or "ground_truth,spo"
      raise BenchError(f"Brax PPO cannot train '{env}': {reason}; drop brax_ppo from --contenders "
                       f"(e.g. --contenders {others}) or pick an env with continuous actions")
  if env not in SETTINGS:
    raise BenchError(f"env '{env}' has no learning-bench settings; envs with some: "
                     f"{', '.join(SETTINGS)} (add an entry to SETTINGS in "
                     "spo_jax/learning_bench.py)")
  backend = resolve_backend(env, contenders)
  table = SETTINGS[env]
  num_evals = table.num_evals if num_evals is None else num_evals
  if isinstance(num_evals, bool) or not isinstance(num_evals, int) or num_evals < 1:
    raise BenchError(f"--num-evals {num_evals} must be an integer >= 1")
  if budget < 1:
    raise BenchError(f"--budget {budget} must be a positive number of env steps")
  base = preset(env)
  n, h = base.num_envs, base.episode_length
  settings: dict[str, Any] = {}
  minimums: list[tuple[int, str]] = []
  for name in names:
    if name == "brax_ppo":
      kwargs = {**brax_kwargs(table, n), **brax_evaluation(base.num_eval_envs)}
      step = brax_steps_per_training_step(kwargs)
      minimums.append((step, f"one Brax PPO training step (batch_size x num_minibatches x "
                             f"unroll_length x action_repeat = {kwargs['batch_size']} x "
                             f"{kwargs['num_minibatches']} x {kwargs['unroll_length']} x "
                             f"{kwargs['action_repeat']} = {step} env steps)"))
      settings[name] = {
          "ppo_train_kwargs": kwargs, "hidden_sizes": table.hidden_sizes,
          "networks": "Brax default" if table.hidden_sizes is None else str(table.hidden_sizes),
          "published_num_envs": table.num_envs, "published_batch_size": table.batch_size,
          "source": table.source, "num_evals": num_evals,
          "env_steps_run": brax_total_steps(budget, num_evals, step),
          "evaluation": f"{kwargs['num_eval_envs']} episodes of {kwargs['episode_length']} "
                        "steps, deterministic policy (as ours)"}
    else:
      config = our_config(env, name, backend, budget, num_evals)
      try:
        validate(config)
      except ConfigError as error:
        raise BenchError(f"{name}: {error}") from None
      config_dict = config.to_dict()
      del config_dict["seed"]  # set per run
      eval_steps = config_dict.get("eval_episode_length") or h  # 0: the training horizon
      settings[name] = {"config": config_dict,
                        "iterations_if_full_episodes": -(-budget // (n * h)),
                        "evaluation": f"{config.num_eval_envs} episodes of {eval_steps} steps, "
                                      "deterministic policy"}
  ours = [name for name in names if name in OURS]
  if ours:
    minimums.append((n * h, f"one iteration of {' and '.join(ours)} (N x H = {n} x {h} = "
                            f"{n * h} env steps)"))
  minimum, what = max(minimums)
  if budget < minimum:
    raise BenchError(f"--budget {budget} is smaller than {what}, so no evaluation would be "
                     f"reached within it; use --budget >= {minimum}")
  return {"env": env, "backend": backend, "budget": budget, "seeds": seeds,
          "contenders": names, "num_evals": num_evals, "num_envs": n, "episode_length": h,
          "settings": settings}


def describe_machine() -> dict[str, Any]:
  """CPU model, cores and the accelerator JAX sees. The accelerator is asked in a short
  subprocess: initialising JAX here would take (on a GPU, most of) the device's memory away
  from the runs."""
  from spo_jax.bench import cpu_model

  cpu = cpu_model()
  probe = ("import json, jax; d = jax.devices(); "
           "print(json.dumps([d[0].platform, d[0].device_kind, len(d)]))")
  proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                        check=False)
  try:
    platform_name, kind, count = json.loads(proc.stdout.strip().splitlines()[-1])
    device = f"{count} x {kind} ({platform_name})"
  except (ValueError, IndexError):
    device = "unknown (jax.devices() failed)"
  return {"cpu": cpu, "cores": os.cpu_count(), "device": device}


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


def versions() -> dict[str, str]:
  def version(name: str) -> str:
    try:
      return metadata.version(name)
    except metadata.PackageNotFoundError:
      return "not installed"

  return {"spo_jax": version("spo_jax"), "jax": version("jax"), "jaxlib": version("jaxlib"),
          "brax": version("brax"), "python": platform.python_version()}


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


# -------------------------------------------------------------------------------------
# Files (written with checkpoint.write_text_atomic: a reader or a kill never sees half a file)
# -------------------------------------------------------------------------------------

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


# -------------------------------------------------------------------------------------
# One run (in its own process)
# -------------------------------------------------------------------------------------

def run_one(out: Path, contender: str, seed: int) -> dict[str, Any]:
  """Train `contender` for `seed` as OUT/plan.json says; save OUT/runs/<contender>-seed<k>.json.

  The clock starts just before the trainer is called, imports done: it counts env
  construction, compilation, training and evaluations.
  """
  import jax

  # Every run compiles from scratch: a persistent cache (JAX_COMPILATION_CACHE_DIR) filled by
  # an earlier run would hand the later ones their compilation for free.
  jax.config.update("jax_enable_compilation_cache", False)
  plan = json.loads((out / "plan.json").read_text())
  settings = plan["settings"][contender]
  if contender == "brax_ppo":
    from spo_jax import brax_ppo

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
    import spo_jax
    import spo_jax.checkpoint  # noqa: F401  (imported by train; not on the clock)

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


# -------------------------------------------------------------------------------------
# Summary
# -------------------------------------------------------------------------------------

def interpolate(xs: Sequence[float], ys: Sequence[float], grid: Sequence[float]) -> np.ndarray:
  """ys(xs) at `grid`, linear between points, NaN outside [xs[0], xs[-1]] (no extrapolation).
  xs: [P] increasing (evaluation env steps or seconds); ys: [P]; returns [G]."""
  xs, ys, grid = (np.asarray(a, dtype=float) for a in (xs, ys, grid))
  if xs.size == 0:
    return np.full(grid.shape, np.nan)
  return np.interp(grid, xs, ys, left=np.nan, right=np.nan)


def _mean(values: Sequence[float | None]) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _ratio(a: float | None, b: float | None, positive_only: bool) -> float | None:
  """a / b; for returns only when both are positive (a ratio of negative returns reads
  backwards, and one across zero means nothing)."""
  if a is None or b is None or b == 0 or (positive_only and (a <= 0 or b <= 0)):
    return None
  return a / b


def summarize(plan: dict[str, Any], runs: dict[tuple[str, int], dict[str, Any]]
              ) -> dict[str, Any]:
  """Per contender: final return (mean and per seed), return at the grid's env steps
  (mean over the seeds; None unless every finished seed's curve covers the point), wall
  time, env steps, env steps/s (whole run; and steady: from the first evaluation after
  training began to the last, compilation excluded); and the ratios between contenders."""
  grid = [round(f * plan["budget"]) for f in GRID_FRACTIONS]
  rows = {}
  for name in plan["contenders"]:
    mine = [runs[(name, s)] for s in plan["seeds"] if (name, s) in runs]
    finals, at_grid, steady = {}, [], []
    for run in mine:
      curve = run["curve"]
      finals[run["seed"]] = curve[-1]["eval_return"] if curve else None
      at_grid.append(interpolate([p["env_steps"] for p in curve],
                                 [p["eval_return"] for p in curve], grid))
      trained = [p for p in curve if p["env_steps"] > 0]
      if len(trained) >= 2 and trained[-1]["wall_s"] > trained[0]["wall_s"]:
        steady.append((trained[-1]["env_steps"] - trained[0]["env_steps"])
                      / (trained[-1]["wall_s"] - trained[0]["wall_s"]))
    grid_means = [None] * len(grid)
    if at_grid:
      stacked = np.stack(at_grid)
      grid_means = [None if np.isnan(col).any() else float(col.mean()) for col in stacked.T]
    rows[name] = {
        "contender": name, "seeds_done": len(mine), "seeds_planned": len(plan["seeds"]),
        "final_return_mean": _mean(list(finals.values())), "final_return_per_seed": finals,
        "return_at_steps": grid_means,  # aligned with `grid`
        "wall_s_mean": _mean([r["wall_s"] for r in mine]),
        "env_steps_mean": _mean([r["env_steps"] for r in mine]),
        "env_steps_per_s_mean": _mean([r["env_steps"] / r["wall_s"] for r in mine]),
        "steady_env_steps_per_s_mean": _mean(steady)}
  for row in rows.values():
    for ref in ("brax_ppo", "ground_truth"):
      other = rows.get(ref)
      row[f"final_return_over_{ref}"] = _ratio(
          row["final_return_mean"], other and other["final_return_mean"], True)
      row[f"wall_s_over_{ref}"] = _ratio(row["wall_s_mean"], other and other["wall_s_mean"],
                                         False)
  ratios = {}
  if "ground_truth" in rows and "brax_ppo" in rows:
    ratios["ground_truth / brax_ppo final return"] = rows["ground_truth"][
        "final_return_over_brax_ppo"]
    ratios["ground_truth / brax_ppo wall time"] = rows["ground_truth"]["wall_s_over_brax_ppo"]
  if "spo" in rows and "ground_truth" in rows:
    ratios["spo / ground_truth final return"] = rows["spo"]["final_return_over_ground_truth"]
  return {"grid": grid, "rows": rows, "ratios": ratios}


def _fmt(x: Any, spec: str = ",.1f") -> str:
  return "–" if x is None else format(x, spec)


def markdown(plan: dict[str, Any], summary: dict[str, Any]) -> str:
  m, v = plan.get("machine", {}), plan.get("versions", {})
  lines = [f"Learning benchmark: {plan['env']}"
           + (f" ({plan['backend']} backend)" if plan["backend"] else "")
           + f", {plan['budget']:,d} env steps per run, N = {plan['num_envs']}, "
           f"seeds {','.join(map(str, plan['seeds']))}; {m.get('cpu', '?')} "
           f"({m.get('cores', '?')} cores), {m.get('device', '?')}; spo_jax "
           f"{v.get('spo_jax', '?')}, jax {v.get('jax', '?')}, brax {v.get('brax', '?')}.", ""]
  at = " | ".join(f"return @ {s:,d}" for s in summary["grid"])
  lines += [f"| contender | seeds | final return (mean) | final return per seed | {at} "
            "| wall (s) | env steps | env steps/s | steady env steps/s |",
            "|---" * (8 + len(summary["grid"])) + "|"]
  for name, row in summary["rows"].items():
    per_seed = ", ".join(f"{_fmt(r)} (s{s})" for s, r in row["final_return_per_seed"].items())
    at = " | ".join(_fmt(x) for x in row["return_at_steps"])
    lines.append(f"| {name} | {row['seeds_done']}/{row['seeds_planned']} "
                 f"| {_fmt(row['final_return_mean'])} | {per_seed or '–'} | {at} "
                 f"| {_fmt(row['wall_s_mean'])} | {_fmt(row['env_steps_mean'], ',.0f')} "
                 f"| {_fmt(row['env_steps_per_s_mean'], ',.0f')} "
                 f"| {_fmt(row['steady_env_steps_per_s_mean'], ',.0f')} |")
  if summary["ratios"]:
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(x, '.2f')} |" for k, x in summary["ratios"].items()]
  lines += ["", "Final return: each seed's last evaluation (at or past the budget). Returns "
            "at equal env steps: linear between evaluations, '–' where a seed's curve does not "
            "reach (no extrapolation). Wall time includes env construction and compilation. "
            "Ratios of returns only when both are positive."]
  lines.append("Evaluation: " + "; ".join(f"{name} {plan['settings'][name]['evaluation']}"
                                           for name in plan["contenders"]) + ".")
  if "brax_ppo" in plan["settings"]:
    b = plan["settings"]["brax_ppo"]
    k = b["ppo_train_kwargs"]
    lines.append(f"brax_ppo: {b['source']}; num_envs {k['num_envs']} (published "
                 f"{b['published_num_envs']}), batch_size {k['batch_size']} (published "
                 f"{b['published_batch_size']}), {b['networks']} networks, "
                 f"{b['env_steps_run']:,d} env steps run for the budget.")
  return "\n".join(lines) + "\n"


def write_outputs(out: Path, plan: dict[str, Any],
                  runs: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
  """curves.csv, summary.csv, summary.md and curves.png from the finished runs."""
  summary = summarize(plan, runs)
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["contender", "seed", "env_steps", "wall_s", "eval_return"])
  for (name, seed), run in runs.items():
    for p in run["curve"]:
      writer.writerow([name, seed, p["env_steps"], f"{p['wall_s']:.3f}", p["eval_return"]])
  write_text_atomic(out / "curves.csv", buffer.getvalue())

  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  seed_cols = [f"final_return_seed{s}" for s in plan["seeds"]]
  grid_cols = [f"return_at_{s}" for s in summary["grid"]]
  scalar_cols = ["wall_s_mean", "env_steps_mean", "env_steps_per_s_mean",
                 "steady_env_steps_per_s_mean", "final_return_over_brax_ppo",
                 "wall_s_over_brax_ppo", "final_return_over_ground_truth",
                 "wall_s_over_ground_truth"]
  writer.writerow(["contender", "seeds_done", "seeds_planned", "final_return_mean",
                   *seed_cols, *grid_cols, *scalar_cols])
  blank = lambda x: "" if x is None else x
  for name, row in summary["rows"].items():
    writer.writerow([name, row["seeds_done"], row["seeds_planned"],
                     blank(row["final_return_mean"]),
                     *(blank(row["final_return_per_seed"].get(s)) for s in plan["seeds"]),
                     *(blank(x) for x in row["return_at_steps"]),
                     *(blank(row[c]) for c in scalar_cols)])
  write_text_atomic(out / "summary.csv", buffer.getvalue())
  table = markdown(plan, summary)
  write_text_atomic(out / "summary.md", table)
  plot(out / "curves.png", plan, runs)
  summary["markdown"] = table
  return summary


def plot(path: Path, plan: dict[str, Any], runs: dict[tuple[str, int], dict[str, Any]]) -> None:
  """Return vs env steps and vs wall time: thin lines per seed, a thick line for the mean over
  seeds on a common grid, drawn only where every seed's curve reaches."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for ax, key, label in ((axes[0], "env_steps", "env steps"), (axes[1], "wall_s",
                                                                  "wall time (s)")):
    for name in plan["contenders"]:
      curves = [runs[(name, s)]["curve"] for s in plan["seeds"] if (name, s) in runs]
      curves = [c for c in curves if c]
      if not curves:
        continue
      colour = COLOURS.get(name)
      for curve in curves:
        ax.plot([p[key] for p in curve], [p["eval_return"] for p in curve], color=colour,
                lw=0.8, alpha=0.4)
      top = max(c[-1][key] for c in curves)
      grid = np.linspace(0.0, top, PLOT_POINTS)
      values = np.stack([interpolate([p[key] for p in c], [p["eval_return"] for p in c], grid)
                         for c in curves])
      ok = ~np.isnan(values).any(axis=0)
      ax.plot(grid[ok], values[:, ok].mean(axis=0), color=colour, lw=2.5,
              label=f"{name} (mean of {len(curves)})")
    ax.set_xlabel(label)
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
  backend = f", {plan['backend']}" if plan["backend"] else ""
  fig.suptitle(f"{plan['env']}{backend}: {plan['budget']:,d} env steps per run")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  write_text_atomic(path, buffer.getvalue())


# -------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------

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


def _prepare_out(out: Path, plan: dict[str, Any], overwrite: bool) -> None:
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


def _run_all(out: Path, plan: dict[str, Any], runs: dict[tuple[str, int], dict[str, Any]],
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
  out = Path(args.out or f"bench_results/learning-{args.env}")
  plan.update(machine=describe_machine(), versions=versions())
  try:
    _prepare_out(out, plan, args.overwrite)
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
    _run_all(out, plan, runs, order, failed)
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
