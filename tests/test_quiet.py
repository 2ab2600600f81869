"""spo_jax/_quiet.py: `quiet_imports` hides what libraries print, warn and log while they are
imported, MuJoCo's C-level warnings included, and puts everything back afterwards."""

import logging
import sys
import warnings

import pytest

from spo_jax._quiet import quiet_imports

# A model with the deprecated compiler attribute Brax's own models use: compiling it makes
# MuJoCo's C code warn (to stderr, and appended to MUJOCO_LOG.TXT in the working directory).
_DEPRECATED_XML = ('<mujoco><compiler settotalmass="1"/><worldbody><body><freejoint/>'
                   '<geom size="0.1"/></body></worldbody></mujoco>')


def test_prints_warnings_and_log_records_are_hidden(capsys, caplog, recwarn):
  caplog.set_level(logging.DEBUG)
  with quiet_imports():
    print("Failed to import warp")
    print("to stderr", file=sys.stderr)
    warnings.warn("pipeline no longer actively developed", DeprecationWarning, stacklevel=1)
    logging.getLogger("brax").warning("a notice")
  assert capsys.readouterr() == ("", "")
  assert len(recwarn) == 0 and caplog.records == []


def test_everything_is_put_back_afterwards_even_after_an_error(capsys, caplog):
  caplog.set_level(logging.DEBUG)
  logging.disable(logging.DEBUG)  # a caller's own setting, not the default NOTSET
  try:
    with pytest.raises(ValueError, match="inside"), quiet_imports():
      assert logging.root.manager.disable == logging.WARNING
      raise ValueError("inside")
    assert logging.root.manager.disable == logging.DEBUG
  finally:
    logging.disable(logging.NOTSET)
  print("seen")
  logging.getLogger("brax").warning("seen too")
  with pytest.warns(UserWarning, match="seen again"):
    warnings.warn("seen again", UserWarning, stacklevel=1)
  assert capsys.readouterr().out == "seen\n"
  assert [r.getMessage() for r in caplog.records] == ["seen too"]


def test_mujoco_c_warnings_are_neither_printed_nor_written_to_a_log_file(
    tmp_path, monkeypatch, capfd, caplog):
  mujoco = pytest.importorskip("mujoco")
  monkeypatch.chdir(tmp_path)
  before = mujoco.get_mju_user_warning()
  with quiet_imports():
    mujoco.MjModel.from_xml_string(_DEPRECATED_XML)
    hook = mujoco.get_mju_user_warning()
  # Without a hook the C code writes to file descriptor 2, past sys.stderr (capfd sees it).
  assert capfd.readouterr() == ("", "")
  assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
  assert mujoco.get_mju_user_warning() is before
  # The hook sends a warning to the package's debug log.
  caplog.set_level(logging.DEBUG, logger="spo_jax")
  hook("settotalmass is deprecated")
  assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
      ("spo_jax", logging.DEBUG, "mujoco: settotalmass is deprecated")]
