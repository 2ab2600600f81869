"""Tests for spo_jax/learning_bench/: the whole pipeline on the tiny point_reach env (runs in
subprocesses, a failed run reported then redone by a rerun, files, a changed plan refused), the
interpolation and summary worked out by hand, Brax's batch-size scaling, and every bad input
refused in one line before anything is built. No test builds a Brax locomotion env."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from spo_jax import learning_bench as lb
from spo_jax.learning_bench import cli as lb_cli
from spo_jax.learning_bench import running as lb_running

# point_reach: N x H = 64 x 32 = 2048 env steps per iteration of ours; Brax PPO's training
# step is batch_size x num_minibatches x unroll_length = 32 x 4 x 8 = 1024 env steps.
TINY = ["--env", "point_reach", "--budget", "4096", "--seeds", "0,1", "--num-evals", "3",
        "--contenders", "brax_ppo,ground_truth"]


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_end_to_end_resume_and_changed_plan(tmp_path, capsys, monkeypatch):
  # The runs' subprocesses inherit this: XLA's CPU backend skips LLVM's optimisations, which
  # takes about a third off each run's compilation (the test checks the pipeline, not speed).
  monkeypatch.setenv("XLA_FLAGS", " ".join(
      [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip())
  out = tmp_path / "lb"
  # ground_truth seed 0 fails (its process exits 1 after a line in its log) and is retried by
  # the rerun below: every (contender, seed) runs for real exactly once.
  real_run = lb_running._run_subprocess

  def fail_ground_truth_seed_0(out_dir, name, seed):
    if (name, seed) != ("ground_truth", 0):
      return real_run(out_dir, name, seed)
    log = out_dir / "logs" / f"{name}-seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback ...\nRuntimeError: simulated crash\n")
    return 1

  monkeypatch.setattr(lb_running, "_run_subprocess", fail_ground_truth_seed_0)
  assert lb.main([*TINY, "--out", str(out)]) == 1
  printed, err = capsys.readouterr()
  # Seed 0 runs brax_ppo then ground_truth; seed 1 the other way round.
  started = [ln.split(":")[0] for ln in printed.splitlines() if ln.endswith("running ...")]
  assert started == ["[1/4] brax_ppo seed 0", "[2/4] ground_truth seed 0",
                     "[3/4] ground_truth seed 1", "[4/4] brax_ppo seed 1"]
  assert "[2/4] ground_truth seed 0: FAILED (exit 1; " in printed
  assert printed.count("FAILED") == 1 and "simulated crash" in printed
  assert "| brax_ppo | 2/2 |" in printed and "| ground_truth | 1/2 |" in printed
  assert "1 run(s) failed (ground_truth seed 0)" in err and "rerun the same command" in err
  assert not lb.run_path(out, "ground_truth", 0).exists()

  # Resume: only the failed run is done again; the others' files are not touched.
  monkeypatch.setattr(lb_running, "_run_subprocess", real_run)
  kept = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
  kept.update({p: p.stat().st_mtime_ns for p in (out / "logs").glob("brax_ppo-*.log")})
  assert len(kept) == 5
  assert lb.main([*TINY, "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert printed.count("running ...") == 1 and "[2/4] ground_truth seed 0: running" in printed
  assert printed.count("done already") == 3
  assert "| brax_ppo | 2/2 |" in printed and "ground_truth / brax_ppo wall time" in printed
  assert lb.run_path(out, "ground_truth", 0).is_file()
  assert {p: p.stat().st_mtime_ns for p in kept} == kept

  plan = json.loads((out / "plan.json").read_text())
  assert plan["contenders"] == ["brax_ppo", "ground_truth"] and plan["backend"] is None
  assert {"jax", "brax", "spo_jax"} <= set(plan["versions"]) and plan["machine"]["cores"] >= 1
  brax = plan["settings"]["brax_ppo"]["ppo_train_kwargs"]
  assert (brax["num_envs"], brax["batch_size"]) == (64, 32)
  ours = plan["settings"]["ground_truth"]["config"]
  # Evaluations spaced in env steps, as Brax's: 4096 // 3 = 1365; the same episodes as Brax's.
  assert ours["reward_source"] == "ground_truth" and ours["eval_every_steps"] == 1365
  assert (brax["num_eval_envs"], brax["deterministic_eval"]) == (ours["num_eval_envs"], True)
  assert ours["num_timesteps"] == 4096

  for name in ("brax_ppo", "ground_truth"):
    for seed in (0, 1):
      run = json.loads(lb.run_path(out, name, seed).read_text())
      steps = [p["env_steps"] for p in run["curve"]]
      walls = [p["wall_s"] for p in run["curve"]]
      assert steps == sorted(steps) and walls == sorted(walls)
      # Both stop at (or just past) the budget, with an evaluation there.
      assert steps[-1] == run["env_steps"] >= 4096
      assert 0 < walls[-1] <= run["wall_s"]
      assert all(math.isfinite(p["eval_return"]) for p in run["curve"])
      if name == "brax_ppo":
        # Brax: untrained evaluation at 0, then 2 epochs of ceil(4096 / 2048) = 2 steps.
        assert steps == [0, 2048, 4096]
      else:
        assert steps[0] > 0 and run["physics_steps"] >= run["env_steps"]

  rows = _read_csv(out / "curves.csv")
  assert set(rows[0]) == {"contender", "seed", "env_steps", "wall_s", "eval_return"}
  assert {(r["contender"], r["seed"]) for r in rows} == {
      (c, s) for c in ("brax_ppo", "ground_truth") for s in ("0", "1")}
  summary = {r["contender"]: r for r in _read_csv(out / "summary.csv")}
  assert set(summary) == {"brax_ppo", "ground_truth"}
  gt, bp = summary["ground_truth"], summary["brax_ppo"]
  assert gt["seeds_done"] == "2" and float(gt["env_steps_per_s_mean"]) > 0
  assert float(gt["wall_s_over_brax_ppo"]) == pytest.approx(
      float(gt["wall_s_mean"]) / float(bp["wall_s_mean"]))
  assert float(bp["final_return_mean"]) == pytest.approx(
      (float(bp["final_return_seed0"]) + float(bp["final_return_seed1"])) / 2)
  assert "| ground_truth | 2/2 |" in (out / "summary.md").read_text()
  assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # Another plan into the same folder: refused in one line naming the field and the fix.
  changed = [a if a != "4096" else "6144" for a in TINY]
  assert lb.main([*changed, "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "budget: saved 4096, now 6144" in err and "--out" in err and "--overwrite" in err
  assert {p: p.stat().st_mtime_ns for p in kept} == kept


def _plan(budget=4096):
  return lb.make_plan("point_reach", None, budget, "0,1", "brax_ppo,ground_truth,spo", 3)


def test_out_folder_checks(tmp_path):
  out = tmp_path / "lb"
  lb._prepare_out(out, _plan(), overwrite=False)
  lb._prepare_out(out, _plan(), overwrite=False)  # the same plan: resumes
  (out / "runs").mkdir()
  (out / "runs" / "spo-seed0.json").write_text("{}")
  with pytest.raises(lb.BenchError, match=r"seeds: saved \[0, 1\], now \[0, 1, 2\]"):
    lb._prepare_out(out, lb.make_plan("point_reach", None, 4096, "0,1,2",
                                      "brax_ppo,ground_truth,spo", 3), overwrite=False)
  lb._prepare_out(out, _plan(8192), overwrite=True)  # starts afresh
  assert not (out / "runs").exists()
  assert json.loads((out / "plan.json").read_text())["budget"] == 8192
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  with pytest.raises(lb.BenchError, match="no plan.json"):
    lb._prepare_out(other, _plan(), overwrite=True)
  assert (other / "notes.txt").read_text() == "mine"


def test_run_order_rotates_contenders_per_seed():
  assert lb.run_order([0, 1, 2, 3], ["a", "b", "c"]) == [
      (0, "a"), (0, "b"), (0, "c"), (1, "b"), (1, "c"), (1, "a"),
      (2, "c"), (2, "a"), (2, "b"), (3, "a"), (3, "b"), (3, "c")]


def test_interpolation_at_equal_env_steps():
  # Evaluations at 0, 1000, 3000 with returns -5, 15, 5:
  #   500:  halfway from -5 to 15        -> 5
  #   1000: an evaluation                -> 15
  #   2000: halfway from 15 to 5         -> 10
  #   3000: the last evaluation          -> 5
  #   3500: past the last evaluation     -> NaN (no extrapolation)
  got = lb.interpolate([0, 1000, 3000], [-5, 15, 5], [500, 1000, 2000, 3000, 3500])
  np.testing.assert_allclose(got, [5, 15, 10, 5, np.nan])
  # A curve that starts at 1000 (no untrained evaluation): nothing before it.
  # 500 -> NaN; 1500: halfway from 2 (at 1000) to 4 (at 2000) -> 3.
  np.testing.assert_allclose(lb.interpolate([1000, 2000], [2, 4], [500, 1500]), [np.nan, 3])
  assert np.isnan(lb.interpolate([], [], [1])).all()


def _run(name, seed, points, wall):
  return {"contender": name, "seed": seed, "wall_s": wall, "env_steps": points[-1][0],
          "curve": [{"env_steps": s, "eval_return": r, "wall_s": t} for s, r, t in points]}


def test_summary_by_hand():
  plan = {"contenders": ["brax_ppo", "ground_truth", "spo"], "seeds": [0, 1], "budget": 4000}
  runs = {
      # Brax: evaluations at 0, 2000, 4000.
      ("brax_ppo", 0): _run("brax_ppo", 0, [(0, 0, 5), (2000, 40, 15), (4000, 80, 25)], 30),
      ("brax_ppo", 1): _run("brax_ppo", 1, [(0, 0, 5), (2000, 60, 15), (4000, 120, 25)], 30),
      # Ours: first evaluation at 1000 (after the first iterations), last past the budget.
      ("ground_truth", 0): _run("ground_truth", 0, [(1000, 20, 8), (4400, 88, 12)], 12),
      ("ground_truth", 1): _run("ground_truth", 1, [(1000, 30, 8), (4200, 114, 10)], 18),
      ("spo", 0): _run("spo", 0, [(1000, 10, 9), (4000, 50, 15)], 16),
  }
  s = lb.summarize(plan, runs)
  assert s["grid"] == [1000, 2000, 3000, 4000]
  bp, gt, spo = (s["rows"][n] for n in ("brax_ppo", "ground_truth", "spo"))
  # Brax at 1000: seed 0 halfway 0 -> 40 = 20, seed 1 halfway 0 -> 60 = 30; mean 25.
  # At 3000: 60 and 90, mean 75. Final: (80 + 120) / 2 = 100.
  assert bp["return_at_steps"] == pytest.approx([25, 50, 75, 100])
  assert bp["final_return_mean"] == 100 and bp["final_return_per_seed"] == {0: 80, 1: 120}
  # Ground truth at 4000: seed 0: 20 + 68 x 3000 / 3400 = 80; seed 1: 30 + 84 x 3000 / 3200
  # = 108.75; mean 94.375. Final: (88 + 114) / 2 = 101.
  assert gt["return_at_steps"][-1] == pytest.approx(94.375)
  assert gt["final_return_mean"] == 101
  # spo has one seed of two: the grid means are over the finished seed.
  assert spo["seeds_done"] == 1 and spo["return_at_steps"][0] == 10
  # Env steps/s: Brax 4000 / 30; ours (4400 / 12 + 4200 / 18) / 2.
  assert bp["env_steps_per_s_mean"] == pytest.approx(4000 / 30)
  assert gt["env_steps_per_s_mean"] == pytest.approx((4400 / 12 + 4200 / 18) / 2)
  # Steady: from the first evaluation after step 0 to the last, (4000 - 2000) / (25 - 15).
  assert bp["steady_env_steps_per_s_mean"] == pytest.approx(200)
  assert s["ratios"] == pytest.approx({
      "ground_truth / brax_ppo final return": 101 / 100,
      "ground_truth / brax_ppo wall time": 15 / 30,
      "spo / ground_truth final return": 50 / 101})
  # Negative returns: no ratio (it would read backwards).
  runs[("spo", 0)]["curve"][-1]["eval_return"] = -50
  assert lb.summarize(plan, runs)["ratios"]["spo / ground_truth final return"] is None
  # A grid point one seed's curve does not reach: no mean there.
  runs[("ground_truth", 1)]["curve"][0]["env_steps"] = 1500
  assert lb.summarize(plan, runs)["rows"]["ground_truth"]["return_at_steps"][0] is None


@pytest.mark.parametrize("num_envs, expected", [
    # 512 x 32 / 2048 = 8; 8 x 32 = 256 = 8 x 32: a multiple of N.
    (32, 8),
    # 512 x 64 / 2048 = 16; 16 x 32 = 512 = 8 x 64.
    (64, 16),
    # 512 x 256 / 2048 = 64; 64 x 32 = 2048 = 8 x 256.
    (256, 64),
    # 512 x 6 / 2048 = 1.5 -> 2; 2 x 32 = 64 is not a multiple of 6; q = 6 / gcd(6, 32) = 3,
    # so 3: 3 x 32 = 96 = 16 x 6.
    (6, 3),
])
def test_halfcheetah_batch_size_scaling(num_envs, expected):
  cheetah = lb.SETTINGS["halfcheetah"]
  kwargs = lb.brax_kwargs(cheetah, num_envs)
  assert kwargs["batch_size"] == expected
  assert kwargs["batch_size"] * kwargs["num_minibatches"] % num_envs == 0
  assert kwargs["num_envs"] == num_envs
  # Every other published field is kept.
  assert (kwargs["unroll_length"], kwargs["num_minibatches"], kwargs["num_updates_per_batch"],
          kwargs["discounting"], kwargs["reward_scaling"], kwargs["entropy_cost"]) == (
              20, 32, 8, 0.95, 1.0, 1e-3)


def test_settings_table():
  assert "SAC" in lb.SETTINGS["hopper"].source and "ant" in lb.SETTINGS["walker2d"].source
  assert lb.SETTINGS["hopper"].batch_size == lb.SETTINGS["ant"].batch_size == 2048
  # ant at N = 256: 2048 x 256 / 4096 = 128; 128 x 32 = 4096 = 16 x 256.
  assert lb.brax_kwargs(lb.SETTINGS["ant"], 256)["batch_size"] == 128
  # Brax runs whole epochs: num_evals 3 -> 2 epochs of ceil(5000 / 2048) = 3 steps of 1024.
  assert lb.brax_total_steps(5000, 3, 1024) == 6144


@pytest.fixture
def nothing_built(monkeypatch):
  """Fail the test if a bad input got as far as building an env or probing the device."""
  import spo_jax.envs

  def forbidden(*args, **kwargs):
    raise AssertionError("built or probed before the arguments were checked")

  monkeypatch.setattr(spo_jax.envs, "make_env", forbidden)
  # main (learning_bench/cli.py) looks describe_machine up in its own module.
  monkeypatch.setattr(lb_cli, "describe_machine", forbidden)


@pytest.mark.parametrize("args, needle", [
    (["--env", "balance"], "no learning-bench settings; envs with some: halfcheetah"),
    (["--env", "nope"], "unknown env 'nope'"),
    (["--env", "point_reach", "--budget", "1000"],
     "one iteration of ground_truth and spo (N x H = 64 x 32 = 2048 env steps)"),
    (["--env", "point_reach", "--budget", "1000", "--contenders", "brax_ppo"],
     "use --budget >= 1024"),
    (["--env", "hopper", "--contenders", "brax_ppo@positional,ground_truth,spo"],
     "different backends (brax_ppo@positional, ground_truth@generalized"),
    (["--env", "hopper", "--backend", "spring", "--contenders", "brax_ppo@spring,spo@mjx"],
     "different backends"),
    (["--env", "hopper", "--backend", "warp"], "backend 'warp' of contender brax_ppo"),
    (["--env", "point_reach", "--backend", "positional"], "has no Brax physics backend"),
    (["--env", "matrix_game"], "Brax PPO cannot train 'matrix_game': it has discrete actions"),
    (["--contenders", "brax_ppo,ppo2"], "unknown contender 'ppo2'"),
    (["--contenders", "spo,spo"], "listed twice"),
    (["--seeds", "0,-1"], "non-negative integers"),
    (["--seeds", "0,x"], "non-negative integers"),
    (["--seeds", "1,1"], "repeats a seed"),
    (["--env", "point_reach", "--num-evals", "0"], "--num-evals 0 must be an integer >= 1"),
])
def test_bad_inputs_one_line_exit_2(args, needle, nothing_built, tmp_path, capsys):
  out = tmp_path / "lb"
  assert lb.main([*args, "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and needle in err, err
  assert not out.exists()


def test_bad_flag_value_is_one_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    lb.main(["--budget", "many"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "--budget" in err


def test_bad_input_from_the_command_line(tmp_path):
  out = tmp_path / "lb"
  proc = subprocess.run([sys.executable, "-m", "spo_jax.learning_bench", "--env", "matrix_game",
                         "--out", str(out)], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert "discrete actions" in proc.stderr and "--contenders ground_truth,spo" in proc.stderr
  assert not out.exists()
