"""Provenance: which code, libraries, devices and command produced a run directory.

RUN_DIR/provenance.json (written atomically by `train`, like config.json):

  {"format": 1,
   "start":   ENTRY,            # the process that began the run (null: begun before
                                # provenance was recorded)
   "resumes": [ENTRY, ...]}     # one per --resume, oldest first

  ENTRY = {"time":     UTC start time, ISO 8601,
           "argv":     the process's command line (sys.argv),
           "cwd":      its working directory (relative paths in argv are relative to it),
           "host":     host name, "pid": process id,
           "spo_jax":  {"version", "path" (the package directory that ran),
                        "git": {"commit", "dirty", "diff_sha256", "untracked", "error"}},
           "versions": {"python", "jax", "jaxlib", "brax", "flax", "optax",
                        "orbax-checkpoint", "numpy", and the CUDA plug-ins when installed},
           "devices":  {"platform", "kind", "count", "local_count", "process_count"},
           "xla_flags": the XLA_FLAGS environment variable (null when unset),
           "jax_env":  the JAX_* environment variables (e.g. JAX_ENABLE_X64)}

Git. `git` runs in the package's own directory, so the commit is that of the code that ran,
wherever the command was started. `dirty` is true when tracked files differ from the commit
(`git diff HEAD`) or files git does not ignore sit untracked inside the package directory (a
new module not yet added); untracked files elsewhere do not count, because run directories and
scratch files usually sit untracked in a checkout. `diff_sha256` is the SHA-256 of that diff's
bytes and of those untracked files (`untracked` names them): two runs with the same commit and
hash ran the same package code. Without git, or for a package installed outside a repository,
`commit`, `dirty`, `diff_sha256` and `untracked` are null and `error` says why.

Resumes keep the original entry and append their own, so a run continued on another machine
or after an upgrade says so. A resume whose library versions differ from the latest entry's
(the process that last trained the run) prints one line naming them (`version_changes`):
the run continues, but may not repeat bit for bit (docs/determinism.md).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax

from spo_jax import run_dir as run_dir_lib
from spo_jax.digests import package_version

FORMAT = 1
# Distributions whose versions decide what a run computes (the CUDA plug-ins only when
# installed: on a CPU machine they are simply absent).
LIBRARIES = ("jax", "jaxlib", "brax", "flax", "optax", "orbax-checkpoint", "numpy")
OPTIONAL_LIBRARIES = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin",
                      "jax-cuda13-pjrt")
_GIT_TIMEOUT_S = 10


# -------------------------------------------------------------------------------------
# Collecting
# -------------------------------------------------------------------------------------

def _git(directory: Path, *args: str) -> bytes:
  """stdout of `git -C directory ARGS`; raises RuntimeError with git's first line of stderr."""
  result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                          timeout=_GIT_TIMEOUT_S, check=False)
  if result.returncode != 0:
    lines = result.stderr.decode(errors="replace").strip().splitlines()
    raise RuntimeError(lines[0] if lines else f"git {args[0]} exited with {result.returncode}")
  return result.stdout


