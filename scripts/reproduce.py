"""Reproduce the four questions of the SPO paper (Swamy et al., ICML 2024) over many seeds.

  Q1  intransitive preferences: does SPO find the Minimax Winner (MW)? A matrix game with
      the non-uniform cycle `cycle3` (exploitability of SPO's averaged and last policy and
      of the reward model's policy, against the exact MW of `spo_jax.minimax`), and a control
      task judged by the `intransitive` majority of raters (each rater's score of the final
      policies, and the raters' head-to-head verdict between SPO and the reward model).
  Q2  maximum-reward preferences (the `oracle` teacher): true return against env steps and
      against preference queries, SPO vs reward model (RM) vs PPO on the env reward.
  Q3  stochastic preferences: `bradley_terry` over a range of beta and `mistake(oracle)` over
      epsilon; final true return against the noise level, SPO vs RM.
  Q4  non-Markovian preferences (`constraint`, `deadline`, ...): the teacher's own target
      property (measured by rolling out the final policies) and the true return, SPO vs RM.

Every (question, method, setting) is ONE compiled run of `spo_jax.train` with the seeds
vmapped (`num_seeds`); its metrics.jsonl, checkpoints and a `final.json` (what was measured
after training) stay under OUT/<question>/<run>/. A run whose `final.json` matches its
config is not run again, so an interrupted suite continues where it stopped (`--force`
re-runs). Then: a tidy OUT/<question>/results.csv (one row per seed per evaluation),
OUT/<question>/finals.csv (one row per seed and final measure), the interquartile mean
(IQM) across seeds with 95% stratified-bootstrap confidence intervals (rliable; Agarwal et
al. 2021), OUT/summary.md and PNG figures.

  python scripts/reproduce.py --question all --scale cpu --seeds 5 --out runs/repro
  python scripts/reproduce.py --question all --scale gpu --dry-run     # the plan, validated
  python scripts/reproduce.py --question q1 --tiny --out /tmp/r        # seconds (tests)
  python scripts/reproduce.py --question all --out runs/repro --docs docs/results

`--docs DIR` copies the figures into DIR/ and rewrites the generated blocks of DIR.md
(docs/results.md), leaving the hand-written reading around them untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

QUESTIONS = ("q1", "q2", "q3", "q4")
SCALES = ("cpu", "gpu")
METHODS = {"spo": "spo", "rm": "reward_model", "ppo": "ground_truth"}
METHOD_LABELS = {"spo": "SPO", "rm": "RM (reward model)", "ppo": "PPO (env reward)"}
METHOD_COLORS = {"spo": "tab:blue", "rm": "tab:orange", "ppo": "tab:green"}
NONMARKOV = ("constraint", "deadline", "peak", "steady")
TITLES = {"q1": "Q1: intransitive preferences", "q2": "Q2: maximum-reward preferences",
          "q3": "Q3: noisy preferences", "q4": "Q4: non-Markovian preferences"}
# The matrix game's payoff table and episodes of the final measurements per seed.
DEFAULT_TABLE = "cycle3"


class UsageError(ValueError):
  """Bad command-line input: printed as one line, exit code 2, before anything runs."""


# -------------------------------------------------------------------------------------
# The plan: which runs answer which question at which scale
# -------------------------------------------------------------------------------------

class Run(NamedTuple):
  """One compiled training run (all seeds vmapped) and how to read it."""

  question: str
  name: str  # directory under OUT/<question>/
  method: str  # 'spo', 'rm' or 'ppo'
  setting: str  # 'matrix_game', 'control', 'oracle', 'bradley_terry', 'mistake', a Q4 teacher
  level: float | None  # Q3: beta or epsilon; None elsewhere
  config: Any  # spo_jax.Config
  measure: bool  # roll out the final policies with the teacher to measure its properties


@dataclasses.dataclass(frozen=True)
class EnvSettings:
  """What one environment needs for the questions: sizes, budget and teacher parameters."""

  num_envs: int
  episode_length: int
  num_timesteps: int  # env steps per seed (Q2, Q3, Q4 and Q1's control task)
  max_iterations: int  # a cap on iterations, so that a slow learner cannot run away
  bt_scale: float  # bradley_terry: returns are divided by this (about the batch's spread)
  q4: dict[str, dict[str, Any]]  # teacher name -> its teacher_* fields
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


# inverted_pendulum: obs = (cart position, hinge angle, cart velocity, angular velocity);
# reward 1 per step alive; the episode ends at |angle| > 0.2. H = 200 keeps the vmapped
# iteration (all S x N x H steps are simulated under vmap) cheap while the task stays the
# same (return = steps balanced, at most H). Q4's properties are invisible to the return:
# 'constraint' wants the cart to stay within |x| <= 0.1 of the centre all episode,
# 'deadline' wants the cart at x >= 0.3 as early as possible (within 60 steps).
_PENDULUM_Q4 = {
    "constraint": {"teacher_quantity": "abs:obs:0", "teacher_threshold": 0.1},
    "deadline": {"teacher_quantity": "obs:0", "teacher_threshold": 0.3, "teacher_deadline": 60},
    "peak": {"teacher_quantity": "obs:0"},
    "steady": {"teacher_quantity": "obs:2"},
}
# The package's cart-pole (balance): the same two properties on its position metric.
_BALANCE_Q4 = {
    "constraint": {"teacher_quantity": "abs:position", "teacher_threshold": 0.2},
    "deadline": {"teacher_quantity": "position", "teacher_threshold": 0.3,
                 "teacher_deadline": 10},
    "peak": {"teacher_quantity": "position"},
    "steady": {"teacher_quantity": "angle"},
}
# Locomotion (gpu scale): obs[1] is the torso pitch of hopper/walker2d/halfcheetah; the
# 'constraint' keeps it within 0.4 rad (no diving forward), 'deadline' wants a forward
# reward term of 1 (speed ~1 m/s) early, 'peak' the top speed.
_LOCOMOTION_Q4 = {
    "constraint": {"teacher_quantity": "abs:obs:1", "teacher_threshold": 0.4},
    "deadline": {"teacher_quantity": "reward_forward", "teacher_threshold": 1.0,
                 "teacher_deadline": 200},
    "peak": {"teacher_quantity": "reward_forward"},
    "steady": {"teacher_quantity": "reward_forward"},
}

CPU_ENVS: dict[str, EnvSettings] = {
    "inverted_pendulum": EnvSettings(
        num_envs=32, episode_length=200, num_timesteps=60_000, max_iterations=40,
        bt_scale=20.0, q4=_PENDULUM_Q4,
        overrides={"num_minibatches": 4, "eval_every": 2, "num_eval_envs": 16}),
    "balance": EnvSettings(
        num_envs=32, episode_length=200, num_timesteps=100_000, max_iterations=60,
        bt_scale=20.0, q4=_BALANCE_Q4, overrides={"num_minibatches": 4, "eval_every": 2}),
}
GPU_ENVS: dict[str, EnvSettings] = {
    name: EnvSettings(num_envs=256, episode_length=1000, num_timesteps=steps,
                      max_iterations=0, bt_scale=scale,
                      q4=(_LOCOMOTION_Q4 if name != "humanoid" else
                          {**_LOCOMOTION_Q4,
                           "deadline": {"teacher_quantity": "reward_linvel",
                                        "teacher_threshold": 1.0, "teacher_deadline": 200},
                           "peak": {"teacher_quantity": "reward_linvel"},
                           "steady": {"teacher_quantity": "reward_linvel"}}),
                      overrides={"eval_every": 10, "checkpoint_every": 50})
    for name, steps, scale in (("hopper", 20_000_000, 300.0), ("walker2d", 30_000_000, 300.0),
                               ("halfcheetah", 30_000_000, 500.0), ("ant", 50_000_000, 500.0),
                               ("humanoid", 50_000_000, 500.0))
}
# point_reach at a few steps: the smoke test's plan (--tiny). Its return varies from seed to
# seed (unlike a balancing task that every seed survives), so the statistics mean something.
# Q4: stay within |x| <= 1 ('constraint'); come within 0.5 of the target (reward = -distance
# >= -0.5) within 8 steps ('deadline').
_POINT_Q4 = {
    "constraint": {"teacher_quantity": "abs:obs:0", "teacher_threshold": 1.0},
    "deadline": {"teacher_quantity": "reward", "teacher_threshold": -0.5, "teacher_deadline": 8},
    "peak": {"teacher_quantity": "reward"},
    "steady": {"teacher_quantity": "action_norm"},
}
TINY_ENVS: dict[str, EnvSettings] = {
    "point_reach": EnvSettings(
        num_envs=6, episode_length=12, num_timesteps=200, max_iterations=3, bt_scale=5.0,
        q4=_POINT_Q4,
        overrides={"num_minibatches": 1, "update_epochs": 1, "eval_every": 1,
                   "num_eval_envs": 4, "policy_hidden_sizes": (16,),
                   "value_hidden_sizes": (16,), "rm_hidden_sizes": (16,),
                   "rm_train_steps": 2, "rm_queries_per_iteration": 8, "rm_batch_size": 8,
                   "checkpoint_every": 0}),
}


@dataclasses.dataclass(frozen=True)
class ScalePlan:
  """Which environment serves which question, the noise grid and the matrix-game length."""

  envs: dict[str, EnvSettings]
  control_env: str  # Q1's control task (needs an intransitive rater preset)
  q2_envs: tuple[str, ...]
  q3_env: str
  q4_env: str
  betas: tuple[float, ...]
  epsilons: tuple[float, ...]
  q4_teachers: tuple[str, ...]
  matrix_iterations: int
  final_episodes: int  # episodes per seed of the final rollouts (Q1 raters, Q4 properties)
  default_seeds: int


PLANS = {
    "cpu": ScalePlan(envs=CPU_ENVS, control_env="inverted_pendulum",
                     q2_envs=("inverted_pendulum",), q3_env="inverted_pendulum",
                     q4_env="inverted_pendulum", betas=(0.3, 1.0, 3.0),
                     epsilons=(0.0, 0.1, 0.2, 0.3), q4_teachers=("constraint", "deadline"),
                     matrix_iterations=600, final_episodes=32, default_seeds=5),
    "gpu": ScalePlan(envs=GPU_ENVS, control_env="hopper",
                     q2_envs=("ant", "halfcheetah", "hopper", "walker2d", "humanoid"),
                     q3_env="halfcheetah", q4_env="hopper", betas=(0.3, 1.0, 3.0),
                     epsilons=(0.0, 0.1, 0.2, 0.3), q4_teachers=("constraint", "deadline"),
                     matrix_iterations=1000, final_episodes=64, default_seeds=10),
    "tiny": ScalePlan(envs=TINY_ENVS, control_env="point_reach", q2_envs=("point_reach",),
                      q3_env="point_reach", q4_env="point_reach", betas=(1.0,), epsilons=(0.0, 0.2),
                      q4_teachers=("constraint", "deadline"), matrix_iterations=6,
                      final_episodes=4, default_seeds=3),
}


def _base_config(env: str, settings: EnvSettings, seeds: int, tiny: bool):
  from spo_jax.config import preset

  # The questions are about whole-episode preferences (non-Markovian teachers judge whole
  # episodes): the locomotion presets' segments, uncentred rewards and CPU backend are not
  # taken over; a plan's overrides may still set them.
  whole_episodes = dict(segment_length=0, center_rewards=True, backend=None)
  config = preset(env).replace(
      num_envs=settings.num_envs, episode_length=settings.episode_length,
      num_timesteps=settings.num_timesteps, max_iterations=settings.max_iterations,
      num_seeds=seeds, seed=0, target_return=None, **{**whole_episodes, **settings.overrides})
  if not tiny and config.batch_size % config.num_minibatches:
    config = config.replace(num_minibatches=1)
  return config


def _matrix_config(plan: ScalePlan, seeds: int, table: str, tiny: bool):
  from spo_jax.config import preset

  config = preset("matrix_game").replace(
      teacher="matrix_game", teacher_table=table, num_seeds=seeds, seed=0,
      num_timesteps=10**12, max_iterations=plan.matrix_iterations,
      eval_every=max(1, plan.matrix_iterations // 30), checkpoint_every=0,
      rm_queries_per_iteration=64)
  if tiny:
    config = config.replace(num_envs=8, eval_every=1, update_epochs=1)
  return config


def plan_runs(question: str, scale: str, seeds: int, *, tiny: bool = False,
              env: str | None = None, q4_teachers: tuple[str, ...] | None = None,
              table: str = DEFAULT_TABLE) -> list[Run]:
  """The runs answering `question` at `scale` ('tiny' with `tiny`), S = `seeds` each."""
  plan = PLANS["tiny" if tiny else scale]

  def env_of(default: str) -> str:
    return env if env is not None else default

  def base(name: str):
    return _base_config(name, plan.envs[name], seeds, tiny)

  runs: list[Run] = []
  if question == "q1":
    matrix = _matrix_config(plan, seeds, table, tiny)
    for method in ("spo", "rm"):
      runs.append(Run("q1", f"matrix-{method}", method, "matrix_game", None,
                      matrix.replace(reward_source=METHODS[method]), False))
    control = base(env_of(plan.control_env)).replace(teacher="intransitive")
    for method in ("spo", "rm"):
      runs.append(Run("q1", f"control-{method}", method, "control", None,
                      control.replace(reward_source=METHODS[method]), True))
  elif question == "q2":
    for name in ((env,) if env is not None else plan.q2_envs):
      config = base(name).replace(teacher="oracle")
      prefix = "" if len(plan.q2_envs) == 1 or env is not None else f"{name}-"
      for method in ("spo", "rm", "ppo"):
        runs.append(Run("q2", f"{prefix}oracle-{method}", method,
                        "oracle" if not prefix else f"oracle {name}", None,
                        config.replace(reward_source=METHODS[method]), False))
  elif question == "q3":
    name = env_of(plan.q3_env)
    config = base(name)
    scale_r = plan.envs[name].bt_scale
    for beta in plan.betas:
      for method in ("spo", "rm"):
        runs.append(Run("q3", f"bradley_terry-beta{beta:g}-{method}", method, "bradley_terry",
                        beta, config.replace(reward_source=METHODS[method],
                                             teacher="bradley_terry", teacher_beta=beta,
                                             teacher_scale=scale_r), False))
    for epsilon in plan.epsilons:
      # mistake(oracle) at epsilon = 0 is the oracle: the same config as Q2's runs, whose
      # finished results `execute` then copies instead of training again.
      teacher = {"teacher": "oracle"} if epsilon == 0 else {
          "teacher": "mistake(oracle)", "teacher_epsilon": epsilon}
      for method in ("spo", "rm"):
        runs.append(Run("q3", f"mistake-eps{epsilon:g}-{method}", method, "mistake", epsilon,
                        config.replace(reward_source=METHODS[method], **teacher), False))
  elif question == "q4":
    name = env_of(plan.q4_env)
    config = base(name)
    for teacher in (q4_teachers or plan.q4_teachers):
      fields = plan.envs[name].q4[teacher]
      for method in ("spo", "rm"):
        runs.append(Run("q4", f"{teacher}-{method}", method, teacher, None,
                        config.replace(reward_source=METHODS[method], teacher=teacher,
                                       **fields), True))
  return runs


def check_arguments(args: argparse.Namespace) -> list[Run]:
  """Every check that needs no compilation: names, then each run's config and teacher
  (built against its environment, so a bad table file or metric name fails here)."""
  questions = QUESTIONS if args.question == "all" else (args.question,)
  if args.question not in (*QUESTIONS, "all"):
    raise UsageError(f"unknown question {args.question!r}; valid: {', '.join(QUESTIONS)}, all")
  if args.scale not in SCALES:
    raise UsageError(f"unknown scale {args.scale!r}; valid: {', '.join(SCALES)}")
  plan = PLANS["tiny" if args.tiny else args.scale]
  if args.env is not None and args.env not in plan.envs:
    where = "--tiny" if args.tiny else f"--scale {args.scale}"
    raise UsageError(f"unknown env {args.env!r} for {where}; valid: "
                     f"{', '.join(sorted(plan.envs))}")
  teachers = None
  if args.teachers is not None:
    teachers = tuple(t.strip() for t in args.teachers.split(",") if t.strip())
    bad = [t for t in teachers if t not in NONMARKOV]
    if bad or not teachers:
      raise UsageError(f"unknown Q4 teacher {bad[0] if bad else args.teachers!r}; valid: "
                       f"{', '.join(NONMARKOV)} (comma-separated)")
  if args.seeds is not None and args.seeds < 1:
    raise UsageError(f"--seeds {args.seeds} is invalid; use 1 or more (5 or more for "
                     "meaningful intervals)")
  methods = None
  if args.methods is not None:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
      raise UsageError(f"unknown method {bad[0] if bad else args.methods!r}; valid: "
                       f"{', '.join(METHODS)} (comma-separated)")
  # Only now the package (and jax) is imported: the name checks above answer at once.
  from spo_jax.config import ConfigError
  from spo_jax.teachers.raters import PRESETS as RATER_PRESETS

  if args.env is not None and "q1" in questions and args.env not in RATER_PRESETS:
    raise UsageError(f"env {args.env!r} has no intransitive rater preset for Q1; valid: "
                     f"{', '.join(sorted(set(RATER_PRESETS) & set(plan.envs)))}")
  seeds = args.seeds or plan.default_seeds
  runs = [run for q in questions
          for run in plan_runs(q, args.scale, seeds, tiny=args.tiny, env=args.env,
                               q4_teachers=teachers, table=args.table)]
  if methods is not None:
    runs = [run for run in runs if run.method in methods]
    if not runs:
      raise UsageError(f"no run of {args.question} uses the methods {args.methods!r}; Q2 "
                       "runs spo, rm and ppo, the other questions spo and rm")
  try:
    _validate_runs(runs)
  except ConfigError as error:
    raise UsageError(str(error)) from error
  return runs


def _validate_runs(runs: list[Run]) -> None:
  """`validate` every config and build every teacher against its env (no compilation)."""
  from spo_jax import teachers as teachers_lib
  from spo_jax.config import validate
  from spo_jax.envs import make_env

  envs: dict[str, Any] = {}
  for run in runs:
    config = validate(run.config)
    if config.env not in envs:
      envs[config.env] = make_env(config.env, config.backend)
    spec = teachers_lib.env_spec(envs[config.env], config.episode_length, config.env)
    teacher = teachers_lib.make_teacher(config, spec)
    check_env = getattr(teacher, "check_env", None)
    if callable(check_env) and config.env != "matrix_game":
      check_env(envs[config.env])


# -------------------------------------------------------------------------------------
# Running: one compiled run per (method, setting), skipped when already finished
# -------------------------------------------------------------------------------------

def _finished(run_dir: Path, config) -> bool:
  path = run_dir / "final.json"
  if not path.is_file():
    return False
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError:
    return False
  return saved.get("config") == json.loads(config.to_json())


def _find_twin(out: Path, run_dir: Path, config) -> Path | None:
  """A finished run elsewhere under `out` with exactly this config (Q3's noiseless point is
  Q2's oracle run), or None."""
  for path in sorted(out.glob("*/*/final.json")):
    if path.parent != run_dir and _finished(path.parent, config):
      return path.parent
  return None


def _train(run: Run, run_dir: Path, force: bool, log: Callable[[str], None]) -> float:
  """Train (or resume an interrupted run); returns the wall time of this call in seconds."""
  import spo_jax
  from spo_jax.config import ConfigError
  from spo_jax.run_dir import RunDirBusy

  start = time.perf_counter()
  resume = (not force and (run_dir / "config.json").exists()
            and (run_dir / "checkpoints").is_dir())
  if resume:
    try:
      spo_jax.train(run.config, run_dir=run_dir, resume=True)
      return time.perf_counter() - start
    except RunDirBusy:  # another process is training this point: never start over under it
      raise
    except ConfigError as error:  # a different config or no complete checkpoint: start over
      log(f"  cannot resume ({error}); starting again")
  spo_jax.train(run.config, run_dir=run_dir, overwrite=True)
  return time.perf_counter() - start


def _restore_params(run_dir: Path):
  """(setup, PolicyParams with a leading seed axis [S, ...]) of a run's last checkpoint."""
  import jax

  from spo_jax.checkpoint import Checkpointer, read_run_config
  from spo_jax.train import build, over_seeds, policy_params, seed_keys

  config = read_run_config(run_dir)
  setup = build(config)
  checkpointer = Checkpointer(run_dir / "checkpoints")
  try:
    step = checkpointer.latest_step()
    state, _ = checkpointer.restore(
        step, jax.eval_shape(over_seeds(setup.fns.init, config.num_seeds), seed_keys(config)))
  finally:
    checkpointer.close()
  return setup, policy_params(state)


def teacher_properties(teacher: Any, summaries: Any, returns: Any) -> dict[str, Any]:
  """Per-episode measures [E] of what the teacher judges, read from its summaries.

  intransitive: `rater_k` = rater k's utility U_k = sum_m W[k, m] sum_t q_m,t;
  constraint: `satisfied` = 1 if q_t <= threshold at every valid step;
  deadline: `reached` = 1 if the level was reached within the deadline, `steps_to_reach`
  (the deadline + 1 where it was not); peak: `peak` = max_t q_t; steady: `variance`.
  Always `return`, the env's return.
  """
  import jax.numpy as jnp

  from spo_jax.teachers import nonmarkov
  from spo_jax.teachers.raters import MajorityOfRaters

  out = {"return": returns}
  if isinstance(teacher, MajorityOfRaters):
    utilities = _utilities(teacher, summaries)  # [E, K]
    for k in range(teacher.num_raters):
      out[f"rater_{k}"] = utilities[:, k]
  elif isinstance(teacher, nonmarkov.Constraint):
    out["satisfied"] = 1.0 - summaries["violated"].astype(jnp.float32)
  elif isinstance(teacher, nonmarkov.Deadline):
    reached = summaries["reached"] < nonmarkov._NEVER
    out["reached"] = reached.astype(jnp.float32)
    out["steps_to_reach"] = jnp.where(reached, summaries["reached"],
                                      teacher.deadline + 1).astype(jnp.float32)
  elif isinstance(teacher, nonmarkov.Peak):
    out["peak"] = summaries["peak"]
  elif isinstance(teacher, nonmarkov.Steady):
    out["variance"] = nonmarkov.Steady.variance(summaries)
  return out


def _utilities(teacher: Any, summaries: Any):
  import jax

  return jax.vmap(teacher.utilities)(summaries)


def _make_measure(setup, episodes: int):
  """jit(vmap over seeds) of: roll out the deterministic policy `episodes` times with the
  configured teacher folded in; returns the per-seed means of `teacher_properties`."""
  import jax
  import jax.numpy as jnp

  from spo_jax.evaluate import rollout_policy
  from spo_jax.rollout import rollout

  config = setup.config
  teacher = setup.teacher  # the configured teacher (`build` makes it for spo and rm runs)

  def one_seed(params, key):
    policy = rollout_policy(setup.networks, params, config.normalize_observations, True)
    result = rollout(setup.env, policy, key, episodes, config.episode_length, teacher)
    returns = jnp.sum(result.trajectory.reward, axis=0)
    props = teacher_properties(teacher, result.summaries, returns)
    return {k: jnp.mean(v) for k, v in props.items()}

  return teacher, jax.jit(jax.vmap(one_seed))


def _measure(run: Run, run_dir: Path, episodes: int) -> dict[str, list[float]]:
  import jax

  setup, params = _restore_params(run_dir)
  _, measure = _make_measure(setup, episodes)
  keys = jax.random.split(jax.random.PRNGKey(2024), run.config.num_seeds)
  values = jax.device_get(measure(params, keys))
  return {k: [float(x) for x in np.asarray(v)] for k, v in values.items()}


def _last_rows(run_dir: Path) -> list[dict[str, Any]]:
  """The last evaluation row of each seed (rows re-written by a resume: the last wins)."""
  rows = _read_metrics(run_dir)
  last: dict[int, dict[str, Any]] = {}
  for row in rows:
    if row["seed"] not in last or row["iteration"] >= last[row["seed"]]["iteration"]:
      last[row["seed"]] = row
  return [last[s] for s in sorted(last)]


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
  path = run_dir / "metrics.jsonl"
  if not path.exists():
    return []
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  for row in rows:
    row.setdefault("seed", 0)
  return rows


def execute(runs: list[Run], out: Path, force: bool, episodes: int,
            log: Callable[[str], None] = print) -> dict[str, float]:
  """Train and measure every run not already finished; returns the wall seconds per run
  spent in this call (0 for skipped runs)."""
  seconds: dict[str, float] = {}
  for index, run in enumerate(runs, 1):
    run_dir = out / run.question / run.name
    key = f"{run.question}/{run.name}"
    if not force and _finished(run_dir, run.config):
      log(f"[{index}/{len(runs)}] {key}: finished before, skipped (--force re-runs)")
      seconds[key] = 0.0
      continue
    twin = None if force else _find_twin(out, run_dir, run.config)
    if twin is not None:
      if run_dir.exists():
        shutil.rmtree(run_dir)
      shutil.copytree(twin, run_dir)
      log(f"[{index}/{len(runs)}] {key}: the same config as {twin.relative_to(out)}, copied")
      seconds[key] = 0.0
      continue
    log(f"[{index}/{len(runs)}] {key}: {run.config.env}, {run.config.reward_source}, "
        f"teacher {run.config.teacher}, S={run.config.num_seeds} seeds")
    train_s = _train(run, run_dir, force, log)
    start = time.perf_counter()
    final: dict[str, Any] = {"config": json.loads(run.config.to_json()), "train_s": train_s}
    last = _last_rows(run_dir)
    final["seeds"] = [r["seed"] for r in last]
    final["measures"] = {}
    if run.config.env != "matrix_game":  # the game has no env reward: its return is always 0
      final["measures"]["final_eval_return"] = [r["eval/episode_reward"] for r in last]
    # Matrix game (categorical policy): exploitability and action probabilities of the last
    # iterate and of the time-averaged policy at the last evaluation.
    for name in sorted(last[0] if last else []):
      if name.startswith(("eval/exploitability_", "eval/prob_")):
        final["measures"][name.split("/")[1]] = [r[name] for r in last]
    if run.measure:
      final["measures"].update(_measure(run, run_dir, episodes))
    final["measure_s"] = time.perf_counter() - start
    (run_dir / "final.json").write_text(json.dumps(final, indent=1))
    seconds[key] = train_s + final["measure_s"]
    log(f"  done in {seconds[key]:.0f} s (training {train_s:.0f} s)")
  return seconds


def head_to_head_q1(runs: list[Run], out: Path, force: bool, episodes: int,
                    log: Callable[[str], None] = print) -> dict[str, Any] | None:
  """The raters' verdict between the final SPO and RM policies of Q1's control task: seed i
  of SPO against seed i of RM, `episodes` episodes each from the same resets, every pair
  judged by the intransitive teacher (`spo_jax.evaluate.head_to_head`). Cached in
  OUT/q1/head_to_head.json, recomputed when either run is newer."""
  import jax

  from spo_jax.evaluate import head_to_head, rollout_policy

  by_method = {r.method: r for r in runs if r.question == "q1" and r.setting == "control"}
  if set(by_method) != {"spo", "rm"}:
    return None
  dirs = {m: out / "q1" / r.name for m, r in by_method.items()}
  path = out / "q1" / "head_to_head.json"
  newest = max((d / "final.json").stat().st_mtime for d in dirs.values())
  if not force and path.exists() and path.stat().st_mtime >= newest:
    return json.loads(path.read_text())
  start = time.perf_counter()
  setup_a, params_a = _restore_params(dirs["spo"])
  setup_b, params_b = _restore_params(dirs["rm"])
  config = setup_a.config
  teacher = setup_a.teacher  # the intransitive raters both runs were trained with

  def one_seed(pa, pb, key):
    policy_a = rollout_policy(setup_a.networks, pa, config.normalize_observations, True)
    policy_b = rollout_policy(setup_b.networks, pb, setup_b.config.normalize_observations, True)
    return head_to_head(setup_a.env, teacher, policy_a, policy_b, key, episodes,
                        config.episode_length)

  keys = jax.random.split(jax.random.PRNGKey(7), config.num_seeds)
  result = jax.device_get(jax.jit(jax.vmap(one_seed))(params_a, params_b, keys))
  data = {"seeds": list(range(config.seed, config.seed + config.num_seeds)),
          "win_rate_spo_vs_rm": [float(x) for x in np.asarray(result["win_rate"])],
          "win_rate_stderr": [float(x) for x in np.asarray(result["win_rate_stderr"])],
          "seconds": time.perf_counter() - start}
  path.write_text(json.dumps(data, indent=1))
  log(f"q1 head-to-head SPO vs RM: {data['seconds']:.0f} s")
  return data


# -------------------------------------------------------------------------------------
# Tables: tidy results and per-seed finals
# -------------------------------------------------------------------------------------

def collect(runs: list[Run], out: Path):
  """(results, finals) DataFrames of the runs that finished.

  results: one row per run, seed and evaluation (every logged metric a column);
  finals: one row per run, seed and final measure (columns question, run, method,
  setting, level, seed, measure, value).
  """
  import pandas as pd

  rows, finals = [], []
  for run in runs:
    run_dir = out / run.question / run.name
    if not (run_dir / "final.json").exists():
      continue
    ident = {"question": run.question, "run": run.name, "method": run.method,
             "setting": run.setting, "level": run.level, "env": run.config.env}
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for row in _read_metrics(run_dir):
      seen[(row["seed"], row["iteration"])] = row  # a resume re-logs: the last row wins
    rows.extend({**ident, **row} for _, row in sorted(seen.items()))
    final = json.loads((run_dir / "final.json").read_text())
    for measure, values in final["measures"].items():
      for seed, value in zip(final["seeds"], values, strict=True):
        finals.append({**ident, "seed": seed, "measure": measure, "value": value})
  h2h_path = out / "q1" / "head_to_head.json"
  if any(r.question == "q1" for r in runs) and h2h_path.exists():
    data = json.loads(h2h_path.read_text())
    for seed, value in zip(data["seeds"], data["win_rate_spo_vs_rm"], strict=True):
      finals.append({"question": "q1", "run": "control-spo-vs-rm", "method": "spo",
                     "setting": "head_to_head", "level": None, "env": "",
                     "seed": seed, "measure": "win_rate_vs_rm", "value": value})
  return pd.DataFrame(rows), pd.DataFrame(finals)


# -------------------------------------------------------------------------------------
# Statistics: IQM across seeds with stratified-bootstrap confidence intervals
# -------------------------------------------------------------------------------------

def iqm(scores: np.ndarray) -> float:
  """Interquartile mean of all entries of `scores` [R, T] (runs x tasks): the mean of the
  middle 50% after sorting (`rliable.metrics.aggregate_iqm`, scipy's trim_mean at 25%)."""
  from rliable import metrics

  return float(metrics.aggregate_iqm(np.asarray(scores, dtype=np.float64)))


_RLIABLE_LIBRARY: list[Any] = []


def _rliable_library() -> tuple[Any, str]:
  """rliable.library if its bootstrap works here, else (None, why).

  rliable 1.2.0 bootstraps with `arch`; arch 7.x cannot be imported with pandas 3 and arch 8
  renamed the `random_state` argument rliable passes. The `reproduce`/`test` extras pin
  arch < 8 and pandas < 3 so rliable works; with other versions installed by hand, the NumPy
  fallback below is the same estimator (runs resampled with replacement within each task,
  percentile interval) and every table names which one produced it.
  """
  if not _RLIABLE_LIBRARY:
    try:
      from rliable import library

      library.get_interval_estimates({"probe": np.arange(4.0)[:, None]},
                                     lambda x: np.array([np.mean(x)]), reps=10)
      _RLIABLE_LIBRARY.append((library, "rliable.library.get_interval_estimates"))
    except Exception as error:  # noqa: BLE001 - any failure of the probe means: fall back
      reason = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
      _RLIABLE_LIBRARY.append((None, "NumPy stratified bootstrap (rliable.library unusable "
                                     f"here: {reason})"))
  return _RLIABLE_LIBRARY[0]


def ci_method() -> str:
  return _rliable_library()[1]


def stratified_bootstrap(scores: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray],
                         reps: int, seed: int = 0, size: float = 0.95) -> np.ndarray:
  """Percentile interval [2, P] of `statistic` over `reps` resamples of the runs of
  `scores` [R, T], resampled with replacement independently within each task (column).

  statistic maps a batch of resamples [B, R, T] to [B, P].
  """
  rng = np.random.default_rng(seed)
  runs, tasks = scores.shape
  stats = []
  for start in range(0, reps, 1000):
    batch = min(1000, reps - start)
    idx = rng.integers(0, runs, size=(batch, runs, tasks))
    stats.append(statistic(scores[idx, np.arange(tasks)[None, None, :]]))
  stats = np.concatenate(stats)
  tail = 100 * (1 - size) / 2
  return np.percentile(stats, [tail, 100 - tail], axis=0)


