"""What the training loop's steps share (`HostLoop`): the jitted functions over seeds, the run
directory's checkpointer and logger, the host's copy of the state's device counters (env
steps, physics steps, queries, labels: counters.py) and the wall time, which the checkpoint's
meta carries, and the rows awaiting the next evaluation. `train.py` calls its steps in
order: restore or init → iterate (each jitted call followed by the numerical guard,
evaluation and logging when due, a checkpoint when due) → finish → close.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from spo_jax import counters as counters_lib
from spo_jax import digests
from spo_jax import progress as progress_lib
from spo_jax import provenance as provenance_lib
from spo_jax import run_dir as run_dir_lib
from spo_jax.checkpoint import Checkpointer, restore_usable, write_text_atomic
from spo_jax.evaluate import seed_slice
from spo_jax.guard import check_guard
from spo_jax.iteration import (
  TrainState,
  policy_params,
  with_hyperparams,
)
from spo_jax.loggers import LogOptions, MetricsLogger
from spo_jax.saved_policy import check_resume_env, read_spec, write_spec
from spo_jax.setup import (
  Setup,
  device_mesh,
  init_over_seeds,
  over_seeds,
  seed_keys,
)
from spo_jax.signals import StopSignal, TrainingInterrupted
from spo_jax.teachers import hook
from spo_jax.write_errors import failed_write


class RunSet(NamedTuple):
  """The runs of a sweep group, trained as one vmapped program (spo_jax/sweep/): run r starts
  from seed `seeds[r]` (exactly as a single run with that seed), trains with the traced values
  `{field: values[field][r]}` and its metric rows carry `tags[r]` (its point and values)."""

  seeds: list[int]
  values: dict[str, list[float]]
  tags: list[dict[str, Any]]


def _to_python(metrics: dict[str, Any]) -> dict[str, float | int]:
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    out[k] = int(v) if np.issubdtype(v.dtype, np.integer) else float(v)
  return out


def _iteration_of(state: TrainState) -> int:
  return int(state.iteration[0])


def _lockstep_physics(iterate: Callable, num_envs: int) -> Callable:
  """`iterate` over vmapped seeds, counting for every seed the physics steps the hardware ran:
  vmapped seeds run their rollout loops in step, so each simulates the longest one
  (N x the most loop steps of any seed, per iteration), not only its own."""

  def lockstep(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    before = state.counters.physics_steps  # [S, 2]
    state, stacked = iterate(state)  # metrics [S, iterations_per_call]
    executed = num_envs * jnp.sum(jnp.max(stacked["train/loop_steps"], axis=0))
    physics = counters_lib.add(before, jnp.broadcast_to(executed, before.shape[:-1]))
    return state._replace(counters=state.counters._replace(physics_steps=physics)), stacked

  return lockstep


class HostLoop:
  """What the host loop's steps share: the jitted functions over seeds, the run directory's
  checkpointer and logger, the host's copy of the counters and the rows awaiting the next
  evaluation."""

  def __init__(self, setup: Setup, run_path: Path | None,
               progress_fn: Callable[[int, dict[str, Any]], None] | None, verbose: bool,
               runs: RunSet | None = None):
    config = self.config = setup.config
    self.setup, self.run_path, self.progress_fn = setup, run_path, progress_fn
    self.file_digests = digests.teacher_file_digests(config)
    fit_metrics = hook(setup.teacher, "fit_metrics")
    if verbose and fit_metrics:
      print("teacher fit: " + ", ".join(f"{k} {float(v):.4g}" for k, v in fit_metrics.items()),
            flush=True)
    num_seeds = config.num_seeds
    self.seeds = [config.seed + i for i in range(num_seeds)]
    self.keys = seed_keys(config)
    self.init = jax.jit(init_over_seeds(setup.fns.init, num_seeds))
    self.tags: list[dict[str, Any]] = [{} for _ in range(num_seeds)]
    self.sweep = runs is not None
    if runs is not None:
      self.seeds, self.tags = list(runs.seeds), list(runs.tags)
      self.keys = jnp.stack([jax.random.PRNGKey(s) for s in self.seeds])
      values = {k: jnp.asarray(v, jnp.float32) for k, v in runs.values.items()}
      run_init = lambda key, run_values: with_hyperparams(setup.fns.init(key), run_values)
      self.init = jax.jit(lambda keys: init_over_seeds(run_init, num_seeds)(keys, values))
    iterate = over_seeds(setup.fns.iteration, num_seeds)
    if num_seeds > 1:
      iterate = _lockstep_physics(iterate, config.num_envs)
    self.iteration = jax.jit(iterate, donate_argnums=0)
    self.evaluate_seeds = jax.jit(over_seeds(setup.evaluate, num_seeds))
    self.game_seeds = (None if setup.game_metrics is None
                       else jax.jit(over_seeds(setup.game_metrics, num_seeds)))
    if verbose and setup.game is not None and setup.game.minimax_winner is not None:
      print("matrix game: exact Minimax Winner "
            + ", ".join(f"{p:.4f}" for p in setup.game.minimax_winner), flush=True)
    # A stream of its own for evaluation, apart from every seed's training keys.
    self.eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(self.keys)
    # The host's copy of the state's device counters (counters.py), read after every call,
    # and the wall time, which only the host can count.
    self.counters: dict[str, Any] = {name: [0] * num_seeds
                                     for name in counters_lib.META_NAMES.values()}
    self.counters["wall_time"] = 0.0
    self.checkpointer: Checkpointer | None = None
    self.provenance: dict[str, Any] | None = None  # this process's entry (with a run dir)
    self.logger: MetricsLogger | None = None
    self.display: Any = None
    self.last_metrics: dict[str, Any] = {}
    self.windows: list[list[dict[str, Any]]] = [[] for _ in range(num_seeds)]
    self.start = time.perf_counter()
    self.compile_time: float | None = None

  # --- restore or init -------------------------------------------------------------------

  def restore_or_init(self, has_checkpoint: bool, overwrite: bool) -> TrainState:
    """The newest usable checkpoint (with its counters), or a fresh state in a new run
    directory; placed on the devices when seeds are sharded."""
    state = None
    if self.run_path is not None:
      self.provenance = provenance_lib.collect()
      if has_checkpoint:
        state = self._restore()
      else:
        self._start_run_dir(overwrite)
    seed_sharding = None
    if self.config.shard == "seeds":
      # Every leaf of the state leads with the seed axis: split it over the devices; jit keeps
      # the layout through the vmapped iteration.
      seed_sharding = jax.sharding.NamedSharding(device_mesh(self.config),
                                                 jax.sharding.PartitionSpec("d"))
      self.keys = jax.device_put(self.keys, seed_sharding)
      self.eval_keys = jax.device_put(self.eval_keys, seed_sharding)
    if state is None:
      state = self.init(self.keys)
    if seed_sharding is not None:
      state = jax.device_put(state, seed_sharding)
    return state

  def _restore(self) -> TrainState:
    run_path = self.run_path
    saved_spec = read_spec(run_path)
    if saved_spec is not None:
      check_resume_env(saved_spec, self.setup.policy_spec, run_path)
    self.checkpointer = Checkpointer(run_path / run_dir_lib.CHECKPOINTS,
                                     self.config.keep_checkpoints)
    # The newest checkpoint that matches its manifest; damaged newer ones are named on
    # stderr and left for the next save of their step to replace.
    _, state, meta = restore_usable(self.checkpointer, jax.eval_shape(self.init, self.keys))
    # Orbax returns arrays committed to a device; `init`'s are not. jit keys its cache on
    # that, so the iteration would compile once for the restored state and again for its own
    # (uncommitted) output: two compiles on every resume instead of one. Placed on the
    # default device the way `init`'s output is, the restored state runs the fresh run's
    # program. (A sharded run places both on the mesh after this.)
    state = jax.tree.map(lambda leaf: (jnp.asarray(np.asarray(leaf))
                                       if leaf.is_fully_addressable else leaf), state)
    self.counters["wall_time"] = meta["counters"].get("wall_time", 0.0)
    self.counters.update(counters_lib.to_meta(state.counters))
    digests.check_same_files(meta.get("files", {}), self.file_digests, run_path)
    if not (run_path / run_dir_lib.POLICY).exists():  # a run from before policy.json
      with failed_write("policy", run_path / run_dir_lib.POLICY, self.checkpointer,
                         run_path):
        write_spec(run_path, self.setup.policy_spec)
    # Only a resume that will go ahead is recorded; a line warns of changed library versions.
    with failed_write("provenance", run_path / run_dir_lib.PROVENANCE, self.checkpointer,
                       run_path):
      provenance_lib.record_resume(run_path, self.provenance)
    return state

  def _start_run_dir(self, overwrite: bool) -> None:
    run_path = self.run_path
    if overwrite:
      run_dir_lib.clear(run_path)
    run_dir_lib.remove_leftovers(run_path)
    # Atomic: a kill leaves no config.json (an empty run dir: start it again as new) or a
    # whole one, never a truncated file that --resume cannot read.
    with failed_write("config", run_path / run_dir_lib.CONFIG, None, run_path):
      write_text_atomic(run_path / run_dir_lib.CONFIG, self.config.to_json())
    with failed_write("policy", run_path / run_dir_lib.POLICY, None, run_path):
      write_spec(run_path, self.setup.policy_spec)
    with failed_write("provenance", run_path / run_dir_lib.PROVENANCE, None, run_path):
      provenance_lib.write(run_path, provenance_lib.new_record(self.provenance))
    self.checkpointer = Checkpointer(run_path / run_dir_lib.CHECKPOINTS,
                                     self.config.keep_checkpoints)

  def open_log(self, state: TrainState, has_checkpoint: bool, log_options: LogOptions,
               progress: str) -> None:
    """The metrics files (on resume, rows of iterations after the checkpoint are dropped from
    every file: the loop recomputes them) and the progress display."""
    if self.run_path is not None:
      with failed_write("metrics", self.run_path / run_dir_lib.METRICS, self.checkpointer,
                         self.run_path):
        self.logger = MetricsLogger(
            self.run_path, log_options, self.config.to_dict(), self.config.num_seeds,
            resume_iteration=_iteration_of(state) if has_checkpoint else None,
            run_tags=[{**tags, "seed": seed} for tags, seed in zip(self.tags, self.seeds,
                                                                   strict=True)]
            if self.sweep else None)
    self.display = progress_lib.make_progress(self.config, progress)
    self.start = time.perf_counter() - self.counters["wall_time"]

  # --- iterate ---------------------------------------------------------------------------

  def iterate(self, state: TrainState, stop_signal: StopSignal | None) -> TrainState:
    """Jitted calls until done: after each, evaluate and log when due (stop early at the
    target return), then checkpoint when due. A stop signal saves and raises between calls."""
    config = self.config
    while not self.finished(state):
      if stop_signal is not None and stop_signal.received is not None:
        self.save(state)
        raise TrainingInterrupted(stop_signal.received, _iteration_of(state), self.run_path)
      steps_before = min(self.counters["env_steps"])
      state = self.step(state)
      it = _iteration_of(state)
      self.display.advance(min(self.counters["env_steps"]), it)
      if self.evaluation_due(it, steps_before) or self.finished(state):
        self.last_metrics = self.evaluate(state)
        self.report(self.last_metrics)
        if self.reached_target(self.last_metrics):
          break
      if config.checkpoint_every and it % config.checkpoint_every < config.iterations_per_call:
        self.save(state)
    return state

  def step(self, state: TrainState) -> TrainState:
    """One jitted call (`iterations_per_call` iterations), the numerical guard, the host's
    copy of the counters and the rows awaiting the next evaluation."""
    t0 = time.perf_counter()
    state, stacked = self.iteration(state)
    stacked = jax.device_get(stacked)  # leaves [S, iterations_per_call]
    if self.compile_time is None:
      self.compile_time = time.perf_counter() - t0
    check_guard(stacked, self.config, _iteration_of(state), self.seeds, self.checkpointer,
                self.run_path)
    self.counters.update(counters_lib.to_meta(state.counters))
    for s in range(self.config.num_seeds):
      for i in range(self.config.iterations_per_call):
        self.windows[s].append(_to_python({k: v[s, i] for k, v in stacked.items()}))
    return state

  def finished(self, state: TrainState) -> bool:
    it = _iteration_of(state)
    return (min(self.counters["env_steps"]) >= self.config.num_timesteps
            or bool(self.config.max_iterations and it >= self.config.max_iterations))

  def evaluation_due(self, it: int, steps_before: int) -> bool:
    if self.config.eval_every_steps:
      every = self.config.eval_every_steps
      return min(self.counters["env_steps"]) // every > steps_before // every
    return it % self.config.eval_every < self.config.iterations_per_call

  # --- evaluate and log ------------------------------------------------------------------

  def evaluate(self, state: TrainState) -> dict[str, Any]:
    """One metrics row per seed, logged; returns the single row, or their mean with
    `per_seed`."""
    it = _iteration_of(state)
    eval_metrics = jax.device_get(self.evaluate_seeds(
        policy_params(state), jax.vmap(lambda k: jax.random.fold_in(k, it))(self.eval_keys)))
    if self.game_seeds is not None:
      eval_metrics.update(jax.device_get(self.game_seeds(state)))
    rows = [self._row(eval_metrics, i, it) for i in range(self.config.num_seeds)]
    for window in self.windows:
      window.clear()
    if self.logger is not None:
      with failed_write("metrics row", self.run_path / run_dir_lib.METRICS, self.checkpointer,
                         self.run_path):
        self.logger.log(rows)
    if self.config.num_seeds == 1:
      return rows[0]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    summary.update({"step": min(r["step"] for r in rows), "iteration": it, "per_seed": rows})
    return summary

  def _row(self, eval_metrics: dict[str, Any], i: int, it: int) -> dict[str, Any]:
    """Seed i's row: its evaluation, the mean of its training metrics since the last row,
    its counters."""
    counters, window = self.counters, self.windows[i]
    row = _to_python(seed_slice(eval_metrics, i))
    if window:
      for k in window[-1]:
        row[k] = float(np.mean([w[k] for w in window]))
    row.update(self.tags[i])
    row.update({"step": counters["env_steps"][i], "iteration": it, "seed": self.seeds[i],
                "train/physics_steps_total": counters["physics_steps"][i],
                "train/total_queries": counters["total_queries"][i],
                "train/total_feedback": counters["total_feedback"][i],
                "time/elapsed_s": time.perf_counter() - self.start})
    if self.compile_time is not None:
      row["time/first_call_s"] = self.compile_time
    return row

  def report(self, metrics: dict[str, Any]) -> None:
    self.display.evaluation(metrics)
    if self.progress_fn is not None:
      self.progress_fn(metrics["step"], metrics)

  def reached_target(self, metrics: dict[str, Any]) -> bool:
    if self.config.target_return is None:
      return False
    rows = metrics.get("per_seed", [metrics])
    return all(r["eval/episode_reward"] >= self.config.target_return for r in rows)

  # --- checkpoint ------------------------------------------------------------------------

  def save(self, state: TrainState) -> None:
    if self.checkpointer is not None:
      self.counters["wall_time"] = time.perf_counter() - self.start
      it = _iteration_of(state)
      with failed_write("checkpoint", self.checkpointer.directory / str(it), self.checkpointer,
                         self.run_path):
        self.checkpointer.save(it, state, {"config": self.config.to_dict(),
                                           # the device counters join it in save()
                                           "counters": {"wall_time": self.counters["wall_time"]},
                                           "files": self.file_digests})

  def finish(self, state: TrainState) -> None:
    """A last evaluation (unless the last call's was one) and checkpoint; flush the logs."""
    if not self.last_metrics or self.last_metrics["iteration"] != _iteration_of(state):
      self.last_metrics = self.evaluate(state)
      self.report(self.last_metrics)
    self.save(state)
    if self.logger is not None:
      with failed_write("metrics", self.run_path / run_dir_lib.METRICS, self.checkpointer,
                         self.run_path):
        self.logger.close()  # the last TensorBoard flush can meet a full disk too

  def close(self, stop_signal: StopSignal | None) -> None:
    if self.display is not None:
      self.display.close()
    if stop_signal is not None:
      stop_signal.restore()
    if self.logger is not None:
      with contextlib.suppress(Exception):  # already failing: report the first error
        self.logger.close()
    if self.checkpointer is not None:
      self.checkpointer.close()
