"""Digests of a run's files: the files a teacher reads, and checkpoint manifests.

A resumed run must see the same bytes its teacher was built from, not just the same path
(`teacher_file_digests`, `check_same_files`), and every checkpoint folder ends with
MANIFEST.json, the size and SHA-256 of each of its files (`write_manifest`), which every
reader checks before trusting the folder (`manifest_problem`; spo_jax/checkpoint.py).
The run directory's layout is in spo_jax/run_dir.py.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from spo_jax.config import Config, ConfigError
from spo_jax.run_dir import MANIFEST, write_text_atomic


def sha256_file(path: str | Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as file:
    for chunk in iter(lambda: file.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


# Config fields that may name a file whose contents shape the teacher: a resumed run must see
# the same bytes, not just the same path.
FILE_FIELDS = ("teacher_labels_file", "teacher_raters", "teacher_table")


def teacher_file_digests(config: Config) -> dict[str, str]:
  """SHA-256 of each file a config field names (`FILE_FIELDS`), stored in every checkpoint."""
  digests = {}
  for field in FILE_FIELDS:
    path = Path(getattr(config, field) or "")
    if str(path) and path.is_file():
      digests[field] = sha256_file(path)
  return digests


def check_same_files(saved: dict[str, str], current: dict[str, str], run_dir: Path) -> None:
  for field in sorted(set(saved) | set(current)):
    if saved.get(field) != current.get(field):
      raise ConfigError(f"cannot resume '{run_dir}': the file named by '{field}' has changed "
                        "since the checkpoint was written, so the teacher would differ; restore "
                        "the original file or start a new --run-dir")


def package_version() -> str:
  try:
    return version("spo_jax")
  except Exception:  # noqa: BLE001 (a source checkout that was never installed)
    return "unknown"


def write_manifest(step_dir: str | Path) -> dict[str, Any]:
  """Write STEP_DIR/MANIFEST.json: size and SHA-256 of every file under `step_dir`, and the
  package version. Atomic (temporary file, fsync, rename) and written after the checkpoint's
  own files are complete, so a manifest present means every file it lists was finished."""
  step_dir = Path(step_dir)
  files = {}
  for path in sorted(p for p in step_dir.rglob("*") if p.is_file()):
    rel = path.relative_to(step_dir).as_posix()
    if rel != MANIFEST:
      files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
  manifest = {"format": 1, "spo_jax_version": package_version(), "files": files}
  write_text_atomic(step_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
  return manifest


def read_manifest(step_dir: str | Path) -> dict[str, Any] | None:
  """The manifest, None for a checkpoint written before manifests existed; raises ValueError
  when the manifest itself is damaged."""
  path = Path(step_dir) / MANIFEST
  if not path.exists():
    return None
  try:
    manifest = json.loads(path.read_bytes())
    if not isinstance(manifest.get("files"), dict):
      raise ValueError("no file list")
  except (ValueError, UnicodeDecodeError, AttributeError) as error:
    raise ValueError(f"{MANIFEST} is damaged ({error})") from None
  return manifest


def manifest_problem(step_dir: str | Path) -> str | None:
  """Why `step_dir` does not match its manifest (the first file that differs, in words), or
  None when it matches or has no manifest (a legacy checkpoint, trusted as before)."""
  step_dir = Path(step_dir)
  try:
    manifest = read_manifest(step_dir)
  except ValueError as error:
    return str(error)
  if manifest is None:
    return None
  for rel, expected in manifest["files"].items():
    path = step_dir / rel
    try:
      size = path.stat().st_size
    except OSError:
      return f"{rel} is missing"
    if size != expected.get("size"):
      return f"{rel} has {size} bytes, its manifest says {expected.get('size')}"
    try:
      if sha256_file(path) != expected.get("sha256"):
        return f"{rel} does not match its SHA-256 in the manifest"
    except OSError as error:
      return f"{rel} cannot be read ({error.strerror})"
  return None
