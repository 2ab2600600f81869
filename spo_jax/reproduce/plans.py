"""Which runs answer which of the paper's questions, at which scale.

A plan is data (spo_jax/reproduce/settings.py): `PLANS[scale]` names the environment of
each question, the noise grids and the sizes; `plan_runs` turns it into `Run`s, one compiled
training run each (all seeds vmapped). Nothing here compiles or trains.

Equal labels (Q2, Q3). A rater answers a query with one label, so SPO and the reward model
are compared at equal numbers of LABELS (`equal_label_configs`): with k labels per
trajectory, SPO draws k random opponents per trajectory and one Bernoulli label per query
(`labels = 'sampled'`, `num_opponents = k`: N k labels per iteration) and the reward model
labels `rm_queries_per_iteration` = N k pairs per iteration, so at every iteration both have
consumed the same labels (`train/total_feedback`) on the same env steps. SPO with soft labels
over all pairs (the teacher's probability itself, N (N - 1) / 2 noise-free queries per
iteration) stays as a marked reference (method 'spo_soft'), not a competitor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from spo_jax.presets import preset
from spo_jax.reproduce.settings import (  # noqa: F401 (re-exported: the plan's tables)
  CONTROL_TUNED,
  CPU_ENVS,
  GPU_ENVS,
  MATRIX_TUNED,
  PLANS,
  TINY_ENVS,
  EnvSettings,
  ScalePlan,
)

QUESTIONS = ("q1", "q2", "q3", "q4")
SCALES = ("cpu", "gpu")
# Command-line method name -> Config.reward_source.
METHODS = {"spo": "spo", "rm": "reward_model", "ppo": "ground_truth", "spo_soft": "spo"}
METHOD_LABELS = {"spo": "SPO", "rm": "RM (reward model)", "ppo": "PPO (env reward)",
                 "spo_soft": "SPO, soft labels, all pairs (noise-free reference)"}
METHOD_COLORS = {"spo": "tab:blue", "rm": "tab:orange", "ppo": "tab:green",
                 "spo_soft": "tab:gray"}
# Methods drawn as references (dashed), not competitors at equal labels.
REFERENCE_METHODS = ("spo_soft",)
NONMARKOV = ("constraint", "deadline", "peak", "steady")
TITLES = {"q1": "Q1: intransitive preferences", "q2": "Q2: maximum-reward preferences",
          "q3": "Q3: noisy preferences", "q4": "Q4: non-Markovian preferences"}
# Q1's matrix-game payoff table when --table is not given.
DEFAULT_TABLE = "cycle3"


class Run(NamedTuple):
  """One compiled training run (all seeds vmapped) and how to read it."""

  question: str
  name: str  # directory under OUT/<question>/
  method: str  # 'spo', 'rm' or 'ppo'
  setting: str  # 'matrix_game', 'control', 'oracle', 'bradley_terry', 'mistake', a Q4 teacher
  level: float | None  # Q3: beta or epsilon; None elsewhere
  config: Any  # spo_jax.Config
  measure: bool  # roll out the final policies with the teacher to measure its properties
  # Q1 control: the frozen policies ('last', 'mixture') whose exploitability a best response
  # of `exploit_iterations` PPO iterations estimates after training (`best_response.py`).
  exploit: tuple[str, ...] = ()
  exploit_iterations: int = 0
  exploit_episodes: int = 0  # pairs that measure each best response (0: final_episodes)


def scale_plan(scale: str, tiny: bool = False) -> ScalePlan:
  """`PLANS[scale]`, or the tiny smoke-test plan when `tiny` (which ignores `scale`)."""
  return PLANS["tiny" if tiny else scale]


def base_config(env: str, settings: EnvSettings, seeds: int, tiny: bool):
  """`preset(env)` resized by `settings` to S = `seeds` vmapped seeds 0..S-1.

  Returns a `spo_jax.Config` (not validated: `cli.validate_runs` does that for all runs).
  """
  # The questions are about whole-episode preferences (non-Markovian teachers judge whole
  # episodes): the locomotion presets' segments (and hopper's episode term on top of them),
  # uncentred rewards and CPU backend are not taken over; a plan's overrides may still set them.
  whole_episodes = dict(segment_length=0, episode_weight=0.0, center_rewards=True, backend=None)
  config = preset(env).replace(
      num_envs=settings.num_envs, episode_length=settings.episode_length,
      num_timesteps=settings.num_timesteps, max_iterations=settings.max_iterations,
      num_seeds=seeds, seed=0, target_return=None, **{**whole_episodes, **settings.overrides})
  if not tiny and config.batch_size % config.num_minibatches:
    config = config.replace(num_minibatches=1)
  return config


def matrix_config(plan: ScalePlan, seeds: int, table: str, tiny: bool):
  """Q1's matrix game: `plan.matrix_iterations` iterations on payoff `table`, S = `seeds`."""
  config = preset("matrix_game").replace(
      teacher="matrix_game", teacher_table=table, num_seeds=seeds, seed=0,
      num_timesteps=10**12, max_iterations=plan.matrix_iterations,
      eval_every=max(1, plan.matrix_iterations // 30), checkpoint_every=0,
      rm_queries_per_iteration=64)
  if tiny:
    config = config.replace(num_envs=8, eval_every=1, update_epochs=1)
  return config


def _q1_runs(plan: ScalePlan, base: Callable, env: str | None, seeds: int, table: str,
             tiny: bool) -> list[Run]:
  matrix = matrix_config(plan, seeds, table, tiny)
  # Every checkpoint kept, one per `mixture_every` iterations: SPO's time-averaged policy is
  # the uniform mixture of those iterates (`best_response.load_frozen(run, 'mixture')`).
  env = plan.control_env if env is None else env
  raters = plan.control_raters if env == plan.control_env else ""
  tuned = plan.control_tuned if env == plan.control_env else {}
  control = base(env).replace(teacher="intransitive", teacher_raters=raters,
                              checkpoint_every=plan.mixture_every, keep_checkpoints=0)
  # SPO's oldest kept iterate (after `mixture_every` iterations) is the positive control: a
  # near-untrained policy, whose exploitability is the measure's starting value.
  exploit = {"spo": ("first", "last", "mixture"), "rm": ("last",)}
  return ([Run("q1", f"matrix-{m}", m, "matrix_game", None,
               matrix.replace(reward_source=METHODS[m], **MATRIX_TUNED[m]), False)
           for m in ("spo", "rm")]
          + [Run("q1", f"control-{m}", m, "control", None,
                 control.replace(reward_source=METHODS[m], **tuned.get(m, {})), True,
                 exploit[m], plan.br_iterations, plan.br_episodes) for m in ("spo", "rm")])


def equal_label_configs(config, labels_per_trajectory: int) -> dict[str, Any]:
  """Method -> config of an equal-label comparison on `config` (a `spo_jax.Config`), k =
  `labels_per_trajectory` (checked by `check_labels_per_trajectory`):

    spo       sampled labels, k random opponents per trajectory: N k labels per iteration
    rm        rm_queries_per_iteration = N k labelled pairs per iteration (its buffer holds
              at least one iteration's pairs)
    spo_soft  soft labels over all pairs: the noise-free reference
  """
  k, n = labels_per_trajectory, config.num_envs
  return {
      "spo": config.replace(reward_source="spo", labels="sampled", num_opponents=k),
      "rm": config.replace(reward_source="reward_model", rm_queries_per_iteration=n * k,
                           rm_buffer_size=max(config.rm_buffer_size, n * k)),
      "spo_soft": config.replace(reward_source="spo", labels="soft", num_opponents=0),
  }


def label_budget_range(plan: ScalePlan, env: str | None = None) -> tuple[int, int]:
  """(lowest, highest) labels per trajectory the plan's Q2/Q3 envs can honour: at least one
  label per trajectory, at most N - 1 (one per other trajectory of the batch), N the
  smallest batch among those envs (`env`: only that one)."""
  names = (env,) if env is not None else (*plan.q2_envs, plan.q3_env)
  return 1, min(plan.envs[name].num_envs for name in names) - 1


def check_labels_per_trajectory(plan: ScalePlan, labels_per_trajectory: int,
                                env: str | None = None) -> str | None:
  """None when the equal-label budget k can be honoured, else one line naming the field and
  the allowed range (the CLI refuses the plan with it before anything runs)."""
  low, high = label_budget_range(plan, env)
  k = labels_per_trajectory
  if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= high:
    return (f"labels_per_trajectory (--labels-per-trajectory) = {k!r} cannot be honoured: "
            f"SPO and the reward model are compared at equal labels, at least one label per "
            f"trajectory and at most one per other trajectory of the batch; use {low}..{high}")
  return None


def _equal_label_runs(question: str, prefix: str, setting: str, level: float | None, config,
                      k: int, methods: tuple[str, ...],
                      tuned: dict[str, dict[str, Any]]) -> list[Run]:
  configs = equal_label_configs(config, k)
  return [Run(question, f"{prefix}-{method.replace('_', '-')}", method, setting, level,
              configs[method].replace(**tuned.get(method.removesuffix("_soft"), {})), False)
          for method in methods]


def _q2_runs(plan: ScalePlan, base: Callable, env: str | None, k: int,
             soft_reference: bool) -> list[Run]:
  runs = []
  for name in ((env,) if env is not None else plan.q2_envs):
    config = base(name).replace(teacher="oracle")
    # Several envs (the gpu plan) share OUT/q2/: their run names and settings name the env.
    prefix = "" if len(plan.q2_envs) == 1 or env is not None else f"{name}-"
    setting = "oracle" if not prefix else f"oracle {name}"
    tuned = plan.envs[name].tuned
    runs += _equal_label_runs("q2", f"{prefix}oracle", setting, None, config, k,
                              ("spo", "rm"), tuned)
    runs.append(Run("q2", f"{prefix}oracle-ppo", "ppo", setting, None,
                    config.replace(reward_source=METHODS["ppo"]), False))
    if soft_reference:
      runs += _equal_label_runs("q2", f"{prefix}oracle", setting, None, config, k,
                                ("spo_soft",), tuned)
  return runs


def _q3_runs(plan: ScalePlan, base: Callable, env: str | None, k: int,
             soft_reference: bool) -> list[Run]:
  name = env if env is not None else plan.q3_env
  config = base(name)
  scale_r, tuned = plan.envs[name].bt_scale, plan.envs[name].tuned
  methods = ("spo", "rm", "spo_soft") if soft_reference else ("spo", "rm")
  runs = []
  for beta in plan.betas:
    teacher = config.replace(teacher="bradley_terry", teacher_beta=beta, teacher_scale=scale_r)
    runs += _equal_label_runs("q3", f"bradley_terry-beta{beta:g}", "bradley_terry", beta,
                              teacher, k, methods, tuned)
  for epsilon in plan.epsilons:
    # mistake(oracle) at epsilon = 0 is the oracle: the same config as Q2's runs, whose
    # finished results `running.execute` then copies instead of training again.
    teacher = config.replace(**({"teacher": "oracle"} if epsilon == 0 else {
        "teacher": "mistake(oracle)", "teacher_epsilon": epsilon}))
    runs += _equal_label_runs("q3", f"mistake-eps{epsilon:g}", "mistake", epsilon, teacher,
                              k, methods, tuned)
  return runs


def _q4_runs(plan: ScalePlan, base: Callable, env: str | None,
             q4_teachers: tuple[str, ...] | None) -> list[Run]:
  name = env if env is not None else plan.q4_env
  config = base(name)
  runs = []
  for teacher in (q4_teachers or plan.q4_teachers):
    fields = plan.envs[name].q4[teacher]
    for method in ("spo", "rm"):
      runs.append(Run("q4", f"{teacher}-{method}", method, teacher, None,
                      config.replace(reward_source=METHODS[method], teacher=teacher,
                                     **fields), True))
  return runs


def plan_runs(question: str, scale: str, seeds: int, *, tiny: bool = False,
              env: str | None = None, q4_teachers: tuple[str, ...] | None = None,
              table: str = DEFAULT_TABLE, labels_per_trajectory: int | None = None,
              soft_reference: bool = True) -> list[Run]:
  """The runs answering `question` at `scale` ('tiny' with `tiny`), S = `seeds` each.

  `env` replaces the scale's environment of every control task (a key of the plan's
  `envs`); `q4_teachers` a subset of `NONMARKOV`; `table` Q1's payoff table;
  `labels_per_trajectory` Q2/Q3's equal-label budget k (None: the plan's); `soft_reference`
  adds the soft-label SPO reference runs to Q2 and Q3. Names and k are not checked here
  (`cli.check_arguments` does); an unknown question gives no runs.
  """
  plan = scale_plan(scale, tiny)
  k = plan.labels_per_trajectory if labels_per_trajectory is None else labels_per_trajectory

  def base(name: str):
    return base_config(name, plan.envs[name], seeds, tiny)

  if question == "q1":
    return _q1_runs(plan, base, env, seeds, table, tiny)
  if question == "q2":
    return _q2_runs(plan, base, env, k, soft_reference)
  if question == "q3":
    return _q3_runs(plan, base, env, k, soft_reference)
  if question == "q4":
    return _q4_runs(plan, base, env, q4_teachers)
  return []


def env_steps_per_seed(config) -> int:
  """The most valid env steps one seed of `config` can take: `num_timesteps`, or fewer when
  `max_iterations` iterations of N x H steps stop it first."""
  if config.max_iterations == 0:
    return config.num_timesteps
  return min(config.num_timesteps,
             config.max_iterations * config.num_envs * config.episode_length)


def dry_run(runs: list[Run], log: Callable[[str], None] = print) -> None:
  """Print the plan: one line per run with its sizes and budget (nothing is compiled)."""
  total = 0
  log(f"{'run':42s} {'env':18s} {'method':12s} {'teacher':18s} {'S':>3s} {'N':>4s} "
      f"{'H':>5s} {'env steps/seed':>15s} {'env steps, all seeds':>21s}")
  for run in runs:
    c = run.config
    per_seed = env_steps_per_seed(c)
    total += per_seed * c.num_seeds
    log(f"{run.question + '/' + run.name:42s} {c.env:18s} {c.reward_source:12s} "
        f"{c.teacher:18s} {c.num_seeds:3d} {c.num_envs:4d} {c.episode_length:5d} "
        f"{per_seed:15,d} {per_seed * c.num_seeds:21,d}")
  log(f"{len(runs)} runs, at most {total:,d} env steps in all (every config validated)")