def _batch_iqm(samples: np.ndarray) -> np.ndarray:
  """[B, R, T] -> [B, 1]: IQM over runs and tasks of each resample."""
  from scipy import stats

  return stats.trim_mean(samples.reshape(samples.shape[0], -1), 0.25, axis=1)[:, None]


def iqm_with_ci(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
  """(IQM, lower, upper) of `scores` [R] or [R, T], 95% stratified-bootstrap interval."""
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim == 1:
    scores = scores[:, None]
  point = iqm(scores)
  if scores.shape[0] < 2:
    return point, point, point
  library, _ = _rliable_library()
  if library is not None:
    _, intervals = library.get_interval_estimates(
        {"x": scores}, lambda x: np.array([iqm(x)]), reps=reps,
        random_state=np.random.RandomState(seed))
    lower, upper = intervals["x"][:, 0]
  else:
    lower, upper = stratified_bootstrap(scores, _batch_iqm, reps, seed)[:, 0]
  return point, float(lower), float(upper)


def curve_iqm(x_per_seed: list[np.ndarray], y_per_seed: list[np.ndarray], points: int = 25,
              reps: int = 1000) -> tuple[np.ndarray, ...]:
  """IQM curve with 95% bands across seeds on a common x grid.

  Each seed's (x, y) is linearly interpolated onto `points` values of x spanning the range
  every seed covers; at each grid point the IQM over seeds and its bootstrap interval.
  Returns (grid [P], iqm [P], lower [P], upper [P]).
  """
  low = max(float(np.min(x)) for x in x_per_seed)
  high = min(float(np.max(x)) for x in x_per_seed)
  if not high > low:
    grid = np.array([high])
  else:
    grid = np.linspace(low, high, points)
  ys = np.stack([np.interp(grid, x, y) for x, y in zip(x_per_seed, y_per_seed, strict=True)])
  mid = np.array([iqm(ys[:, p:p + 1]) for p in range(len(grid))])
  if ys.shape[0] < 2:
    return grid, mid, mid, mid

  rng = np.random.default_rng(0)
  idx = rng.integers(0, ys.shape[0], size=(reps, ys.shape[0]))
  from scipy import stats

  boot = stats.trim_mean(ys[idx], 0.25, axis=1)  # [reps, P]
  lower, upper = np.percentile(boot, [2.5, 97.5], axis=0)
  return grid, mid, lower, upper


# -------------------------------------------------------------------------------------
# Summary tables
# -------------------------------------------------------------------------------------

MEASURE_LABELS = {
    "final_eval_return": "final return (eval)", "return": "return (final rollouts)",
    "exploitability_last": "exploitability, last iterate",
    "exploitability_average": "exploitability, averaged policy",
    "satisfied": "constraint satisfied (fraction of episodes)",
    "reached": "level reached in time (fraction)", "steps_to_reach": "steps to reach",
    "peak": "peak", "variance": "variance", "win_rate_vs_rm": "raters' win rate vs RM",
    "mw_distance_last": "L1 distance to the MW, last iterate",
    "mw_distance_average": "L1 distance to the MW, averaged policy",
}


def summarize(finals, question: str, reps: int) -> list[dict[str, Any]]:
  """One row per (setting, level, method, measure): IQM and 95% CI over seeds."""
  rows = []
  if finals.empty:
    return rows
  part = finals[finals["question"] == question]
  keys = ["setting", "level", "method", "measure"]
  for (setting, level, method, measure), group in part.groupby(keys, dropna=False, sort=False):
    values = group.sort_values("seed")["value"].to_numpy(dtype=np.float64)
    point, lower, upper = iqm_with_ci(values, reps=reps)
    rows.append({"setting": setting, "level": None if _isnan(level) else level,
                 "method": method, "measure": measure, "iqm": point, "lower": lower,
                 "upper": upper, "seeds": len(values)})
  return rows


def _isnan(value) -> bool:
  return value is None or (isinstance(value, float) and math.isnan(value))


def _measure_label(measure: str) -> str:
  for prefix, which in (("prob_average_", "averaged policy"), ("prob_last_", "last iterate")):
    if measure.startswith(prefix):
      return f"P(outcome {measure[len(prefix):]}), {which}"
  return MEASURE_LABELS.get(measure, measure.replace("_", " "))


def markdown_table(rows: list[dict[str, Any]]) -> str:
  if not rows:
    return "_no finished runs_\n"
  lines = ["| setting | method | measure | IQM | 95% CI | seeds |", "|---|---|---|---|---|---|"]
  for r in rows:
    setting = r["setting"] if r["level"] is None else f"{r['setting']} {r['level']:g}"
    measure = _measure_label(r["measure"])
    lines.append(f"| {setting} | {METHOD_LABELS.get(r['method'], r['method'])} | {measure} | "
                 f"{r['iqm']:.3f} | [{r['lower']:.3f}, {r['upper']:.3f}] | {r['seeds']} |")
  return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------
# Figures
# -------------------------------------------------------------------------------------

def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _band(ax, results, run_filter, x_key: str, y_key: str, label: str, color: str,
          linestyle: str = "-") -> bool:
  part = results[run_filter]
  if part.empty or x_key not in part or y_key not in part or part[y_key].isna().all():
    return False
  xs, ys = [], []
  for _, seed_rows in part.groupby("seed"):
    seed_rows = seed_rows.dropna(subset=[x_key, y_key]).sort_values(x_key)
    if len(seed_rows):
      xs.append(seed_rows[x_key].to_numpy(float))
      ys.append(seed_rows[y_key].to_numpy(float))
  if not xs:
    return False
  grid, mid, lower, upper = curve_iqm(xs, ys)
  ax.plot(grid, mid, color=color, linestyle=linestyle, label=f"{label} (n={len(xs)})")
  ax.fill_between(grid, lower, upper, color=color, alpha=0.2)
  return True


def _bars(ax, rows: list[dict[str, Any]], groups: list[tuple[str, Callable]], title: str,
          ylabel: str) -> None:
  """Grouped bars of IQM with CI whiskers; `groups` = (label, row predicate) per group."""
  methods = [m for m in METHOD_LABELS if any(r["method"] == m for r in rows)]
  width = 0.8 / max(len(methods), 1)
  for j, method in enumerate(methods):
    for i, (_, predicate) in enumerate(groups):
      match = [r for r in rows if r["method"] == method and predicate(r)]
      if not match:
        continue
      r = match[0]
      ax.bar(i + (j - (len(methods) - 1) / 2) * width, r["iqm"], width,
             yerr=[[r["iqm"] - r["lower"]], [r["upper"] - r["iqm"]]], capsize=3,
             color=METHOD_COLORS[method], label=METHOD_LABELS[method] if i == 0 else None)
  ax.set_xticks(range(len(groups)), [g[0] for g in groups])
  ax.set_title(title)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)