def git_info(directory: str | Path) -> dict[str, Any]:
  """{"commit", "dirty", "diff_sha256", "untracked", "error"} of the git checkout holding
  `directory` (the package's own directory).

  `dirty`: tracked files differ from HEAD (`git diff HEAD`), or files git does not ignore sit
  untracked inside `directory` (a new module not yet added is code that ran; untracked files
  elsewhere in the checkout, such as runs/, are not). `diff_sha256`: SHA-256 of the diff's
  bytes followed by each such untracked file's path and bytes; `untracked` lists them.

  Tolerant by design: provenance must never stop a run, so a missing git, a directory outside
  any repository (an installed package) or a repository git refuses to read (another owner)
  give nulls and the reason in `error`."""
  directory = Path(directory)
  info: dict[str, Any] = {"commit": None, "dirty": None, "diff_sha256": None,
                          "untracked": None, "error": None}
  try:
    commit = _git(directory, "rev-parse", "HEAD").decode().strip()
    # A package installed into a virtual environment that itself sits inside some project's
    # repository would otherwise report that project's commit.
    _git(directory, "ls-files", "--error-unmatch", "__init__.py")
    # --no-ext-diff, --no-color: the bytes must not depend on the user's git settings.
    diff = _git(directory, "diff", "HEAD", "--no-ext-diff", "--no-color", "--binary")
    untracked = sorted(_git(directory, "ls-files", "--others", "--exclude-standard",
                            "--full-name", "-z", "--", ".").decode().split("\0"))
    untracked = [name for name in untracked if name]
    top = Path(_git(directory, "rev-parse", "--show-toplevel").decode().strip())
    digest = hashlib.sha256(diff)
    for name in untracked:
      digest.update(b"\0" + name.encode() + b"\0" + (top / name).read_bytes())
  except FileNotFoundError:
    info["error"] = "git is not installed"
    return info
  except subprocess.TimeoutExpired:
    info["error"] = f"git did not answer within {_GIT_TIMEOUT_S} s"
    return info
  except (RuntimeError, OSError, UnicodeDecodeError) as error:
    info["error"] = str(error)
    return info
  info["commit"], info["dirty"], info["untracked"] = commit, bool(diff or untracked), untracked
  if info["dirty"]:
    info["diff_sha256"] = digest.hexdigest()
  return info


def library_versions() -> dict[str, str | None]:
  """Python's version and each library's installed version (None: a listed library that is
  not installed; optional ones are left out then)."""
  versions: dict[str, str | None] = {"python": platform.python_version()}
  for name in LIBRARIES + OPTIONAL_LIBRARIES:
    try:
      versions[name] = version(name)
    except PackageNotFoundError:
      if name in LIBRARIES:
        versions[name] = None
  return versions


def device_info() -> dict[str, Any]:
  """The devices JAX trains on (starts JAX's backend if it has not started)."""
  devices = jax.devices()
  return {"platform": devices[0].platform, "kind": devices[0].device_kind,
          "count": len(devices), "local_count": jax.local_device_count(),
          "process_count": jax.process_count()}


def collect(argv: list[str] | None = None) -> dict[str, Any]:
  """One provenance entry for this process, now (the layout is in the module docstring)."""
  package_dir = Path(__file__).resolve().parent
  return {
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "argv": list(sys.argv if argv is None else argv),
      "cwd": os.getcwd(),
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "spo_jax": {"version": package_version(), "path": str(package_dir),
                  "git": git_info(package_dir)},
      "versions": library_versions(),
      "devices": device_info(),
      "xla_flags": os.environ.get("XLA_FLAGS"),
      "jax_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JAX_")},
  }


# -------------------------------------------------------------------------------------
# The file
# -------------------------------------------------------------------------------------

def read(run_dir: str | Path) -> dict[str, Any] | None:
  """RUN_DIR/provenance.json, None when the run has none (begun before it was recorded);
  ValueError, in words, when it is not a provenance record."""
  path = Path(run_dir) / run_dir_lib.PROVENANCE
  try:
    record = json.loads(path.read_bytes())
  except FileNotFoundError:
    return None
  except (ValueError, UnicodeDecodeError) as error:
    raise ValueError(f"{run_dir_lib.PROVENANCE} is not valid JSON ({error})") from None
  if not isinstance(record, dict) or not isinstance(record.get("resumes"), list):
    raise ValueError(f"{run_dir_lib.PROVENANCE} holds no provenance record")
  return record


def write(run_dir: str | Path, record: dict[str, Any]) -> None:
  """Atomically (temporary file, fsync, rename): a reader or a kill sees a whole file."""
  run_dir_lib.write_text_atomic(Path(run_dir) / run_dir_lib.PROVENANCE,
                                json.dumps(record, indent=1) + "\n")


def new_record(entry: dict[str, Any]) -> dict[str, Any]:
  return {"format": FORMAT, "start": entry, "resumes": []}


def latest(record: dict[str, Any]) -> dict[str, Any] | None:
  """The entry of the process that last trained the run: the newest resume, else the start."""
  entries = [record.get("start"), *record.get("resumes", [])]
  entries = [e for e in entries if isinstance(e, dict)]
  return entries[-1] if entries else None


