"""What the run-directory lock and the checkpoint manifest cost (docs/long_runs.md).

  PYTHONPATH=. python scripts/fault_costs.py [--env inverted_pendulum] [--repeats 20]

Builds the preset's TrainState (the default run's, unless --env says otherwise), then times:
  - a checkpoint save as `spo-train` makes it (Orbax save + MANIFEST.json), and the same save
    with the manifest step left out, alternating, median of --repeats each;
  - writing and verifying the manifest alone, with SHA-256 and with zlib's CRC-32 for scale;
  - taking and releasing the run directory's lock.
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path


def _median_ms(times: list[float]) -> str:
  return f"{statistics.median(times) * 1e3:.1f} ms"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default=None, help="a preset (default: the default config)")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()

  import jax

  import spo_jax
  from spo_jax import checkpoint as ckpt
  from spo_jax import digests
  from spo_jax import run_dir as run_dir_lib
  from spo_jax.train import build, over_seeds, seed_keys

  config = spo_jax.default_config() if args.env is None else spo_jax.preset(args.env)
  init = jax.jit(over_seeds(build(config).fns.init, config.num_seeds))
  state = jax.block_until_ready(init(seed_keys(config)))
  meta = {"config": config.to_dict(), "counters": {}}
  root = Path(tempfile.mkdtemp(prefix="spo_fault_costs_"))
  try:
    checkpointer = ckpt.Checkpointer(root / "checkpoints")
    real_manifest = digests.write_manifest
    with_manifest, without = [], []
    for i in range(2 * args.repeats + 2):
      use = i % 2 == 0
      digests.write_manifest = real_manifest if use else (lambda step_dir: None)
      start = time.perf_counter()
      checkpointer.save(i + 1, state, meta)
      elapsed = time.perf_counter() - start
      if i >= 2:  # the first save of each kind warms Orbax up
        (with_manifest if use else without).append(elapsed)
    digests.write_manifest = real_manifest
    checkpointer.close()
    step_dir = root / "checkpoints" / str(ckpt.complete_steps(root / "checkpoints")[-1])
    size = sum(p.stat().st_size for p in step_dir.rglob("*") if p.is_file())
    print(f"checkpoint of {config.env}: {size / 1024:.0f} KiB in "
          f"{sum(1 for p in step_dir.rglob('*') if p.is_file())} files")
    print(f"save with manifest: {_median_ms(with_manifest)}; without: {_median_ms(without)} "
          f"(median of {args.repeats} each)")
    write, verify, crc = [], [], []
    for _ in range(args.repeats):
      start = time.perf_counter()
      real_manifest(step_dir)
      write.append(time.perf_counter() - start)
      start = time.perf_counter()
      assert digests.manifest_problem(step_dir) is None
      verify.append(time.perf_counter() - start)
      start = time.perf_counter()
      for p in step_dir.rglob("*"):
        if p.is_file():
          zlib.crc32(p.read_bytes())
      crc.append(time.perf_counter() - start)
    print(f"manifest alone: write (SHA-256 + atomic rename + fsync) {_median_ms(write)}, "
          f"verify {_median_ms(verify)}; CRC-32 of the same files {_median_ms(crc)}")
    lock_times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      with run_dir_lib.RunLock(root / "locked"):
        pass
      lock_times.append(time.perf_counter() - start)
    print(f"run directory lock: take and release {_median_ms(lock_times)}")
  finally:
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