def figures(question: str, results, stats: list[dict[str, Any]], out: Path,
            table: str = DEFAULT_TABLE) -> list[Path]:
  """PNG figures of one question under OUT/<question>/; returns their paths."""
  plt = _plt()
  qdir = out / question
  paths: list[Path] = []

  def save(fig, name: str) -> None:
    path = qdir / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)

  res = results[results["question"] == question] if not results.empty else results
  if question == "q1":
    if not res.empty and "eval/exploitability_average" in res:
      fig, ax = plt.subplots(figsize=(6, 4))
      matrix = res["setting"] == "matrix_game"
      _band(ax, res, matrix & (res["method"] == "spo"), "iteration",
            "eval/exploitability_average", "SPO, averaged policy", "tab:blue")
      _band(ax, res, matrix & (res["method"] == "spo"), "iteration",
            "eval/exploitability_last", "SPO, last iterate", "tab:blue", "--")
      _band(ax, res, matrix & (res["method"] == "rm"), "iteration",
            "eval/exploitability_last", "RM policy", "tab:orange", "--")
      ax.axhline(0.0, color="black", linewidth=0.8, label="exact Minimax Winner (0)")
      ax.set_xlabel("iteration")
      ax.set_ylabel("exploitability  max_j P(j beats pi) - 1/2")
      ax.set_title(f"matrix game '{table}': distance from the Minimax Winner")
      ax.legend(fontsize=8)
      save(fig, "q1_exploitability.png")
    probs = sorted({r["measure"] for r in stats if r["measure"].startswith("prob_average_")})
    if probs:
      fig, ax = plt.subplots(figsize=(6, 4))
      outcomes = [m.rsplit("_", 1)[1] for m in probs]
      series = [("SPO, averaged", "spo", "prob_average_", "tab:blue", None),
                ("SPO, last iterate", "spo", "prob_last_", "tab:blue", "//"),
                ("RM, last iterate", "rm", "prob_last_", "tab:orange", "//")]
      width = 0.8 / (len(series) + 1)
      for j, (label, method, prefix, color, hatch) in enumerate(series):
        rows = [next((r for r in stats if r["method"] == method and r["setting"] ==
                      "matrix_game" and r["measure"] == prefix + k), None) for k in outcomes]
        if any(r is None for r in rows):
          continue
        ax.bar(np.arange(len(outcomes)) + j * width, [r["iqm"] for r in rows], width,
               yerr=[[r["iqm"] - r["lower"] for r in rows], [r["upper"] - r["iqm"] for r in rows]],
               capsize=2, color=color, hatch=hatch, alpha=0.9 if hatch is None else 0.5,
               label=label)
      winner = _minimax_winner(table)
      if winner is not None and len(winner) == len(outcomes):
        ax.bar(np.arange(len(outcomes)) + len(series) * width, winner, width, color="black",
               label="exact Minimax Winner")
      ax.set_xticks(np.arange(len(outcomes)) + width * len(series) / 2,
                    [f"outcome {k}" for k in outcomes])
      ax.set_ylabel("probability (IQM over seeds, 95% CI)")
      ax.set_title("final mixed strategies")
      ax.legend(fontsize=8)
      save(fig, "q1_strategies.png")
    control = [r for r in stats if r["setting"] == "control"]
    raters = sorted({r["measure"] for r in control if r["measure"].startswith("rater_")})
    h2h = [r for r in stats if r["setting"] == "head_to_head"]
    if raters or h2h:
      fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
      _bars(axes[0], control, [(f"rater {m.split('_')[1]}", lambda r, m=m: r["measure"] == m)
                               for m in raters], "each rater's score of the final policies",
            "utility (IQM, 95% CI)")
      if h2h:
        r = h2h[0]
        axes[1].bar([0], [r["iqm"]], yerr=[[r["iqm"] - r["lower"]], [r["upper"] - r["iqm"]]],
                    capsize=3, color="tab:blue")
        axes[1].axhline(0.5, color="black", linewidth=0.8)
        axes[1].set_xticks([0], ["SPO vs RM"])
        axes[1].set_ylim(0, 1)
        axes[1].set_title(f"raters' verdict (n={r['seeds']})")
        axes[1].set_ylabel("win rate of SPO's policy")
      save(fig, "q1_control.png")
  elif question == "q2" and not res.empty:
    settings = sorted(res["setting"].unique())
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 4 * len(settings)), squeeze=False)
    for row, setting in enumerate(settings):
      part = res[res["setting"] == setting]
      for method in ("spo", "rm", "ppo"):
        sel = part["method"] == method
        _band(axes[row, 0], part, sel, "step", "eval/episode_reward", METHOD_LABELS[method],
              METHOD_COLORS[method])
        if method != "ppo":
          _band(axes[row, 1], part, sel, "train/total_queries", "eval/episode_reward",
                METHOD_LABELS[method], METHOD_COLORS[method])
      env = part["env"].iloc[0]
      axes[row, 0].set(xlabel="env steps", ylabel="true return (IQM, 95% CI)",
                       title=f"{env}: return vs env steps")
      axes[row, 1].set(xlabel="preference queries", ylabel="true return (IQM, 95% CI)",
                       title=f"{env}: return vs queries (PPO asks none)")
      axes[row, 1].set_xscale("symlog")
      for ax in axes[row]:
        ax.legend(fontsize=8)
    save(fig, "q2_sample_efficiency.png")
  elif question == "q3" and stats:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, setting, xlabel in ((axes[0], "bradley_terry", "beta (lower = noisier)"),
                                (axes[1], "mistake", "epsilon (higher = noisier)")):
      for method in ("spo", "rm"):
        rows = sorted((r for r in stats if r["setting"] == setting and r["method"] == method
                       and r["measure"] == "final_eval_return"), key=lambda r: r["level"])
        if not rows:
          continue
        x = [r["level"] for r in rows]
        ax.errorbar(x, [r["iqm"] for r in rows],
                    yerr=[[r["iqm"] - r["lower"] for r in rows],
                          [r["upper"] - r["iqm"] for r in rows]],
                    marker="o", capsize=3, color=METHOD_COLORS[method],
                    label=f"{METHOD_LABELS[method]} (n={rows[0]['seeds']})")
      if setting == "bradley_terry":
        ax.set_xscale("log")
      ax.set(xlabel=xlabel, ylabel="final true return (IQM, 95% CI)",
             title=f"{setting}: return vs noise")
      ax.legend(fontsize=8)
    save(fig, "q3_noise.png")
  elif question == "q4" and stats:
    settings = list(dict.fromkeys(r["setting"] for r in stats))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    prop = {"constraint": "satisfied", "deadline": "reached", "peak": "peak",
            "steady": "variance"}
    _bars(axes[0], stats, [(s, lambda r, s=s: r["setting"] == s and r["measure"] == prop[s])
                           for s in settings],
          "the teacher's target property", "satisfied / reached fraction, peak, variance")
    _bars(axes[1], stats, [(s, lambda r, s=s: r["setting"] == s and r["measure"] == "return")
                           for s in settings], "true return of the same rollouts",
          "return (IQM, 95% CI)")
    save(fig, "q4_nonmarkov.png")
  return paths


