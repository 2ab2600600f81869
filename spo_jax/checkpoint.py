"""Checkpoints with Orbax: the whole `TrainState`, the config and the counters.

Layout of a run directory (spo_jax/run_dir.py owns the names):

  RUN_DIR/config.json          the run's Config
  RUN_DIR/metrics.jsonl        one JSON object per evaluation
  RUN_DIR/checkpoints/<step>/  Orbax checkpoints, step = training iteration
     state/                    the TrainState pytree (params, optimizer, normalizer, key, ...)
                               without its counters, which go to meta
     meta/                     JSON: config, counters (env steps, queries, ...; one per seed),
                               wall time
     MANIFEST.json             size and SHA-256 of every file above, written last

Crash safety. Orbax (0.12.8) writes step k into `checkpoints/k.orbax-checkpoint-tmp` and
renames it to `checkpoints/k` once every file is written; a process killed mid-save leaves the
tmp folder behind (Orbax ignores it and removes it when step k is saved again). A folder named
`k` can still be incomplete when Orbax was killed while deleting an old step (it deletes in
place), or after a copy or sync gone wrong, so `complete_steps` also checks that the files
every finished checkpoint holds are there; `latest_step` is the newest complete one. A kill at
any moment therefore leaves the last complete checkpoint loadable, and `--resume` picks it.

Damage. A complete folder can still hold wrong bytes (a disk error, a hand edit, a copy that
truncated a file). Each save ends with MANIFEST.json (`digests.write_manifest`);
`complete_steps(verify=True)` keeps only checkpoints whose files match it, and
`restore_usable` restores the newest of those, saying which newer ones it skipped and why.
Checkpoints from before manifests existed are trusted as before (and skipped too when Orbax
cannot read them).

Full disks. A save that fails (`OSError`, or Orbax's error wrapping one) leaves no temporary
folder behind and every earlier checkpoint as it was; Orbax's and asyncio's shutdown noise is
kept from the terminal. The caller (`train`) turns the error into `write_errors.RunWriteError`.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from spo_jax import counters as counters_lib
from spo_jax import digests, write_errors
from spo_jax import run_dir as run_dir_lib
from spo_jax.config import Config, ConfigError
from spo_jax.iteration import TrainState, from_stored, stored_form
from spo_jax.run_dir import write_text_atomic  # noqa: F401 (re-exported: its older home)

# Fields that may differ between a checkpoint and the run resuming it: they change how long
# or how often, never what is computed in an iteration (compaction_factor changes only which
# physics steps are executed, not the trajectory; deterministic only whether a GPU sums in the
# same order every time, so a run may continue with it switched on or off).
RESUMABLE_FIELDS = frozenset({
    "num_timesteps", "max_iterations", "eval_every", "eval_every_steps", "num_eval_envs",
    "checkpoint_every", "keep_checkpoints", "target_return", "compaction_factor", "deterministic"})


# Files every finished Orbax checkpoint of ours holds (relative to checkpoints/<step>/): the
# step metadata written first, the state's tree metadata and OCDBT manifest written last, the
# meta item's JSON. tests/test_checkpoint.py checks the list against a real save.
_COMPLETE_MARKERS = ("_CHECKPOINT_METADATA", "state/_METADATA", "state/manifest.ocdbt",
                     "meta/metadata")


def complete_steps(directory: str | Path, verify: bool = False,
                   skipped: list[tuple[int, str]] | None = None) -> list[int]:
  """Steps under `directory` (a checkpoints/ folder) whose checkpoint is usable, ascending:
  the one place that says which checkpoints exist (training, `--resume`, `load_policy`,
  `spo-eval` all ask it).

  Always ignored: Orbax's `<step>.orbax-checkpoint-tmp` folders (a save killed midway) and
  step folders missing any of the files a finished save writes (a deletion or copy cut short).
  With `verify`, also checkpoints whose files do not match their MANIFEST.json (size and
  SHA-256; `digests.manifest_problem`); each one left out is appended to `skipped` as
  (step, why). Reads the file system only: no Orbax, nothing compiled. `verify` reads every
  byte of every checkpoint (SHA-256 runs at about a GB/s), so the training loop, which only
  needs the folder names, leaves it off.
  """
  directory = Path(directory)
  try:
    entries = list(directory.iterdir())
  except (FileNotFoundError, NotADirectoryError):
    # Absent, or moved away between a check and the listing (`--overwrite` sets the folder
    # aside while `spo-eval` or a watcher may be reading it): nothing complete there.
    return []
  steps = []
  for entry in entries:
    if (entry.name.isdigit() and entry.is_dir()
        and all((entry / marker).exists() for marker in _COMPLETE_MARKERS)):
      steps.append(int(entry.name))
  steps.sort()
  if not verify:
    return steps
  verified = []
  for step in steps:
    problem = digests.manifest_problem(directory / str(step))
    if problem is None:
      verified.append(step)
    elif skipped is not None:
      skipped.append((step, problem))
  return verified


class CheckpointError(ConfigError):
  """No usable checkpoint: all damaged, or written in a form this version cannot read (a bad
  input: `spo-train` and `spo-eval` exit with code 2, nothing is overwritten)."""


def _ocp():
  logging.getLogger("absl").setLevel(logging.ERROR)
  import orbax.checkpoint as ocp  # lazy: ~0.6 s, only when a checkpoint is read or written

  return ocp


@contextlib.contextmanager
def _quiet_orbax(writing: bool = False):
  """Keep Orbax's failure noise from the terminal: when a write fails (disk full), Orbax logs
  the error through absl, and the TensorStore callbacks it leaves behind print hundreds of
  "Event loop is closed" tracebacks and, once garbage-collected, "Exception ignored in
  <coroutine ...>" ones. The caller reports the failure in one line instead. What a
  successful block printed is passed on unchanged. `writing` (saves only): a file-system
  failure runs the write-failure hooks at once (`write_errors.notify_write_failure`); a read
  that fails (a damaged checkpoint, skipped on resume) must not silence the run."""
  loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.CRITICAL)
  captured = io.StringIO()
  outer = sys.stderr  # the stream a write-failure hook keeps for the one-line report
  failed = False
  try:
    with contextlib.redirect_stderr(captured):
      try:
        yield
      except BaseException as error:
        failed = True
        # A disk-full write: quiet stderr for good now (`QuietAfterWriteFailure`), not once
        # the error has unwound to `failed_write`: the abandoned write's threads print
        # "Event loop is closed" tracebacks in between (seen once in CI, mixed into the
        # one-line report).
        if writing:
          with contextlib.redirect_stderr(outer):
            write_errors.notify_write_failure(error)
        # Finalise the abandoned coroutines now, while their complaints are still hidden,
        # rather than at interpreter exit.
        gc.collect()
        raise
  finally:
    for logger, level in zip(loggers, levels, strict=True):
      logger.setLevel(level)
    if not failed and captured.getvalue():
      sys.stderr.write(captured.getvalue())


class Checkpointer:
  """Saves and restores `(TrainState, meta)` under `directory` (keeps the last `max_to_keep`;
  0 or None keeps every checkpoint).

  Every save ends with the step's MANIFEST.json; a failed save raises the underlying error
  (an OSError, or Orbax's ValueError that wraps one) after removing its temporary folders.
  """

  def __init__(self, directory: str | Path, max_to_keep: int | None = 3):
    ocp = _ocp()
    max_to_keep = max_to_keep or None  # Orbax's "keep all"
    self.directory = Path(directory).absolute()
    self._ocp = ocp
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=False),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint (`complete_steps`), None when there is none."""
    steps = complete_steps(self.directory)
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Save `state` as `step`, then its manifest. A step already saved whole is kept as is
    (the state is the same); a folder of that step that is incomplete (a deletion cut short)
    or does not match its manifest (damaged) is replaced."""
    step_dir = self.directory / str(step)
    if step in complete_steps(self.directory):
      if digests.manifest_problem(step_dir) is None:
        return
    if step_dir.exists():
      shutil.rmtree(step_dir)
      self._manager.reload()
    args = self._ocp.args

    if isinstance(state, TrainState):
      # The state's device counters go to meta (its JSON keeps them exact and readable), so the
      # stored state keeps the layout it has always had; they overwrite any the caller passed.
      meta = {**meta, "counters": {**meta.get("counters", {}),
                                   **counters_lib.to_meta(state.counters)}}
    state = stored_form(state)
    try:
      with _quiet_orbax(writing=True):
        self._manager.save(step, args=args.Composite(state=args.StandardSave(state),
                                                     meta=args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()
      digests.write_manifest(step_dir)
    except BaseException:
      self.remove_temporaries()
      if step_dir.exists() and not (step_dir / run_dir_lib.MANIFEST).exists():
        shutil.rmtree(step_dir, ignore_errors=True)  # whole but unverifiable: not kept
      raise

  def remove_temporaries(self) -> None:
    """Delete the `*.orbax-checkpoint-tmp*` folders a failed or killed save left behind."""
    if self.directory.is_dir():
      for path in self.directory.glob("*.orbax-checkpoint-tmp*"):
        shutil.rmtree(path, ignore_errors=True)

  def restore(self, step: int, abstract_state: Any, partial: bool = False
              ) -> tuple[Any, dict[str, Any]]:
    """The state and meta of `step`; raises `CheckpointError` (one line) when Orbax cannot
    read it: damaged files, or a state whose structure differs from `abstract_state`.

    `partial`: `abstract_state` names only some of the state's leaves, as nested dicts (the
    TrainState's NamedTuples are stored as dicts of their fields); only those are read
    (`saved_policy` reads the policy's weights and the normalizer this way)."""
    args = self._ocp.args

    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x,
        stored_form(abstract_state))
    if partial:
      # Onto this process's first device whatever devices wrote it (a policy trained on a
      # GPU loads on a CPU); the saved sharding metadata is then not needed.
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      restore_args = jax.tree.map(lambda x: self._ocp.ArrayRestoreArgs(
          sharding=device, global_shape=x.shape, dtype=x.dtype), abstract)
      state_args = args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True)
    else:
      state_args = args.StandardRestore(abstract)
    try:
      with _quiet_orbax():
        restored = self._manager.restore(step, args=args.Composite(
            state=state_args, meta=args.JsonRestore()))
    except Exception as error:  # noqa: BLE001 (Orbax raises many kinds; all mean "unreadable")
      raise CheckpointError(_first_line(error)) from error
    meta = dict(restored.meta)
    return from_stored(restored.state, meta.get("counters")), meta

  def read_meta(self, step: int) -> dict[str, Any]:
    restored = self._manager.restore(step, args=self._ocp.args.Composite(
        meta=self._ocp.args.JsonRestore()))
    return dict(restored.meta)

  def close(self) -> None:
    with contextlib.suppress(Exception), _quiet_orbax():
      self._manager.close()


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  line = text[0] if text else type(error).__name__
  return f"{type(error).__name__}: {line[:300]}"


