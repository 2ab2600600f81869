"""`scripts/gpu_bench.sh` refuses bad input in one line with exit code 2, before it installs or
measures anything, so that nothing partial is ever presented as a GPU result."""
import os
import pathlib
import subprocess

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "gpu_bench.sh"


def _run(*args, env_extra=None, tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), **(env_extra or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_unknown_stage_is_refused_before_anything_runs(tmp_path):
    done = _run("throughputt", tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "unknown stage 'throughputt': use check, throughput, winrate, seeds or all"]
    assert not (tmp_path / "out").exists()  # refused before the results folder was made


def test_a_machine_without_gpu_is_refused_in_one_line(tmp_path):
    # CI's machine has no GPU: the check stage must stop at the device test, not measure the CPU.
    done = _run("check", env_extra={"JAX_PLATFORMS": "cpu"}, tmp_path=tmp_path)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("JAX sees no GPU here") and "ALLOW_CPU=1" in last
    assert not list((tmp_path / "out").glob("gpu_*"))