def _minimax_winner(table: str) -> np.ndarray | None:
  """The exact MW of the payoff table (a preset or a file), or None if it cannot be read."""
  from spo_jax.config import ConfigError
  from spo_jax.minimax import minimax_winner
  from spo_jax.teachers.matrix_game import load_table

  try:
    return minimax_winner(load_table(table))
  except (ConfigError, OSError, ValueError):
    return None


# -------------------------------------------------------------------------------------
# Reports
# -------------------------------------------------------------------------------------

def machine() -> str:
  import jax

  devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
  return (f"{platform.machine()} {platform.processor() or ''} {_cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.default_backend()} ({devices})").replace("  ", " ")


def _cpu_count() -> int:
  import os

  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def question_block(question: str, command: str, stats: list[dict[str, Any]],
                   figure_paths: list[Path], seconds: float | None, seeds: int,
                   figure_prefix: str = "", table: str | None = None) -> str:
  lines = [f"### {TITLES[question]}", "", f"Command: `{command}`", "",
           f"Machine: {machine()}. Seeds: {seeds} per run (IQM across seeds; 95% CIs by "
           f"{ci_method()}). With so few seeds the intervals are wide: read overlaps as "
           "'not distinguished'."]
  if seconds is not None:
    lines[-1] += f" Wall time of the runs (this invocation): {seconds / 60:.1f} min."
  lines.append("")
  if question == "q1" and table is not None:
    winner = _minimax_winner(table)
    if winner is not None:
      lines.append(f"Matrix game table `{table}`: exact Minimax Winner (linear program, "
                   f"`spo_jax.minimax`) = ({', '.join(f'{p:.3f}' for p in winner)}).")
      lines.append("")
  for path in figure_paths:
    lines.append(f"![{path.stem}]({figure_prefix}{path.name})")
  lines += ["", markdown_table(stats)]
  return "\n".join(lines)


