"""Executing a plan: one compiled run per (question, method, setting), skipped when done.

Each run lives in OUT/<question>/<run.name>/: `spo_jax.train`'s files (config.json,
metrics.jsonl, checkpoints/) and `final.json`, written last, with the run's config and what
was measured after training. A run whose final.json holds its config is finished; one with
a checkpoint but no final.json was interrupted and is resumed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import spo_jax
from spo_jax import best_response as br
from spo_jax.checkpoint import Checkpointer, read_run_config
from spo_jax.config import ConfigError
from spo_jax.evaluate import head_to_head, rollout_policy
from spo_jax.reproduce.plans import Run
from spo_jax.rollout import rollout
from spo_jax.run_dir import RunDirBusy
from spo_jax.teachers import nonmarkov
from spo_jax.teachers.raters import MajorityOfRaters
from spo_jax.train import build, over_seeds, policy_params, seed_keys

FINAL_FILE = "final.json"
HEAD_TO_HEAD_FILE = "head_to_head.json"  # under OUT/q1/
# Fixed keys of the final rollouts and the head-to-head duels: re-measuring a finished run
# gives the same numbers.
MEASURE_KEY = 2024
HEAD_TO_HEAD_KEY = 7
EXPLOIT_KEY = 11


def finished(run_dir: Path, config) -> bool:
  """Whether `run_dir` holds a final.json written for exactly `config`."""
  path = run_dir / FINAL_FILE
  if not path.is_file():
    return False
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError:
    return False
  return saved.get("config") == json.loads(config.to_json())


def find_twin(out: Path, run_dir: Path, config) -> Path | None:
  """A finished run elsewhere under `out` with exactly this config (Q3's noiseless point is
  Q2's oracle run), or None."""
  for path in sorted(out.glob(f"*/*/{FINAL_FILE}")):
    if path.parent != run_dir and finished(path.parent, config):
      return path.parent
  return None


def train_run(run: Run, run_dir: Path, force: bool, log: Callable[[str], None]) -> float:
  """Train `run` in `run_dir` (resuming an interrupted run unless `force`); returns the wall
  time of this call in seconds."""
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


def restore_params(run_dir: Path):
  """(setup, PolicyParams with a leading seed axis [S, ...]) of a run's last checkpoint;
  `setup` is `spo_jax.train.build` of the run's saved config."""
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
  """Per-episode measures [E] of what the teacher judges, read from its summaries [E, ...].

  intransitive: `rater_k` = rater k's utility U_k = sum_m W[k, m] sum_t q_m,t;
  constraint: `satisfied` = 1 if q_t <= threshold at every valid step;
  deadline: `reached` = 1 if the level was reached within the deadline, `steps_to_reach`
  (the deadline + 1 where it was not); peak: `peak` = max_t q_t; steady: `variance`.
  Always `return`, the env's return `returns` [E].
  """
  out = {"return": returns}
  if isinstance(teacher, MajorityOfRaters):
    utilities = jax.vmap(teacher.utilities)(summaries)  # [E, K]
    for k in range(teacher.num_raters):
      out[f"rater_{k}"] = utilities[:, k]
  elif isinstance(teacher, nonmarkov.Constraint):
    out["satisfied"] = 1.0 - summaries["violated"].astype(jnp.float32)
  elif isinstance(teacher, nonmarkov.Deadline):
    reached = nonmarkov.Deadline.reached_in_time(summaries)
    out["reached"] = reached.astype(jnp.float32)
    out["steps_to_reach"] = jnp.where(reached, summaries["reached"],
                                      teacher.deadline + 1).astype(jnp.float32)
  elif isinstance(teacher, nonmarkov.Peak):
    out["peak"] = summaries["peak"]
  elif isinstance(teacher, nonmarkov.Steady):
    out["variance"] = nonmarkov.Steady.variance(summaries)
  return out


def make_measure(setup, episodes: int) -> Callable:
  """jit(vmap over seeds) of: roll out the deterministic policy `episodes` times with the
  configured teacher folded in; (params [S, ...], keys [S]) -> the per-seed means [S] of
  `teacher_properties`."""
  config = setup.config
  teacher = setup.teacher  # the configured teacher (`build` makes it for spo and rm runs)

  def one_seed(params, key):
    policy = rollout_policy(setup.networks, params, config.normalize_observations, True)
    result = rollout(setup.env, policy, key, episodes, config.episode_length, teacher)
    returns = jnp.sum(result.trajectory.reward, axis=0)
    props = teacher_properties(teacher, result.summaries, returns)
    return {k: jnp.mean(v) for k, v in props.items()}

  return jax.jit(jax.vmap(one_seed))


def measure(run: Run, run_dir: Path, episodes: int) -> dict[str, list[float]]:
  """The final policies' `teacher_properties`, one mean per seed, from the last checkpoint."""
  setup, params = restore_params(run_dir)
  keys = jax.random.split(jax.random.PRNGKey(MEASURE_KEY), run.config.num_seeds)
  values = jax.device_get(make_measure(setup, episodes)(params, keys))
  return {k: [float(x) for x in np.asarray(v)] for k, v in values.items()}


def measure_exploitability(run: Run, run_dir: Path, episodes: int) -> dict[str, list[float]]:
  """Per seed, the best-response exploitability estimate of each of `run.exploit` ('last':
  the final policy; 'first': the oldest kept checkpoint; 'mixture': the uniform mixture of
  every kept checkpoint, one per episode), over `run.exploit_episodes` pairs (or `episodes`),
  judged by the run's teacher.

  Two responders are trained for `run.exploit_iterations` PPO iterations against each frozen
  policy, configured as the run: one from scratch (`_cold`) and one started as a copy of the
  frozen policy's last iterate (`_warm`). Each is a lower bound on the exploitability, and
  neither start works everywhere: against hard raters a responder from scratch loses every
  pair and gets no gradient (`best_response` explains it), and a copy of a policy that
  travels one way stays stuck at the tie it starts from (Q1's spatial raters: 0.01 after 200
  iterations where the responder from scratch reached 0.49). `br_exploitability_<target>` is
  the larger of the two per seed (the best responder found; picking it biases the estimate up
  by at most about its sampling error), `..._start` the larger of their values before
  training, and `mixture_iterates` how many iterates the mixture holds. The frozen policies
  sample their actions, as the responders do."""
  config = run.config
  setup = build(config.replace(num_seeds=1))  # the run's env and teacher
  keys = jax.random.split(jax.random.PRNGKey(EXPLOIT_KEY), config.num_seeds)
  pairs = max(run.exploit_episodes or episodes, 2)
  out: dict[str, list[float]] = {}
  for target in run.exploit:
    # The policy as trained, sampling its actions: the Minimax Winner is a distribution
    # over trajectories, and a sampled copy would lose every pair to its own mode under
    # hard raters (more effort, less upright), leaving the responder no gradient.
    frozen = br.load_frozen_seeds(run_dir, target, deterministic=False)
    cold, warm = (br.exploitability_over_seeds(frozen, setup.env, setup.teacher, config, keys,
                                               iterations=run.exploit_iterations,
                                               eval_episodes=pairs, warm_start=start)
                  for start in (False, True))
    name = f"br_exploitability_{target}"
    out[f"{name}_cold"] = [r.estimate for r in cold]
    out[f"{name}_warm"] = [r.estimate for r in warm]
    out[name] = [max(c.estimate, w.estimate) for c, w in zip(cold, warm, strict=True)]
    out[f"{name}_start"] = [max(c.start, w.start) for c, w in zip(cold, warm, strict=True)]
    if target == "mixture":
      out["mixture_iterates"] = [float(r.num_iterates) for r in warm]
  return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
  """The rows of RUN_DIR/metrics.jsonl in file order ([] without the file); a single-seed
  run's rows get `seed` 0."""
  path = run_dir / "metrics.jsonl"
  if not path.exists():
    return []
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  for row in rows:
    row.setdefault("seed", 0)
  return rows


def last_rows(run_dir: Path) -> list[dict[str, Any]]:
  """The last evaluation row of each seed, by seed (rows re-written by a resume: the last
  wins)."""
  last: dict[int, dict[str, Any]] = {}
  for row in read_metrics(run_dir):
    if row["seed"] not in last or row["iteration"] >= last[row["seed"]]["iteration"]:
      last[row["seed"]] = row
  return [last[s] for s in sorted(last)]


def curve_area(steps: list[float], returns: list[float], budget: float | None = None) -> float:
  """The area under one seed's learning curve per env step: the trapezoid integral of the
  evaluation return over env steps, divided by the steps it spans,

      (1 / (s_n - s_1)) * sum_i (s_i - s_{i-1}) (r_i + r_{i-1}) / 2,

  i.e. the curve's mean height (the return alone when there is one evaluation). With
  `budget`, the curve is cut at that many env steps (the return there interpolated
  linearly), so that seeds and methods that ran past the budget are compared over the same
  steps: a run stops when its slowest seed reaches the budget, and faster seeds run on. It
  ranks methods by how fast they learn even where their final returns meet at a cap."""
  s, r = np.asarray(steps, float), np.asarray(returns, float)
  if budget is not None and s[0] < budget < s[-1]:
    keep = s < budget
    s, r = np.append(s[keep], budget), np.append(r[keep], np.interp(budget, s, r))
  if len(s) == 1:
    return float(r[0])
  return float(np.sum(np.diff(s) * (r[1:] + r[:-1]) / 2) / (s[-1] - s[0]))


def curve_areas(run_dir: Path, budget: float | None = None) -> list[float]:
  """`curve_area` of each seed's evaluations (by seed, as `last_rows`), cut at `budget`."""
  curves: dict[int, dict[int, tuple[float, float]]] = {}
  for row in read_metrics(run_dir):
    if "eval/episode_reward" in row:  # a resumed iteration's row replaces the earlier one
      curves.setdefault(row["seed"], {})[row["iteration"]] = (row["step"],
                                                              row["eval/episode_reward"])
  areas = []
  for seed in sorted(curves):
    points = [curves[seed][i] for i in sorted(curves[seed])]
    areas.append(curve_area([s for s, _ in points], [r for _, r in points], budget))
  return areas


def final_measures(run: Run, run_dir: Path, episodes: int) -> dict[str, Any]:
  """final.json's `seeds` and `measures` (each a list over seeds) of a trained run."""
  last = last_rows(run_dir)
  measures: dict[str, list[float]] = {}
  if run.config.env != "matrix_game":  # the game has no env reward: its return is always 0
    measures["final_eval_return"] = [r["eval/episode_reward"] for r in last]
    measures["return_auc"] = curve_areas(run_dir, budget=run.config.num_timesteps)
  # Matrix game (categorical policy): exploitability and action probabilities of the last
  # iterate and of the time-averaged policy at the last evaluation.
  for name in sorted(last[0] if last else []):
    if name.startswith(("eval/exploitability_", "eval/prob_")):
      measures[name.split("/")[1]] = [r[name] for r in last]
  if run.measure:
    measures.update(measure(run, run_dir, episodes))
  if run.exploit:
    measures.update(measure_exploitability(run, run_dir, episodes))
  return {"seeds": [r["seed"] for r in last], "measures": measures}


def execute(runs: list[Run], out: Path, force: bool, episodes: int,
            log: Callable[[str], None] = print) -> dict[str, float]:
  """Train and measure every run not already finished (all of them with `force`); returns
  the wall seconds per run ('<question>/<name>') spent in this call (0 for skipped runs)."""
  seconds: dict[str, float] = {}
  for index, run in enumerate(runs, 1):
    run_dir = out / run.question / run.name
    key = f"{run.question}/{run.name}"
    if not force and finished(run_dir, run.config):
      log(f"[{index}/{len(runs)}] {key}: finished before, skipped (--force re-runs)")
      seconds[key] = 0.0
      continue
    twin = None if force else find_twin(out, run_dir, run.config)
    if twin is not None:
      if run_dir.exists():
        shutil.rmtree(run_dir)
      shutil.copytree(twin, run_dir)
      log(f"[{index}/{len(runs)}] {key}: the same config as {twin.relative_to(out)}, copied")
      seconds[key] = 0.0
      continue
    log(f"[{index}/{len(runs)}] {key}: {run.config.env}, {run.config.reward_source}, "
        f"teacher {run.config.teacher}, S={run.config.num_seeds} seeds")
    train_s = train_run(run, run_dir, force, log)
    start = time.perf_counter()
    final: dict[str, Any] = {"config": json.loads(run.config.to_json()), "train_s": train_s}
    final.update(final_measures(run, run_dir, episodes))
    final["measure_s"] = time.perf_counter() - start
    # Written last: its presence (with this config) is what marks the run finished.
    (run_dir / FINAL_FILE).write_text(json.dumps(final, indent=1))
    seconds[key] = train_s + final["measure_s"]
    log(f"  done in {seconds[key]:.0f} s (training {train_s:.0f} s)")
  return seconds


def head_to_head_q1(runs: list[Run], out: Path, force: bool, episodes: int,
                    log: Callable[[str], None] = print) -> dict[str, Any] | None:
  """The raters' verdict between the final SPO and RM policies of Q1's control task: seed i
  of SPO against seed i of RM, `episodes` episodes each from the same resets, every pair
  judged by the intransitive teacher (`spo_jax.evaluate.head_to_head`). Cached in
  OUT/q1/head_to_head.json, recomputed when either run is newer. None when `runs` lacks
  either control run."""
  by_method = {r.method: r for r in runs if r.question == "q1" and r.setting == "control"}
  if set(by_method) != {"spo", "rm"}:
    return None
  dirs = {m: out / "q1" / r.name for m, r in by_method.items()}
  path = out / "q1" / HEAD_TO_HEAD_FILE
  newest = max((d / FINAL_FILE).stat().st_mtime for d in dirs.values())
  if not force and path.exists() and path.stat().st_mtime >= newest:
    return json.loads(path.read_text())
  start = time.perf_counter()
  setup_a, params_a = restore_params(dirs["spo"])
  setup_b, params_b = restore_params(dirs["rm"])
  config = setup_a.config
  teacher = setup_a.teacher  # the intransitive raters both runs were trained with

  def one_seed(pa, pb, key):
    policy_a = rollout_policy(setup_a.networks, pa, config.normalize_observations, True)
    policy_b = rollout_policy(setup_b.networks, pb, setup_b.config.normalize_observations, True)
    return head_to_head(setup_a.env, teacher, policy_a, policy_b, key, episodes,
                        config.episode_length)

  keys = jax.random.split(jax.random.PRNGKey(HEAD_TO_HEAD_KEY), config.num_seeds)
  result = jax.device_get(jax.jit(jax.vmap(one_seed))(params_a, params_b, keys))
  data = {"seeds": list(range(config.seed, config.seed + config.num_seeds)),
          "win_rate_spo_vs_rm": [float(x) for x in np.asarray(result["win_rate"])],
          "win_rate_stderr": [float(x) for x in np.asarray(result["win_rate_stderr"])],
          "seconds": time.perf_counter() - start}
  path.write_text(json.dumps(data, indent=1))
  log(f"q1 head-to-head SPO vs RM: {data['seconds']:.0f} s")
  return data

