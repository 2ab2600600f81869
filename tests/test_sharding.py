"""Sharding over a device mesh gives the single-device results (4 CPU devices, subprocess)."""

import subprocess
import sys
from pathlib import Path


def test_sharded_runs_equal_single_device_runs():
  script = Path(__file__).with_name("sharding_check.py")
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=900)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "envs: sharded == single device" in out.stdout
  assert "seeds: sharded == single device" in out.stdout
  assert "indivisible axes refused" in out.stdout