def write_docs(docs: Path, blocks: dict[str, str], figure_paths: list[Path]) -> Path:
  """Copy figures into `docs`/ and replace the generated blocks of `docs`.md between
  `<!-- generated:<q> start -->` and `<!-- generated:<q> end -->` (appended if missing)."""
  docs.mkdir(parents=True, exist_ok=True)
  for path in figure_paths:
    shutil.copy2(path, docs / path.name)
  md = docs.with_suffix(".md")
  text = md.read_text() if md.exists() else "# Results\n"
  for question, block in blocks.items():
    start, end = f"<!-- generated:{question} start -->", f"<!-- generated:{question} end -->"
    new = f"{start}\n{block}\n{end}"
    if start in text and end in text:
      head, rest = text.split(start, 1)
      text = head + new + rest.split(end, 1)[1]
    else:
      text = text.rstrip("\n") + "\n\n" + new + "\n"
  md.write_text(text)
  return md


def dry_run(runs: list[Run], log: Callable[[str], None] = print) -> None:
  """Print the plan: one line per run with its sizes and budget (nothing is compiled)."""
  total = 0
  log(f"{'run':42s} {'env':18s} {'method':12s} {'teacher':18s} {'S':>3s} {'N':>4s} "
      f"{'H':>5s} {'env steps/seed':>15s} {'env steps, all seeds':>21s}")
  for run in runs:
    c = run.config
    per_seed = c.num_timesteps if c.max_iterations == 0 else min(
        c.num_timesteps, c.max_iterations * c.num_envs * c.episode_length)
    total += per_seed * c.num_seeds
    log(f"{run.question + '/' + run.name:42s} {c.env:18s} {c.reward_source:12s} "
        f"{c.teacher:18s} {c.num_seeds:3d} {c.num_envs:4d} {c.episode_length:5d} "
        f"{per_seed:15,d} {per_seed * c.num_seeds:21,d}")
  log(f"{len(runs)} runs, at most {total:,d} env steps in all (every config validated)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, instead of argparse's usage block
      raise UsageError(message)

  parser = Parser(description=__doc__.split("\n\n")[0],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--question", default="all",
                      help=f"one of {', '.join(QUESTIONS)} or all (default)")
  parser.add_argument("--scale", default="cpu", help="cpu (default; the CPU budget) or gpu")
  parser.add_argument("--seeds", type=int, default=None,
                      help="seeds per run, vmapped in one compiled run (default: 5 cpu, "
                           "10 gpu, 3 tiny)")
  parser.add_argument("--out", type=Path, default=Path("runs/reproduce"),
                      help="output directory (default runs/reproduce)")
  parser.add_argument("--tiny", action="store_true",
                      help="seconds-long sizes on the package's tiny envs (smoke test)")
  parser.add_argument("--env", default=None,
                      help="environment of the control tasks instead of the scale's default")
  parser.add_argument("--teachers", default=None,
                      help=f"Q4 teachers, comma-separated, from {', '.join(NONMARKOV)}")
  parser.add_argument("--table", default=DEFAULT_TABLE,
                      help="Q1 matrix game payoff table: a preset (rps, cycle3, transitive3) "
                           "or a .json/.npy/.csv file")
  parser.add_argument("--methods", default=None,
                      help=f"comma-separated subset of {', '.join(METHODS)} (default: all "
                           "that apply to each question)")
  parser.add_argument("--force", action="store_true", help="re-run finished runs")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the validated plan with its budget, run nothing")
  parser.add_argument("--analyze-only", action="store_true",
                      help="skip training; tables and figures from the finished runs")
  parser.add_argument("--docs", type=Path, default=None,
                      help="also copy the figures to DIR/ and write the tables into DIR.md")
  parser.add_argument("--reps", type=int, default=2000,
                      help="bootstrap resamples per confidence interval (default 2000)")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    args = parse_args(argv)
    if args.reps < 100:
      raise UsageError(f"--reps {args.reps} is too few; use at least 100 (2000 is the default)")
    runs = check_arguments(args)
  except UsageError as error:
    print(f"reproduce.py: error: {error}", file=sys.stderr)
    return 2
  if args.dry_run:
    dry_run(runs)
    return 0
  out: Path = args.out
  out.mkdir(parents=True, exist_ok=True)
  plan = PLANS["tiny" if args.tiny else args.scale]
  episodes = plan.final_episodes
  seconds: dict[str, float] = {}
  if not args.analyze_only:
    from spo_jax.run_dir import RunDirBusy, RunWriteError

    try:
      seconds = execute(runs, out, args.force, episodes)
    except RunDirBusy as error:  # another reproduce.py (or spo-train) holds a point's run
      print(f"reproduce.py: error: {error}", file=sys.stderr)
      return 2
    except RunWriteError as error:  # disk full: finished points are kept, rerun to go on
      print(f"reproduce.py: error: {error}", file=sys.stderr)
      return 4
    head_to_head_q1(runs, out, args.force, episodes)
  results, finals = collect(runs, out)
  command = "python scripts/reproduce.py " + " ".join(argv)
  questions = list(dict.fromkeys(r.question for r in runs))
  blocks, all_figures = {}, []
  summary = [f"# SPO reproduction: summary\n\n`{command}`\n"]
  for question in questions:
    qruns = [r for r in runs if r.question == question]
    qdir = out / question
    qdir.mkdir(parents=True, exist_ok=True)
    if not results.empty:
      results[results["question"] == question].to_csv(qdir / "results.csv", index=False)
    if not finals.empty:
      finals[finals["question"] == question].to_csv(qdir / "finals.csv", index=False)
    stats = summarize(finals, question, args.reps)
    paths = figures(question, results, stats, out, args.table)
    all_figures += paths
    q_seconds = sum(seconds.get(f"{question}/{r.name}", 0.0) for r in qruns) or None
    blocks[question] = question_block(question, command, stats, paths, q_seconds,
                                      qruns[0].config.num_seeds,
                                      figure_prefix=f"{args.docs.name}/" if args.docs else "",
                                      table=args.table)
    summary.append(question_block(question, command, stats, paths, q_seconds,
                                  qruns[0].config.num_seeds, figure_prefix=f"{question}/",
                                  table=args.table))
  (out / "summary.md").write_text("\n".join(summary))
  print("\n".join(summary))
  if args.docs is not None:
    md = write_docs(args.docs, blocks, all_figures)
    print(f"wrote {md} and {len(all_figures)} figure(s) under {args.docs}/")
  return 0


if __name__ == "__main__":
  sys.exit(main())
