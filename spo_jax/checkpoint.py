"""Checkpoints with Orbax: the whole `TrainState`, the config and the host counters.

Layout of a run directory:

  RUN_DIR/config.json          the run's Config
  RUN_DIR/metrics.jsonl        one JSON object per evaluation
  RUN_DIR/checkpoints/<step>/  Orbax checkpoints, step = training iteration
     state/                    the TrainState pytree (params, optimizer, normalizer, key, ...)
     meta/                     JSON: config, host counters (env steps, queries, wall time)

Crash safety. Orbax (0.12.8) writes step k into `checkpoints/k.orbax-checkpoint-tmp` and
renames it to `checkpoints/k` once every file is written; a process killed mid-save leaves the
tmp folder behind (Orbax ignores it and removes it when step k is saved again). A folder named
`k` can still be incomplete when Orbax was killed while deleting an old step (it deletes in
place), or after a copy or sync gone wrong, so `complete_steps` also checks that the files
every finished checkpoint holds are there; `latest_step` is the newest complete one. A kill at
any moment therefore leaves the last complete checkpoint loadable, and `--resume` picks it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import jax

from spo_jax.config import Config, ConfigError

# Fields that may differ between a checkpoint and the run resuming it: they change how long
# or how often, never what is computed in an iteration (compaction_factor changes only which
# physics steps are executed, not the trajectory).
RESUMABLE_FIELDS = frozenset({
    "num_timesteps", "max_iterations", "eval_every", "eval_every_steps", "num_eval_envs",
    "checkpoint_every", "target_return", "compaction_factor"})


# Files every finished Orbax checkpoint of ours holds (relative to checkpoints/<step>/): the
# step metadata written first, the state's tree metadata and OCDBT manifest written last, the
# meta item's JSON. tests/test_checkpoint.py checks the list against a real save.
_COMPLETE_MARKERS = ("_CHECKPOINT_METADATA", "state/_METADATA", "state/manifest.ocdbt",
                     "meta/metadata")


def complete_steps(directory: str | Path) -> list[int]:
  """Steps under `directory` (a checkpoints/ folder) whose checkpoint is complete, ascending.

  Ignores Orbax's `<step>.orbax-checkpoint-tmp` folders (a save killed midway) and step
  folders missing any of the files a finished save writes (a deletion or copy cut short).
  Reads the file system only: no Orbax, nothing compiled.
  """
  directory = Path(directory)
  if not directory.is_dir():
    return []
  steps = []
  for entry in directory.iterdir():
    if (entry.name.isdigit() and entry.is_dir()
        and all((entry / marker).exists() for marker in _COMPLETE_MARKERS)):
      steps.append(int(entry.name))
  return sorted(steps)


def write_text_atomic(path: str | Path, text: str | bytes) -> None:
  """Write `text` (str, or bytes such as a PNG) to `path` so that a reader (or a crash) sees
  the old file or the new one, never half of it: write a sibling temporary file, flush it to
  disk, rename it over `path`."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  with open(tmp, "wb") as file:
    file.write(text.encode() if isinstance(text, str) else text)
    file.flush()
    os.fsync(file.fileno())
  os.replace(tmp, path)


def _ocp():
  logging.getLogger("absl").setLevel(logging.ERROR)
  import orbax.checkpoint as ocp

  return ocp


class Checkpointer:
  """Saves and restores `(TrainState, meta)` under `directory` (keeps the last `max_to_keep`)."""

  def __init__(self, directory: str | Path, max_to_keep: int = 3):
    ocp = _ocp()
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
    """Save `state` as `step`; a step already saved (the state is the same) is kept as is,
    an incomplete folder of that step (a deletion cut short) is replaced."""
    if step in complete_steps(self.directory):
      return
    if (self.directory / str(step)).exists():
      shutil.rmtree(self.directory / str(step))
      self._manager.reload()
    args = self._ocp.args
    self._manager.save(step, args=args.Composite(state=args.StandardSave(state),
                                                 meta=args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    args = self._ocp.args
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x,
        abstract_state)
    restored = self._manager.restore(
        step, args=args.Composite(state=args.StandardRestore(abstract), meta=args.JsonRestore()))
    return restored.state, dict(restored.meta)

  def read_meta(self, step: int) -> dict[str, Any]:
    restored = self._manager.restore(step, args=self._ocp.args.Composite(
        meta=self._ocp.args.JsonRestore()))
    return dict(restored.meta)

  def close(self) -> None:
    self._manager.close()


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


def load_policy(path: str | Path, deterministic: bool = True, step: int | None = None,
                seed_index: int = 0):
  """Load a trained policy from a run directory: `policy(obs, key=None) -> action`.

  Needs no code: the config saved beside the weights rebuilds the networks. A run of several
  seeds (`num_seeds`) holds one policy per seed; `seed_index` picks one.
  """
  from spo_jax.train import build, over_seeds, policy_params, seed_keys

  ckpt_dir = find_checkpoint_dir(path)
  run_dir = ckpt_dir.parent
  config = read_run_config(run_dir)
  checkpointer = Checkpointer(ckpt_dir)
  step = checkpointer.latest_step() if step is None else step
  if step is None:
    raise ConfigError(f"'{ckpt_dir}' holds no complete checkpoint")
  if step not in complete_steps(ckpt_dir):
    raise ConfigError(f"'{ckpt_dir}' holds no complete checkpoint of step {step}; complete "
                      f"steps: {complete_steps(ckpt_dir)}")
  if not 0 <= seed_index < config.num_seeds:
    raise ConfigError(f"seed_index = {seed_index} is out of range: the run trained "
                      f"{config.num_seeds} seed(s), use 0..{config.num_seeds - 1}")
  setup = build(config)
  init = over_seeds(setup.fns.init, config.num_seeds)
  state, _ = checkpointer.restore(step, jax.eval_shape(init, seed_keys(config)))
  checkpointer.close()
  params = jax.tree.map(lambda x: x[seed_index], policy_params(state))
  return setup.make_policy(params, deterministic=deterministic)
