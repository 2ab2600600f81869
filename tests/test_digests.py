"""spo_jax/digests.py: file digests and the checkpoint manifest on plain files (no Orbax), with
the SHA-256 of known inputs. Damaged real checkpoints are in test_faults.py."""

import hashlib
import json

import pytest

from spo_jax import Config, digests
from spo_jax.config import ConfigError

ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256("abc")


def test_sha256_of_a_known_input_and_of_a_file_larger_than_one_chunk(tmp_path):
  (tmp_path / "abc").write_bytes(b"abc")
  assert digests.sha256_file(tmp_path / "abc") == ABC
  big = bytes(range(256)) * 5000  # 1.28 MB: read in two chunks of 1 MiB
  (tmp_path / "big").write_bytes(big)
  assert digests.sha256_file(tmp_path / "big") == hashlib.sha256(big).hexdigest()


def test_a_teacher_file_is_digested_and_a_changed_one_refuses_the_resume(tmp_path):
  raters = tmp_path / "raters.json"
  raters.write_bytes(b"abc")
  config = Config(env="balance", teacher="intransitive", teacher_raters=str(raters))
  saved = digests.teacher_file_digests(config)
  assert saved == {"teacher_raters": ABC}  # preset names ('cycle3') are not files
  assert digests.teacher_file_digests(Config(env="balance")) == {}
  digests.check_same_files(saved, digests.teacher_file_digests(config), tmp_path)
  raters.write_bytes(b"abd")
  with pytest.raises(ConfigError, match="'teacher_raters' has changed since the checkpoint"):
    digests.check_same_files(saved, digests.teacher_file_digests(config), tmp_path)


def test_the_manifest_names_the_first_file_that_differs(tmp_path):
  """Two files a (3 bytes) and sub/b: the manifest lists both with size and SHA-256; a
  legacy step (no manifest) is trusted; a changed size, a changed byte, a missing file and a
  damaged manifest are each named."""
  step = tmp_path / "7"
  (step / "sub").mkdir(parents=True)
  (step / "a").write_bytes(b"abc")
  (step / "sub" / "b").write_bytes(b"0123456789")
  assert digests.manifest_problem(step) is None  # no manifest yet: legacy, trusted
  manifest = digests.write_manifest(step)
  assert manifest["files"]["a"] == {"size": 3, "sha256": ABC}
  assert set(manifest["files"]) == {"a", "sub/b"}
  assert digests.manifest_problem(step) is None
  (step / "a").write_bytes(b"abd")
  assert digests.manifest_problem(step) == "a does not match its SHA-256 in the manifest"
  (step / "a").write_bytes(b"abcd")
  assert digests.manifest_problem(step) == "a has 4 bytes, its manifest says 3"
  (step / "a").unlink()
  assert digests.manifest_problem(step) == "a is missing"
  (step / digests.MANIFEST).write_text(json.dumps({"files": "none"}))
  assert "is damaged" in digests.manifest_problem(step)