def refuse_damaged_step(step: int, skipped: list[tuple[int, str]], verified: list[int],
                        where: str | Path) -> None:
  """Raise `CheckpointError` in one line if the requested `step` is among the `skipped`
  (step, why) checkpoints of `complete_steps(..., verify=True)`: an explicit step is never
  replaced by another one."""
  for bad, why in skipped:
    if bad == step:
      raise CheckpointError(f"checkpoint {step} in '{where}' is damaged ({why}); verified "
                            f"checkpoints: {', '.join(map(str, verified)) or 'none'}")


def restore_usable(checkpointer: Checkpointer, abstract_state: Any, step: int | None = None,
                   notify: Callable[[str], None] | None = None, partial: bool = False
                   ) -> tuple[int, Any, dict]:
  """Restore the newest checkpoint that verifies and reads (or exactly `step`, when given).

  Newer checkpoints that fail are skipped, each reported through `notify` in one line saying
  which and why (default: printed to stderr). Raises `CheckpointError` with one line when
  none is usable, or when a checkpoint whose manifest verifies cannot be read: its files are
  as they were written, so it comes from a spo_jax whose state this version cannot read (an
  older checkpoint of the same run would fail the same way). Returns (step, state, meta).
  """
  directory = checkpointer.directory
  notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
  skipped: list[tuple[int, str]] = []
  steps = complete_steps(directory, verify=True, skipped=skipped)
  if step is not None:
    refuse_damaged_step(step, skipped, steps, directory)
    if step not in steps:
      raise CheckpointError(f"'{directory}' holds no complete checkpoint of step {step}; "
                            f"complete steps: {steps or 'none'}")
    steps = [step]
  # Asked for one step: newer damaged ones are none of the caller's business.
  failures = list(skipped) if step is None else []
  for candidate in sorted(steps, reverse=True):
    try:
      manifest = digests.read_manifest(directory / str(candidate))
    except ValueError:  # damaged since it was verified a moment ago: judged again below
      manifest = None
    try:
      state, meta = checkpointer.restore(candidate, abstract_state, partial)
    except CheckpointError as error:
      # Still matching its manifest after the failed read: the bytes are as written, so the
      # format is what this version cannot read. (A run writing the directory may instead
      # have deleted this step, its oldest, while we read it: then it no longer matches.)
      problem = digests.manifest_problem(directory / str(candidate))
      if manifest is not None and problem is None:
        written_by = manifest.get("spo_jax_version", "an unknown version")
        raise CheckpointError(
            f"checkpoint {candidate} in '{directory}' is intact (it matches its manifest) but "
            f"cannot be read by this spo_jax {digests.package_version()} (written by "
            f"{written_by}: {error}); evaluate or resume it with the spo_jax version that "
            "wrote it, or start a new --run-dir") from error
      failures.append((candidate, problem or f"Orbax cannot read it: {error}"))
      continue
    for bad, why in sorted(failures, reverse=True):
      if bad > candidate:
        notify(f"spo_jax: skipped checkpoint {bad} in '{directory}' ({why}); using "
               f"checkpoint {candidate}")
    return candidate, state, meta
  details = "; ".join(f"{s}: {why}" for s, why in sorted(failures, reverse=True))
  raise CheckpointError(f"no usable checkpoint in '{directory}' ({details or 'none saved'}); "
                        "restore the folder from a backup, or start again with --overwrite")


