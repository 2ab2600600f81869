"""Arguments and the plan: every argument checked and every contender's settings resolved
before anything is built or compiled (`make_plan`), and the machine and versions recorded
beside it (`describe_machine`, `versions`)."""

from __future__ import annotations

import inspect
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from brax import envs as brax_envs

from spo_jax import brax_ppo
from spo_jax import envs as envs_lib
from spo_jax.bench.common import cpu_model
from spo_jax.config import ConfigError, validate
from spo_jax.envs import known_env_names, require_family
from spo_jax.learning_bench.settings import (
    SETTINGS,
    BraxPPOSettings,
    brax_evaluation,
    brax_kwargs,
    brax_steps_per_training_step,
    brax_total_steps,
)
from spo_jax.presets import preset

CONTENDERS = ("brax_ppo", "ground_truth", "spo")
OURS = ("ground_truth", "spo")


class BenchError(ValueError):
  """Bad benchmark arguments: one line naming the problem and the fix."""



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
  if env in envs_lib.PACKAGE_ENVS:
    return None
  if preset(env).backend is not None:  # the backend the preset was tuned on
    return preset(env).backend
  env_class = getattr(brax_envs, "_envs", {}).get(env)
  parameter = (inspect.signature(env_class.__init__).parameters.get("backend")
               if env_class is not None else None)
  return parameter.default if parameter is not None else "generalized"


def resolve_backend(env: str, contenders: list[tuple[str, str | None]]) -> str | None:
  """The one backend every contender runs on (None for the package's envs)."""
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
  env = _bench_env_name(env)
  seeds = parse_seeds(seeds_text)
  contenders = parse_contenders(contenders_text, backend_flag)
  names = [n for n, _ in contenders]
  _check_env(env, names)
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
      settings[name], minimum = _brax_settings(table, base.num_eval_envs, n, budget, num_evals)
      minimums.append(minimum)
    else:
      settings[name] = _our_settings(env, name, backend, budget, num_evals, n, h)
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


def _bench_env_name(env: str) -> str:
  """`env` as the settings know it (brax:hopper is hopper); `BenchError` for gymnax and the
  other families, which have no learning-bench settings."""
  try:
    return require_family(env, ("package", "brax"), "spo-learning-bench")
  except ConfigError as error:
    raise BenchError(str(error)) from None


def _check_env(env: str, names: list[str]) -> None:
  """`env` is known, Brax PPO (if a contender) can train it, and it has settings."""
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
                     "spo_jax/learning_bench/settings.py)")


def _brax_settings(table: BraxPPOSettings, num_eval_envs: int, n: int, budget: int, num_evals: int
                   ) -> tuple[dict[str, Any], tuple[int, str]]:
  """Brax PPO's plan entry (its published settings `table` scaled to our N = `n`), and the
  env steps of its smallest unit of training with what that unit is."""
  kwargs = {**brax_kwargs(table, n), **brax_evaluation(num_eval_envs)}
  step = brax_steps_per_training_step(kwargs)
  minimum = (step, f"one Brax PPO training step (batch_size x num_minibatches x "
                   f"unroll_length x action_repeat = {kwargs['batch_size']} x "
                   f"{kwargs['num_minibatches']} x {kwargs['unroll_length']} x "
                   f"{kwargs['action_repeat']} = {step} env steps)")
  return {
      "ppo_train_kwargs": kwargs, "hidden_sizes": table.hidden_sizes,
      "networks": "Brax default" if table.hidden_sizes is None else str(table.hidden_sizes),
      "published_num_envs": table.num_envs, "published_batch_size": table.batch_size,
      "source": table.source, "num_evals": num_evals,
      "env_steps_run": brax_total_steps(budget, num_evals, step),
      "evaluation": f"{kwargs['num_eval_envs']} episodes of {kwargs['episode_length']} "
                    "steps, deterministic policy (as ours)"}, minimum


def _our_settings(env: str, name: str, backend: str | None, budget: int, num_evals: int,
                  n: int, h: int) -> dict[str, Any]:
  """The plan entry of our contender `name` (a reward source): its validated config, seed
  left out (set per run)."""
  config = our_config(env, name, backend, budget, num_evals)
  try:
    validate(config)
  except ConfigError as error:
    raise BenchError(f"{name}: {error}") from None
  config_dict = config.to_dict()
  del config_dict["seed"]  # set per run
  eval_steps = config_dict.get("eval_episode_length") or h  # 0: the training horizon
  return {"config": config_dict,
          "iterations_if_full_episodes": -(-budget // (n * h)),
          "evaluation": f"{config.num_eval_envs} episodes of {eval_steps} steps, "
                        "deterministic policy"}


def describe_machine() -> dict[str, Any]:
  """CPU model, cores and the accelerator JAX sees. The accelerator is asked in a short
  subprocess: initialising JAX here would take (on a GPU, most of) the device's memory away
  from the runs."""
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


def versions() -> dict[str, str]:
  def version(name: str) -> str:
    try:
      return metadata.version(name)
    except metadata.PackageNotFoundError:
      return "not installed"

  return {"spo_jax": version("spo_jax"), "jax": version("jax"), "jaxlib": version("jaxlib"),
          "brax": version("brax"), "python": platform.python_version()}
