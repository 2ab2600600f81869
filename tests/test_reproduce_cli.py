"""spo_jax/reproduce/cli.py and scripts/reproduce.py: bad input, the missing extra, and one
end-to-end run of the script in a subprocess (the only test here that trains: one compiled
run on the package's point_reach env)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spo_jax.reproduce import cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"
# The reproduce extra, made unimportable: `sys.modules[name] = None` makes `import name` fail.
WITHOUT_EXTRA = ("import runpy, sys\n"
                 "for name in ('pandas', 'rliable', 'arch', 'matplotlib'):\n"
                 "  sys.modules[name] = None\n"
                 "sys.argv = ['spo-reproduce', *sys.argv[1:]]\n"
                 "runpy.run_module('spo_jax.reproduce', run_name='__main__')\n")


def _env():
  # The subprocess imports this checkout's package, whatever is installed.
  return {**os.environ, "PYTHONPATH": os.pathsep.join(
      [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_script(*args, timeout=900):
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                        timeout=timeout, env=_env())


def run_without_extra(*args, timeout=300):
  return subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, *args], capture_output=True,
                        text=True, timeout=timeout, env=_env())


def _bad_table(tmp_path, rows) -> str:
  path = tmp_path / "table.json"
  path.write_text(json.dumps(rows))
  return str(path)


@pytest.mark.parametrize("args, words", [
    (["--question", "q5"], "unknown question 'q5'; valid: q1, q2, q3, q4, all"),
    (["--scale", "tpu"], "unknown scale 'tpu'; valid: cpu, gpu"),
    (["--env", "cheetah"], "unknown env 'cheetah' for --scale cpu; valid: balance, "
                           "inverted_pendulum, point_reach"),
    (["--question", "q4", "--teachers", "constraint,oracle"],
     "unknown Q4 teacher 'oracle'; valid: constraint, deadline, peak, steady"),
    (["--methods", "dpo"], "unknown method 'dpo'; valid: spo, rm, ppo, spo_soft"),
    (["--question", "q3", "--labels-per-trajectory", "0"],
     "labels_per_trajectory (--labels-per-trajectory) = 0 cannot be honoured"),
    (["--question", "q2", "--labels-per-trajectory", "32"], "use 1..31"),
    (["--question", "q2", "--tiny", "--labels-per-trajectory", "6"], "use 1..5"),
    (["--labels-per-trajectory", "-1"], "at least one label per trajectory"),
    (["--question", "q1", "--labels-per-trajectory", "2"], "of q2 and q3 only"),
    (["--question", "q1", "--methods", "ppo"], "no run of q1 uses the methods 'ppo'"),
    (["--seeds", "0"], "--seeds 0 is invalid"),
    (["--seeds", "five"], "invalid int value"),
    (["--reps", "10"], "--reps 10 is too few"),
    (["--question", "q1", "--tiny", "--table", "TABLE:[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]"],
     "square"),
    (["--question", "q1", "--tiny", "--table", "TABLE:[[0.5, 1.5], [-0.5, 0.5]]"],
     "outside [0, 1]"),
    (["--question", "q1", "--tiny", "--table", "TABLE:[[0.5, 0.9], [0.3, 0.5]]"],
     "antisymmetry"),
])
def test_bad_input_is_refused_in_one_line_before_anything_runs(args, words, tmp_path, capsys):
  args = [_bad_table(tmp_path, json.loads(a[len("TABLE:"):])) if a.startswith("TABLE:") else a
          for a in args]
  out_dir = tmp_path / "out"
  code = cli.main([*args, "--out", str(out_dir)])
  err = capsys.readouterr().err
  assert code == 2
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("spo-reproduce: error: ") and words in err, err
  assert not out_dir.exists()


def test_dry_run_validates_and_prints_the_plan_without_running(tmp_path, capsys):
  out_dir = tmp_path / "out"
  assert cli.main(["--question", "all", "--tiny", "--dry-run", "--out", str(out_dir)]) == 0
  lines = capsys.readouterr().out.splitlines()
  # q1: 2 matrix + 2 control; q2: spo, rm, ppo + the soft-label reference; q3: (1 beta + 2
  # epsilons) x (spo, rm, reference); q4: 2 teachers x 2: 4 + 4 + 9 + 4 = 21, at 3 seeds.
  assert lines[-1].startswith("21 runs") and "every config validated" in lines[-1]
  rows = [line.split() for line in lines[1:-1]]
  assert [row[1] for row in rows].count("point_reach") == 19  # all but the 2 matrix games
  assert {row[4] for row in rows} == {"3"}  # S
  assert not out_dir.exists()


def test_without_the_extra_help_and_dry_run_work_and_a_run_says_what_to_install(tmp_path):
  """rliable, pandas and matplotlib are imported only for the statistics and figures: a run
  stops before training with one line naming the install command, exit 2."""
  out_dir = tmp_path / "out"
  helped = run_without_extra("--help")
  assert helped.returncode == 0, helped.stderr
  assert helped.stdout.startswith("usage: spo-reproduce ") and "--dry-run" in helped.stdout
  planned = run_without_extra("--question", "q2", "--tiny", "--dry-run")
  assert planned.returncode == 0, planned.stderr
  assert "4 runs" in planned.stdout
  refused = run_without_extra("--question", "q2", "--tiny", "--out", str(out_dir))
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines() == [
      "spo-reproduce: error: pandas is not installed (needed for the statistics, tables and "
      "figures); install the extra with: pip install -e '.[reproduce]'"]
  assert not out_dir.exists()


def test_tiny_run_writes_tables_figures_and_skips_when_done(tmp_path):
  """One compiled run (SPO, 3 seeds vmapped, point_reach, 3 iterations) through the script,
  then the same command again: nothing is retrained, the tables are rebuilt."""
  out_dir = tmp_path / "out"
  args = ["--question", "q2", "--tiny", "--methods", "spo", "--out", str(out_dir),
          "--reps", "500", "--docs", str(tmp_path / "docs" / "results")]
  first = run_script(*args)
  assert first.returncode == 0, first.stderr
  q2 = out_dir / "q2"
  results = pd.read_csv(q2 / "results.csv")
  assert set(results["seed"]) == {0, 1, 2}
  assert {"step", "iteration", "eval/episode_reward", "train/total_queries",
          "train/total_feedback"} <= set(results)
  finals = pd.read_csv(q2 / "finals.csv")
  returns = finals[finals["measure"] == "final_eval_return"].sort_values("seed")["value"]
  assert len(returns) == 3
  # The final return of each seed is its last evaluation in metrics.jsonl.
  rows = [json.loads(line) for line in (q2 / "oracle-spo" / "metrics.jsonl").open()]
  last = {r["seed"]: r["eval/episode_reward"] for r in rows}
  np.testing.assert_allclose(returns, [last[s] for s in (0, 1, 2)], rtol=1e-6)
  summary = (out_dir / "summary.md").read_text()
  # The IQM of 3 values trims none of them: it is their mean.
  expected = f"| oracle | SPO | final return (eval) | {np.mean(returns):.3f} |"
  assert expected in summary, summary
  assert f"Command: `python scripts/reproduce.py {' '.join(args)}`" in summary
  assert (q2 / "q2_sample_efficiency.png").stat().st_size > 1000
  docs = (tmp_path / "docs" / "results.md").read_text()
  assert "<!-- generated:q2 start -->" in docs and expected in docs
  assert "![q2_sample_efficiency](results/q2_sample_efficiency.png)" in docs
  assert (tmp_path / "docs" / "results" / "q2_sample_efficiency.png").exists()
  # The data behind the page's numbers travels with it.
  for name in ("results.csv", "finals.csv"):
    assert ((tmp_path / "docs" / "results" / "q2" / name).read_text()
            == (q2 / name).read_text())

  again = run_script(*args)
  assert again.returncode == 0, again.stderr
  assert "finished before, skipped" in again.stdout
  assert expected in (out_dir / "summary.md").read_text()


def test_bad_input_exits_2_from_the_command_line(tmp_path):
  out = run_script("--question", "q9", "--out", str(tmp_path / "out"), timeout=300)
  assert out.returncode == 2
  assert out.stderr.strip() == ("reproduce.py: error: unknown question 'q9'; valid: q1, q2, "
                                "q3, q4, all")
  assert out.stdout == ""


def test_a_full_disk_exits_4_in_one_line(tmp_path, capsys, monkeypatch):
  """The disk fills while the first point's provenance.json is written: exit code 4 and one
  line naming the file, as `spo-train` reports it (nothing is compiled before that write).
  stderr is silenced twice: by the hook the moment the failure is recognised (before Orbax's
  cleanup could print tracebacks) and after the report."""
  from write_faults import half_write
  half_write(monkeypatch, "provenance.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
  silenced = []  # stands in for silencing, which would also silence pytest's capture
  monkeypatch.setattr("spo_jax.write_errors.silence_stderr", lambda: silenced.append(1))
  out_dir = tmp_path / "out"
  code = cli.main(["--question", "q2", "--tiny", "--methods", "spo", "--out", str(out_dir)])
  assert code == 4
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("spo-reproduce: error: could not write the "
                                              "provenance"), err
  assert "ENOSPC" in err[0]
  assert len(silenced) == 2