def config_differences(saved: Config, current: Config) -> list[str]:
  """Names of fields that differ and may not differ on resume."""
  a, b = saved.to_dict(), current.to_dict()
  return sorted(k for k in a if k not in RESUMABLE_FIELDS and a[k] != b.get(k))


def find_checkpoint_dir(path: str | Path) -> Path:
  """Accepts a run directory or its checkpoints/ directory; fails clearly otherwise."""
  path = Path(path)
  if not path.exists():
    raise ConfigError(f"checkpoint path '{path}' does not exist; pass a run directory "
                      "written by spo-train (it holds config.json and checkpoints/)")
  if (path / "checkpoints").is_dir():
    return path / "checkpoints"
  if path.name == "checkpoints" and path.is_dir():
    return path
  raise ConfigError(f"'{path}' is not a spo_jax run directory: it has no checkpoints/ folder")


def read_run_config(run_dir: str | Path) -> Config:
  path = Path(run_dir) / "config.json"
  try:
    data = json.loads(path.read_text())
  except FileNotFoundError as error:
    raise ConfigError(f"'{run_dir}' has no config.json: not a spo_jax run directory") from error
  except json.JSONDecodeError as error:
    raise ConfigError(f"'{path}' is not valid JSON (line {error.lineno}): {error.msg}") from error
  return Config.from_dict(data)


