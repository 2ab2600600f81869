"""`--deterministic`: the XLA flag reaches XLA_FLAGS before JAX starts its backend (the only
moment XLA reads it), XLA:CPU accepts it, and a request that comes too late is refused on an
accelerator and harmless on CPU."""

import os
import subprocess
import sys
import textwrap
import types

import pytest

import spo_jax
from spo_jax import determinism
from spo_jax.config import ConfigError, validate

# Runs `spo-train --deterministic` with JAX's backend start wrapped: the wrapper prints
# XLA_FLAGS as XLA is about to read it, lets the backend start (XLA aborts on a flag it does
# not know, so this also shows that XLA:CPU accepts it), prints the devices and stops.
# `_init_backend` is private to JAX; if it moves, this test fails loudly rather than passing.
_PROBE = textwrap.dedent("""
    import os, sys
    from jax._src import xla_bridge

    real = xla_bridge._init_backend

    def start(*args, **kwargs):
      print("XLA_FLAGS at backend start:", os.environ.get("XLA_FLAGS"), flush=True)
      backend = real(*args, **kwargs)
      print("started:", backend.platform, flush=True)
      os._exit(0)

    xla_bridge._init_backend = start
    from spo_jax.cli import train_main
    train_main(sys.argv[1:])
    """)


def test_spo_train_sets_the_flag_before_the_backend_starts(tmp_path):
  argv = ["--env", "point_reach", "--num-envs", "4", "--episode-length", "8",
          "--num-minibatches", "1", "--quiet", "--deterministic", "--run-dir",
          str(tmp_path / "run")]
  # A flag the user set already is kept, the deterministic one appended.
  env = {**os.environ, "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
  out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                       env=env, timeout=600)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0] == ("XLA_FLAGS at backend start: --xla_cpu_enable_fast_math=false "
                      "--xla_gpu_deterministic_ops=true"), out.stdout
  assert lines[1] == "started: cpu"


def test_flag_in_reads_the_last_setting():
  assert determinism.flag_in("--xla_gpu_deterministic_ops=true")
  assert determinism.flag_in("--a=1 --xla_gpu_deterministic_ops")  # a bare boolean flag
  assert not determinism.flag_in("--xla_gpu_deterministic_ops=true "
                                 "--xla_gpu_deterministic_ops=false")
  assert not determinism.flag_in("--xla_gpu_deterministic_ops_x=true")
  assert not determinism.flag_in(None) and not determinism.flag_in("")


def test_too_late_is_harmless_on_cpu_and_refused_on_a_gpu(monkeypatch):
  import jax

  jax.devices()  # the backend of this test process has started
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  config = spo_jax.preset("point_reach").replace(deterministic=True)
  determinism.enable(config)  # CPU computes the same bits without the flag: nothing to do
  assert "XLA_FLAGS" not in os.environ
  monkeypatch.setattr(jax, "devices", lambda: [types.SimpleNamespace(platform="gpu")])
  with pytest.raises(ConfigError, match="cannot take effect.*XLA_FLAGS="):
    determinism.enable(config)
  # Already in XLA_FLAGS when JAX started: nothing to refuse.
  monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
  determinism.enable(config)
  determinism.enable(config.replace(deterministic=False))


def test_deterministic_must_be_a_bool_and_may_change_on_resume():
  from spo_jax.checkpoint import RESUMABLE_FIELDS

  with pytest.raises(ConfigError, match="deterministic"):
    validate(spo_jax.preset("point_reach").replace(deterministic="yes"))
  assert "deterministic" in RESUMABLE_FIELDS
