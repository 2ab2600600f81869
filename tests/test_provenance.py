"""provenance.json: written by a run, appended to by each resume, read back by spo-eval; git's
dirty flag and diff hash on a throw-away repository; a failed write ends like any other."""

import errno
import json
import os
import shutil
import subprocess

import pytest
from write_faults import half_write

import spo_jax
from spo_jax import provenance
from spo_jax.cli import train_main

TINY = spo_jax.preset("point_reach").replace(
    num_envs=4, episode_length=8, num_minibatches=1, update_epochs=1, num_eval_envs=2,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9, max_iterations=1,
    eval_every=1, checkpoint_every=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One iteration of a tiny run, with its checkpoint; tests copy it before changing it."""
  path = tmp_path_factory.mktemp("provenance") / "run"
  spo_jax.train(TINY, run_dir=path)
  return path


def test_a_run_records_code_versions_devices_and_command(trained):
  record = json.loads((trained / "provenance.json").read_text())
  assert record["format"] == 1 and record["resumes"] == []
  start = record["start"]
  assert set(start) == {"time", "argv", "cwd", "host", "pid", "spo_jax", "versions",
                        "devices", "xla_flags", "jax_env"}
  assert start["time"].endswith("+00:00")  # UTC, ISO 8601
  assert isinstance(start["argv"], list) and all(isinstance(a, str) for a in start["argv"])
  assert isinstance(start["host"], str) and start["host"]
  assert start["pid"] == os.getpid()
  package = start["spo_jax"]
  assert package["path"] == os.path.dirname(spo_jax.__file__)
  assert set(package["git"]) == {"commit", "dirty", "diff_sha256", "untracked", "error"}
  # Either a checkout (a 40-hex commit and a dirty flag) or a reason why not.
  git = package["git"]
  if git["commit"] is None:
    assert isinstance(git["error"], str) and git["error"]
  else:
    assert len(git["commit"]) == 40 and isinstance(git["dirty"], bool)
  for name in ("python", "jax", "jaxlib", "brax", "flax", "optax", "orbax-checkpoint"):
    assert isinstance(start["versions"][name], str), name
  import jax

  assert start["versions"]["jax"] == jax.__version__
  assert start["devices"]["platform"] == jax.devices()[0].platform
  assert start["devices"]["count"] == jax.device_count() >= 1
  assert start["xla_flags"] == os.environ.get("XLA_FLAGS")
  assert all(k.startswith("JAX_") for k in start["jax_env"])


def _copy(trained, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  return run


def test_resume_appends_an_entry_and_warns_in_one_line_of_changed_versions(trained, tmp_path,
                                                                          capsys):
  run = _copy(trained, tmp_path)
  record = json.loads((run / "provenance.json").read_text())
  original = json.loads(json.dumps(record["start"]))
  record["start"]["versions"]["jax"] = "0.4.1"  # as if trained under an older JAX
  (run / "provenance.json").write_text(json.dumps(record))
  capsys.readouterr()
  spo_jax.train(TINY.replace(max_iterations=2), run_dir=run, resume=True)
  err = capsys.readouterr().err.strip().splitlines()
  import jax

  assert len(err) == 1, err
  assert f"jax 0.4.1 → {jax.__version__}" in err[0] and "jaxlib" not in err[0]
  assert str(run) in err[0] and "bit for bit" in err[0]
  after = json.loads((run / "provenance.json").read_text())
  original["versions"]["jax"] = "0.4.1"
  assert after["start"] == original  # the start is kept as it was
  assert len(after["resumes"]) == 1 and after["resumes"][0]["versions"]["jax"] == jax.__version__


def test_resume_with_the_same_versions_says_nothing(trained, tmp_path, capsys):
  run = _copy(trained, tmp_path)
  capsys.readouterr()
  spo_jax.train(TINY.replace(max_iterations=2), run_dir=run, resume=True)
  assert capsys.readouterr().err == ""
  assert len(json.loads((run / "provenance.json").read_text())["resumes"]) == 1


def test_record_resume_of_runs_without_or_with_a_damaged_file(tmp_path):
  entry = {"time": "t", "versions": {"jax": "1"}}
  lines = []
  # A run from before provenance.json: the resume begins the record, start unknown.
  record = provenance.record_resume(tmp_path, entry, notify=lines.append)
  assert record == {"format": 1, "start": None, "resumes": [entry]} and lines == []
  # A damaged file is kept aside (one line says so) and a new record begun.
  (tmp_path / "provenance.json").write_text('{"format": 1, "sta')
  record = provenance.record_resume(tmp_path, entry, notify=lines.append)
  assert record["resumes"] == [entry] and record["start"] is None
  assert (tmp_path / "provenance.json.damaged").read_text() == '{"format": 1, "sta'
  assert len(lines) == 1 and "not valid JSON" in lines[0]
  assert provenance.read(tmp_path) == record


def test_version_changes_name_old_and_new():
  assert provenance.version_changes({"jax": "1", "brax": "2"}, {"jax": "1", "brax": "3"}) == [
      "brax 2 → 3"]
  assert provenance.version_changes({}, {"jax-cuda12-plugin": "0.10"}) == [
      "jax-cuda12-plugin none → 0.10"]


# -------------------------------------------------------------------------------------
# git
# -------------------------------------------------------------------------------------

def _git(repo, *args):
  subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                  *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
  """A repository holding a package `pkg` (with __init__.py) and a file outside it."""
  if shutil.which("git") is None:
    pytest.skip("git is not installed")
  root = tmp_path / "repo"
  (root / "pkg").mkdir(parents=True)
  (root / "pkg" / "__init__.py").write_text("x = 1\n")
  (root / "README").write_text("readme\n")
  _git(root, "init", "-q")
  _git(root, "add", ".")
  _git(root, "commit", "-q", "-m", "first")
  return root


def test_git_clean_dirty_and_the_diff_hash(repo):
  package = repo / "pkg"
  clean = provenance.git_info(package)
  assert len(clean["commit"]) == 40 and clean["error"] is None
  assert clean["dirty"] is False and clean["diff_sha256"] is None and clean["untracked"] == []
  # Untracked files outside the package (run directories, notes) leave it clean.
  (repo / "runs").mkdir()
  (repo / "runs" / "metrics.jsonl").write_text("{}\n")
  assert provenance.git_info(package)["dirty"] is False
  # An edited tracked file makes it dirty; the hash is that of `git diff HEAD`.
  (package / "__init__.py").write_text("x = 2\n")
  edited = provenance.git_info(package)
  assert edited["dirty"] is True and edited["commit"] == clean["commit"]
  diff = subprocess.run(["git", "-C", str(repo), "diff", "HEAD", "--no-ext-diff", "--no-color",
                         "--binary"], capture_output=True, check=True).stdout
  import hashlib

  assert edited["diff_sha256"] == hashlib.sha256(diff).hexdigest()
  assert provenance.git_info(package)["diff_sha256"] == edited["diff_sha256"]  # repeatable
  (package / "__init__.py").write_text("x = 3\n")
  assert provenance.git_info(package)["diff_sha256"] != edited["diff_sha256"]
  # A new module inside the package, not yet added, is code that ran: dirty, and hashed.
  (package / "__init__.py").write_text("x = 1\n")
  (package / "new.py").write_text("y = 1\n")
  added = provenance.git_info(package)
  assert added["dirty"] is True and added["untracked"] == ["pkg/new.py"]
  (package / "new.py").write_text("y = 2\n")
  assert provenance.git_info(package)["diff_sha256"] != added["diff_sha256"]


def test_git_absent_or_no_repository_records_null_and_why(tmp_path, monkeypatch):
  (tmp_path / "__init__.py").write_text("")
  outside = provenance.git_info(tmp_path)
  assert outside["commit"] is None and outside["dirty"] is None and outside["error"]

  def no_git(*args, **kwargs):
    raise FileNotFoundError("git")

  monkeypatch.setattr(provenance.subprocess, "run", no_git)
  missing = provenance.git_info(tmp_path)
  assert missing["commit"] is None and missing["error"] == "git is not installed"


def test_a_package_inside_someone_elses_repository_is_not_theirs(repo):
  """A package installed into a virtual environment inside a project's repository: the
  project's commit is not the package's."""
  site = repo / "venv" / "spo_jax"
  site.mkdir(parents=True)
  (site / "__init__.py").write_text("")
  (repo / ".gitignore").write_text("venv/\n")
  info = provenance.git_info(site)
  assert info["commit"] is None and "__init__.py" in info["error"]


# -------------------------------------------------------------------------------------
# Failures and reading it back
# -------------------------------------------------------------------------------------

def test_a_failed_write_of_provenance_exits_4_in_one_line(tmp_path, capsys, monkeypatch):
  """The disk fills while the atomic writer writes provenance.json's temporary file (config.json
  and policy.json were written): exit code 4, one line, no temporary file left."""
  half_write(monkeypatch, "provenance.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
  monkeypatch.setattr("spo_jax.write_errors.silence_stderr", lambda: None)  # keep pytest's stderr
  run = tmp_path / "run"
  with pytest.raises(SystemExit) as stop:
    train_main(["--env", "point_reach", "--num-envs", "4", "--episode-length", "8",
                "--num-minibatches", "1", "--quiet", "--run-dir", str(run)])
  assert stop.value.code == 4
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "could not write the provenance" in err[0], err
  assert "ENOSPC" in err[0] and "start again with --overwrite" in err[0]
  assert sorted(os.listdir(run)) == ["config.json", "policy.json"]  # no temporary, no lock


def test_summary_names_commit_versions_devices_and_resumes(trained, tmp_path):
  run = _copy(trained, tmp_path)
  record = provenance.read(run)
  lines = provenance.summary(record)
  start = record["start"]
  assert lines[0].startswith("provenance: spo_jax ")
  assert f"{start['devices']['count']} x {start['devices']['kind']}" in lines[0]
  assert f"jax {start['versions']['jax']}" in lines[1]
  resumed = dict(start, versions=dict(start["versions"], jax="9.9"))
  record["resumes"].append(resumed)
  assert "resumed 1 time" in provenance.summary(record)[2]
  assert f"jax {start['versions']['jax']} → 9.9" in provenance.summary(record)[2]
  assert provenance.summary(None) == [
      "provenance: not recorded (a run from before provenance.json)"]