def version_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """'name old → new' for each library whose version differs (absent: 'none')."""
  changes = []
  for name in sorted(set(old) | set(new)):
    if old.get(name) != new.get(name):
      changes.append(f"{name} {old.get(name) or 'none'} → {new.get(name) or 'none'}")
  return changes


def record_resume(run_dir: str | Path, entry: dict[str, Any],
                  notify: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Append `entry` to the run's provenance.json and write it; returns the record.

  Says in one line (`notify`, default stderr) when the library versions differ from those the
  run last trained with. A run without provenance.json gets one with `start` null; an
  unreadable one is kept beside it as provenance.json.damaged (said in one line) and a new
  record begun, since provenance must never stop a resume."""
  run_dir = Path(run_dir)
  notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
  try:
    record = read(run_dir)
  except ValueError as error:
    damaged = run_dir / f"{run_dir_lib.PROVENANCE}.damaged"
    os.replace(run_dir / run_dir_lib.PROVENANCE, damaged)
    notify(f"spo_jax: {error}; kept it as {damaged} and began a new record")
    record = None
  if record is None:
    record = {"format": FORMAT, "start": None, "resumes": []}
  previous = latest(record)
  if previous is not None and isinstance(previous.get("versions"), dict):
    changes = version_changes(previous["versions"], entry["versions"])
    if changes:
      notify(f"spo_jax: resuming '{run_dir}' with other library versions than it last ran "
             f"with ({previous.get('time', 'unknown time')}): {', '.join(changes)}; it "
             "continues, but may not repeat bit for bit (docs/determinism.md)")
  record["resumes"].append(entry)
  write(run_dir, record)
  return record


# -------------------------------------------------------------------------------------
# Reading it back
# -------------------------------------------------------------------------------------

def _describe_code(entry: dict[str, Any]) -> str:
  package = entry.get("spo_jax") or {}
  git = package.get("git") or {}
  text = f"spo_jax {package.get('version', 'unknown')}"
  if git.get("commit"):
    text += f", commit {git['commit'][:12]}"
    if git.get("dirty"):
      text += f" (dirty: diff sha256 {str(git.get('diff_sha256'))[:12]})"
  else:
    text += f", commit unknown ({git.get('error') or 'not recorded'})"
  return text


def _describe_devices(entry: dict[str, Any]) -> str:
  devices = entry.get("devices") or {}
  text = f"{devices.get('count', '?')} x {devices.get('kind', 'unknown device')}"
  if (devices.get("process_count") or 1) > 1:
    text += f" over {devices['process_count']} processes"
  return text


def summary(record: dict[str, Any] | None) -> list[str]:
  """A few lines for `spo-eval` and sweep summaries: the code (version, commit, dirty flag),
  library versions and devices the run started with, and its resumes in brief."""
  if record is None:
    return ["provenance: not recorded (a run from before provenance.json)"]
  start = record.get("start")
  resumes = [e for e in record.get("resumes", []) if isinstance(e, dict)]
  first = start if isinstance(start, dict) else (resumes[0] if resumes else None)
  if first is None:
    return ["provenance: no entries"]
  versions = first.get("versions") or {}
  when = "started" if first is start else "first resumed (start not recorded)"
  lines = [f"provenance: {_describe_code(first)}; {when} {first.get('time')} on "
           f"{first.get('host')}, {_describe_devices(first)}",
           "  versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)]
  flags = first.get("xla_flags")
  if flags:
    lines[-1] += f"; XLA_FLAGS {flags}"
  later = resumes[1:] if first is not start else resumes
  if later:
    last = later[-1]
    changes = version_changes(versions, last.get("versions") or {})
    lines.append(f"  resumed {len(later)} time{'s' if len(later) > 1 else ''}, last "
                 f"{last.get('time')} on {last.get('host')}, {_describe_devices(last)}, "
                 f"{_describe_code(last)}; "
                 + (f"versions changed: {', '.join(changes)}" if changes
                    else "same versions"))
  return lines