def check_contents(run_dir: Path, config: Config, resume: bool, overwrite: bool) -> bool:
  """Before a run starts in its locked directory (spo_jax/run_dir.py): what the directory
  holds decides, under the lock (no other writer can change it now):
  a run to resume (its config must match), an occupied directory, a run with no checkpoint.
  Returns True when there is a checkpoint to resume from."""
  if resume:
    if not run_dir_lib.holds_run(run_dir):
      raise ConfigError(f"nothing to resume: '{run_dir}' holds no run (no config.json); "
                        "drop --resume to start a new run there")
    saved = read_run_config(run_dir)
    diffs = config_differences(saved, config)
    if diffs:
      details = ", ".join(f"{k}: saved {getattr(saved, k)!r}, now {getattr(config, k)!r}"
                          for k in diffs)
      raise ConfigError(f"cannot resume '{run_dir}': its checkpoint was made with a different "
                        f"config ({details}); use the saved values or a new --run-dir")
    if not complete_steps(run_dir / run_dir_lib.CHECKPOINTS):
      raise ConfigError(f"nothing to resume: the run in '{run_dir}' stopped before its first "
                        "checkpoint was complete; start it again with --overwrite instead of "
                        "--resume")
    return True
  if run_dir_lib.holds_run(run_dir) and not overwrite:
    if not complete_steps(run_dir / run_dir_lib.CHECKPOINTS):
      raise ConfigError(f"run directory '{run_dir}' holds a run that stopped before its first "
                        "checkpoint; pass --overwrite to start it again, or choose another "
                        "--run-dir")
    raise ConfigError(f"run directory '{run_dir}' already holds a run; pass --resume to "
                      "continue it, --overwrite to replace it, or choose another --run-dir")
  return False
