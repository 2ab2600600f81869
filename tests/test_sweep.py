"""spo-sweep (spo_jax/sweep/): a vmapped point equals its single run, resume, shards and
collect, the result tables, bad input."""

import csv
import json
import re
import shutil

import jax
import numpy as np
import pytest

import spo_jax
from spo_jax.config import ConfigError
from spo_jax.host_loop import HostLoop
from spo_jax.loggers import LogOptions
from spo_jax.sweep import cli
from spo_jax.sweep import plan as plan_lib
from spo_jax.sweep import results as results_lib
from spo_jax.sweep import run as run_lib

# Tiny runs: 8 episodes of 8 steps, hidden layers of 8 units (compile time dominates).
BASE = {"env": "point_reach", "num_envs": 8, "episode_length": 8, "num_minibatches": 2,
        "update_epochs": 1, "num_eval_envs": 4, "policy_hidden_sizes": [8],
        "value_hidden_sizes": [8], "max_iterations": 2, "eval_every": 1,
        "num_timesteps": 10**9}


@pytest.fixture(autouse=True, scope="module")
def _unoptimised_compiles():
  """Every test here compiles tiny runs and compares them with each other, never timing
  them: XLA's CPU backend skips LLVM's optimisations, which takes about 40% off each compile.
  Afterwards, JAX's in-memory caches are cleared, so that no later test in this process runs
  a program compiled here."""
  before = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", before)
  jax.clear_caches()


@pytest.fixture
def compilation_cache(tmp_path):
  """A persistent compilation cache for one test: a program compiled again in the same
  process (the same sweep group, rebuilt by another `cli.main`) is read back, not compiled.
  JAX's settings and cache state are put back afterwards."""
  from jax.experimental.compilation_cache import compilation_cache as cache_lib

  settings = {"jax_compilation_cache_dir": str(tmp_path / "jax_cache"),
              "jax_enable_compilation_cache": True,
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  before = {name: jax.config.values[name] for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  cache_lib.reset_cache()  # read the settings above on the next compile
  yield
  for name, value in before.items():
    jax.config.update(name, value)
  cache_lib.reset_cache()


def _toml_value(value):
  return json.dumps(value)  # numbers, strings and lists of numbers read the same in TOML


def write_plan(path, out, grid=None, points=None, seeds=(0, 1), base=None):
  lines = ["[sweep]", f"out = {json.dumps(str(out))}", f"seeds = {list(seeds)}", "[base]"]
  lines += [f"{k} = {_toml_value(v)}" for k, v in (BASE if base is None else base).items()]
  if grid is not None:
    lines += ["[grid]"] + [f"{k} = {_toml_value(v)}" for k, v in grid.items()]
  for point in points or []:
    lines += ["[[points]]"] + [f"{k} = {_toml_value(v)}" for k, v in point.items()]
  path.write_text("\n".join(lines) + "\n")
  return path


def load(path):
  return plan_lib.make_plan(plan_lib.plan_data(path, [], [], None, None))


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def check_group_logs(plan, group, resumed_from=None):
  """metrics.csv and TensorBoard hold what the group's metrics.jsonl holds: one CSV row per
  (point, seed, evaluation), the point's columns after step and iteration; one TensorBoard
  run per (point, seed) whose visible scalars are that run's rows at the same env steps. With
  `resumed_from` = k, each run's second event file purges from the step of its row of
  iteration k, + 1."""
  from test_loggers import tb_hparams, tb_scalars, tb_visible

  directory = run_lib.group_dir(plan, group)
  rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
  runs = [(p, s) for p in group.points for s in plan.seeds]
  iterations = sorted({r["iteration"] for r in rows})
  assert sorted((r["point"], r["seed"], r["iteration"]) for r in rows) == [
      (p, s, i) for p, s in runs for i in iterations]
  fields = list(plan.points[group.points[0]])
  table = read_csv(directory / "metrics.csv")
  assert list(table[0])[:len(fields) + 4] == ["step", "iteration", "point", *fields, "seed"]
  assert len(table) == len(rows)
  for row, line in zip(rows, table, strict=True):
    for k, v in row.items():
      assert (json.loads(line[k]) if isinstance(v, list) else type(v)(line[k])) == v, k
  board = directory / "tensorboard"
  assert sorted(p.relative_to(board).parts for p in board.glob("*/*")) == sorted(
      (f"point_{p}", f"seed_{s}") for p, s in runs)
  for p, s in runs:
    run = board / f"point_{p}" / f"seed_{s}"
    mine = [r for r in rows if (r["point"], r["seed"]) == (p, s)]
    # Scalars are float32; step and seed are the axes, the point's values its HParams.
    assert tb_visible(run) == {r["step"]: {
        k: float(np.float32(v)) for k, v in r.items() if k not in ("step", "seed", *fields)
        and k != "point" and isinstance(v, int | float)} for r in mine}
    _, starts = tb_scalars(run)
    assert starts == ([] if resumed_from is None else
                      [next(r["step"] for r in mine if r["iteration"] == resumed_from) + 1])
    infos = tb_hparams(run)
    assert len(infos) == (1 if resumed_from is None else 2)  # one in each event file
    for info in infos:
      assert info.group_name == f"point_{p}"  # a point's seeds: one HParams session group
      assert {k: v.WhichOneof("kind") for k, v in info.hparams.items()} == {
          "point": "number_value", "policy_hidden_sizes": "string_value",
          **{k: "number_value" for k in fields if k != "policy_hidden_sizes"}}
      assert info.hparams["point"].number_value == p
      for k, v in plan.points[p].items():
        held = info.hparams[k]
        assert (json.loads(held.string_value) == list(v) if isinstance(v, tuple)
                else held.number_value == v), k


def test_vmapped_points_equal_single_runs(tmp_path, monkeypatch):
  """Two traced fields (learning rate in the optimizer's state, entropy coefficient in the
  TrainState) x two seeds: one group, one compile; run (point p, seed s) equals the plain
  run with p's values and seed s (float tolerance: batched matmuls may sum in another
  order). The values are far apart, so a field the sweep failed to apply shows. With W&B
  (offline), one W&B run per (point, seed), grouped by the sweep, each with its own rows."""
  plan = load(write_plan(tmp_path / "plan.toml", tmp_path / "sw",
                         grid={"learning_rate": [1e-3, 3e-2], "entropy_coef": [0.0, 0.5]},
                         seeds=(3, 4)))
  groups = plan_lib.make_groups(plan)
  assert len(groups) == 1 and groups[0].traced == ("learning_rate", "entropy_coef")
  run_lib.check_directory(plan)
  run_lib.write_plan(plan)
  wandb = pytest.importorskip("wandb")
  del wandb
  for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
                      "WANDB_DIR": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "config"),
                      "WANDB_CACHE_DIR": str(tmp_path / "cache")}.items():
    monkeypatch.setenv(name, value)
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  swept = run_lib.run_group(plan, groups[0], wandb=LogOptions(wandb=True))
  leaves = jax.tree.leaves(swept.params)
  assert leaves[0].shape[0] == 8  # 4 points x 2 seeds, point-major
  config = plan_lib.point_config(plan, 0)
  for point in (1, 2):  # (1e-3, 0.5) and (3e-2, 0.0): each field differs from point 0
    values = plan.points[point]
    # Seeds 3 and 4 as one vmapped plain run: equal to single runs (test_train.py).
    single = spo_jax.train(config.replace(seed=3, num_seeds=2, **values))
    for s in range(2):
      for x, y in zip(jax.tree.leaves(single.params), leaves, strict=True):
        np.testing.assert_allclose(x[s], y[point * 2 + s], rtol=1e-4, atol=1e-5)
  # Not vacuous: the points trained differently, by far more than the tolerance above (the
  # entropy bonus moves the policy's log-std by ~5e-3 in two iterations; lr x30 moves all).
  def max_diff(a, b):
    return max(float(np.max(np.abs(leaf[a] - leaf[b]))) for leaf in leaves)

  assert max_diff(0, 2) > 1e-3 and max_diff(0, 4) > 1e-2
  rows = [json.loads(line) for line in
          (run_lib.group_dir(plan, groups[0]) / "metrics.jsonl").read_text().splitlines()]
  assert {(r["point"], r["seed"], r["learning_rate"], r["entropy_coef"]) for r in rows} == {
      (p, s, lr, ent) for p, (lr, ent) in enumerate([(1e-3, 0.0), (1e-3, 0.5), (3e-2, 0.0),
                                                     (3e-2, 0.5)]) for s in (3, 4)}
  from test_wandb import expected, logged, offline_runs

  directory = run_lib.group_dir(plan, groups[0])
  base = (directory / "wandb_id.txt").read_text().strip()
  runs = offline_runs(directory)
  assert len(runs) == 8
  for run, history, finished in runs.values():
    point, seed = re.fullmatch(rf"{base}-p(\d)-seed(\d)", run.run_id).groups()
    assert finished and run.run_group == "sw"
    assert run.display_name == f"sw/point_{point}/seed_{seed}"
    mine = [r for r in rows if r["point"] == int(point) and r["seed"] == int(seed)]
    assert len(mine) == 2 and [logged(h) for h in history] == [expected(r) for r in mine]
  # Run r's checkpoint slice is its policy.
  policy = spo_jax.load_policy(run_lib.group_dir(plan, groups[0]), seed_index=5)
  params = jax.tree.map(lambda x: x[5], swept.params)
  obs = np.ones(4, np.float32)
  np.testing.assert_allclose(policy(obs), swept.make_policy(params)(obs), rtol=1e-6)


def test_groups_split_on_shape_fields_and_on_discount_when_placed():
  """Hidden sizes change shapes, teacher parameters code: groups. The discount is traced for
  PPO, but SPO's 'discounted' reward placement reads it as a constant, so there it splits
  groups."""
  plan = plan_lib.make_plan({"sweep": {"out": "x", "seeds": [0]}, "base": dict(BASE),
                             "grid": {"policy_hidden_sizes": [[8], [4]],
                                      "learning_rate": [1e-3, 2e-3]}, "points": None})
  groups = plan_lib.make_groups(plan)
  assert [g.points for g in groups] == [(0, 1), (2, 3)]
  assert [g.traced for g in groups] == [("learning_rate",), ("learning_rate",)]
  assert groups[1].config.policy_hidden_sizes == (4,) and groups[1].config.num_seeds == 2
  # The teacher's parameters are constants of its code (docs/sweeps.md): one group each.
  beta = plan_lib.make_plan({"sweep": {"out": "x"}, "base": dict(BASE),
                             "grid": {"teacher_beta": [1.0, 2.0]}, "points": None})
  assert [g.traced for g in plan_lib.make_groups(beta)] == [(), ()]
  discount = {"discount": [0.9, 0.99]}
  placed = plan_lib.make_plan({"sweep": {"out": "x"}, "base": dict(BASE), "grid": discount,
                               "points": None})
  assert len(plan_lib.make_groups(placed)) == 2
  spread = plan_lib.make_plan({"sweep": {"out": "x"},
                               "base": {**BASE, "reward_placement": "spread"},
                               "grid": discount, "points": None})
  (group,) = plan_lib.make_groups(spread)
  assert group.traced == ("discount",)
  assert group.runs.values == {"discount": [pytest.approx(0.9), pytest.approx(0.99)]}


def test_shards_collect_and_resume_after_a_crash(tmp_path, monkeypatch, capsys,
                                                 compilation_cache):
  """Two groups (hidden sizes 8 and 4) x traced learning rate x reward scale x two seeds.
  Reference: the sweep run as two shards, then --collect (from the directory's plan.json
  alone). Then the same sweep, its first group finished, crashes in the second group right
  after its checkpoint of iteration 2, which is then lost; the rerun skips the finished
  group, resumes the other from its checkpoint of iteration 1, and every evaluation equals
  the reference's. Every group's metrics.csv and TensorBoard runs (one per (point, seed))
  hold its metrics.jsonl rows once, the resumed group's too."""
  base = {**BASE, "max_iterations": 3, "checkpoint_every": 1}
  # Both kinds of traced field: the learning rate (optimizer state), the reward scale
  # (TrainState.hyperparams); both must come back from the checkpoint.
  grid = {"policy_hidden_sizes": [[8], [4]], "learning_rate": [1e-3, 3e-2],
          "reward_scale": [1.0, 3.0]}
  ref = write_plan(tmp_path / "ref.toml", tmp_path / "ref", grid=grid, base=base)
  cli.main([str(ref), "--shard", "1/2", "--quiet"])
  assert "shard 1/2 done" in capsys.readouterr().out
  with pytest.raises(SystemExit) as stop:
    cli.main([str(ref), "--collect"])  # group 0 not run yet: tables of group 1, exit 1
  assert stop.value.code == 1 and "g000" in capsys.readouterr().err
  monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")  # shard 0/2 from SLURM's job array
  monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
  cli.main([str(ref), "--quiet"])
  monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
  monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
  cli.main(["--out", str(tmp_path / "ref"), "--collect", "--sort", "learning_rate"])
  table = capsys.readouterr().out
  assert "g000 provenance: spo_jax" in table and "g001 provenance: spo_jax" in table
  reference = read_csv(tmp_path / "ref" / "results.csv")
  assert len(reference) == 8 * 2 * 3  # points x seeds x evaluations
  ref_groups = plan_lib.make_groups(load(ref))
  for group in ref_groups:
    check_group_logs(load(ref), group)
  assert list(reference[0])[:7] == ["group", "point", "policy_hidden_sizes", "learning_rate",
                                    "reward_scale", "seed", "step"]
  summary = read_csv(tmp_path / "ref" / "summary.csv")
  assert [int(r["point"]) for r in summary] == list(range(8))
  for entry in summary:
    finals = [float(r["eval/episode_reward"]) for r in reference
              if r["point"] == entry["point"] and r["iteration"] == "3"]
    assert float(entry["final_return_mean"]) == pytest.approx(np.mean(finals))
    assert float(entry["final_return_iqm_low"]) <= float(entry["final_return_iqm"]) <= float(
        entry["final_return_iqm_high"])
  # Sorted by learning rate in the terminal: the four 0.001 points first.
  lines = table.splitlines()
  header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["point"])
  body = lines[header + 1:header + 9]
  assert [line.split()[2] for line in body] == ["0.001"] * 4 + ["0.03"] * 4

  # The crashed sweep's first group is the reference's, finished (this saves a compile); its
  # second group's programs are the reference's, read back from `compilation_cache`.
  crashed = write_plan(tmp_path / "crash.toml", tmp_path / "crash", grid=grid, base=base)
  (tmp_path / "crash" / "groups").mkdir(parents=True)
  shutil.copy(tmp_path / "ref" / "plan.json", tmp_path / "crash" / "plan.json")
  shutil.copytree(tmp_path / "ref" / "groups" / "g000", tmp_path / "crash" / "groups" / "g000")
  original_save = HostLoop.save

  def crash_after_second_save(self, state):
    original_save(self, state)
    if self.run_path.name == "g001" and int(state.iteration[0]) == 2:
      raise RuntimeError("simulated crash")

  monkeypatch.setattr(HostLoop, "save", crash_after_second_save)
  with pytest.raises(RuntimeError, match="simulated crash"):
    cli.main([str(crashed), "--quiet"])
  monkeypatch.setattr(HostLoop, "save", original_save)
  # Lost (a kill while it was written, say): the resume recomputes iteration 2, whose rows
  # are already on file, and must not log them twice.
  shutil.rmtree(tmp_path / "crash" / "groups" / "g001" / "checkpoints" / "2")
  calls = []
  real_train = run_lib.train

  def recording_train(config, **kwargs):
    calls.append((kwargs["run_dir"].name, kwargs["resume"]))
    return real_train(config, **kwargs)

  monkeypatch.setattr(run_lib, "train", recording_train)
  cli.main([str(crashed), "--quiet"])
  assert calls == [("g001", True)]
  check_group_logs(load(crashed), ref_groups[0])
  check_group_logs(load(crashed), ref_groups[1], resumed_from=1)
  resumed = read_csv(tmp_path / "crash" / "results.csv")
  assert len(resumed) == len(reference)
  for a, b in zip(reference, resumed, strict=True):
    assert (a["point"], a["seed"], a["iteration"]) == (b["point"], b["seed"], b["iteration"])
    assert float(a["eval/episode_reward"]) == pytest.approx(float(b["eval/episode_reward"]),
                                                            rel=1e-5)
  # spo-plot draws a sweep directory as one curve per point.
  from spo_jax.plotting import plot_runs, sweep_points

  assert len(sweep_points(tmp_path / "crash")) == 8
  assert plot_runs([tmp_path / "crash"], tmp_path / "curves.png").stat().st_size > 0


def test_summary_steps_and_labels_to_target():
  """Seed 0 reaches the target at its second evaluation, seed 1 never: median over the one
  that did; best = mean over seeds of each seed's best."""
  plan = plan_lib.Plan(out=None, seeds=(0, 1), base={}, points=({"learning_rate": 0.1},))
  rows = [{"point": 0, "seed": 0, "step": 10, "eval/episode_reward": 1.0,
           "train/total_feedback": 5},
          {"point": 0, "seed": 0, "step": 20, "eval/episode_reward": 3.0,
           "train/total_feedback": 9},
          {"point": 0, "seed": 1, "step": 10, "eval/episode_reward": 2.0,
           "train/total_feedback": 5},
          {"point": 0, "seed": 1, "step": 20, "eval/episode_reward": 0.0,
           "train/total_feedback": 9}]
  (entry,) = results_lib.summarize(plan, rows, target=2.5)
  assert entry["final_return_mean"] == pytest.approx(1.5)
  assert entry["best_return_mean"] == pytest.approx(2.5)
  assert (entry["reached_target"], entry["steps_to_target"], entry["labels_to_target"]) == (
      "1/2", 20, 9)


@pytest.mark.parametrize("grid, points, match", [
    ({"learning_rte": [1e-3]}, None, "unknown field 'learning_rte' in \\[grid\\].*learning_rate"),
    ({"learning_rate": [1e-3, "fast"]}, None, "point 1 \\(learning_rate=\"fast\"\\).*number"),
    ({"learning_rate": [1e-3, -1.0]}, None, "point 1 \\(learning_rate=-1.0\\).*learning_rate"),
    ({"learning_rate": []}, None, "grid field 'learning_rate'.*non-empty"),
    ({}, None, "the grid is empty"),
    ({"run_dir": ["a", "b"]}, None, "'run_dir' in \\[grid\\] cannot vary"),
    ({"num_seeds": [1, 2]}, None, "'num_seeds' in \\[grid\\] cannot vary"),
    (None, [{"entropy_coef": 0.0}, {"num_envs": 1}], "point 1 \\(num_envs=1\\).*num_envs"),
])
def test_bad_sweep_files(tmp_path, capsys, grid, points, match):
  path = write_plan(tmp_path / "plan.toml", tmp_path / "sw", grid=grid, points=points)
  with pytest.raises(SystemExit) as stop:
    cli.main([str(path)])
  assert stop.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("spo-sweep: error: ")
  assert re.search(match, err), err
  assert not (tmp_path / "sw").exists()


def test_bad_shards_and_changed_plan(tmp_path, capsys, monkeypatch):
  path = write_plan(tmp_path / "plan.toml", tmp_path / "sw", grid={"learning_rate": [1e-3]})
  for argv, env, match in [
      (["--shard", "2/2"], {}, "--shard gives shard 2/2: need 0 <= i < n"),
      (["--shard", "x"], {}, "must read i/n"),
      ([], {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM's job array"),
      (["--sort", "nope"], {}, "--sort 'nope' is not a summary column"),
      (["--collect"], {}, "nothing to collect")]:
    for name, value in env.items():
      monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
      cli.main([str(path), *argv])
    for name in env:
      monkeypatch.delenv(name)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert not (tmp_path / "sw").exists()
  # A sweep started with one plan refuses another in its directory, and keeps its plan.json.
  run_lib.write_plan(load(path))
  saved = (tmp_path / "sw" / "plan.json").read_text()
  write_plan(path, tmp_path / "sw", grid={"learning_rate": [1e-3, 2e-3]})
  with pytest.raises(SystemExit) as stop:
    cli.main([str(path)])
  assert stop.value.code == 2 and "the sweep file changed" in capsys.readouterr().err
  assert (tmp_path / "sw" / "plan.json").read_text() == saved
  assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["plan.json"]


def test_flags_build_the_same_plan_as_a_file(tmp_path):
  path = write_plan(tmp_path / "plan.toml", "sw", grid={"learning_rate": [1e-3, 2e-3]},
                    base={"env": "balance", "policy_hidden_sizes": [8]})
  from_flags = plan_lib.make_plan(plan_lib.plan_data(
      None, ["learning_rate=1e-3, 2e-3"], ["env=balance", "policy_hidden_sizes=[8]"], "0,1",
      "sw"))
  assert from_flags.canonical() == load(path).canonical()
  assert plan_lib.parse_list("balance, point_reach") == ["balance", "point_reach"]
  assert plan_lib.parse_list("[32], [64, 64]") == [[32], [64, 64]]
  with pytest.raises(ConfigError, match="--grid 'learning_rate' must read FIELD=VALUE"):
    plan_lib.plan_data(None, ["learning_rate"], [], None, "sw")


def test_a_plain_runs_checkpoint_keeps_the_layout_from_before_sweeps(tmp_path):
  """TrainState gained `hyperparams` for sweeps; a plain run (none) is stored without it, so
  checkpoints written before sweeps existed restore, and older code can read new ones:
  restoring into the old 7-field state must work."""
  from typing import Any, NamedTuple

  from spo_jax.checkpoint import Checkpointer
  from spo_jax.config import Config

  class OldTrainState(NamedTuple):
    params: Any
    opt_state: Any
    normalizer: Any
    reward_state: Any
    key: Any
    iteration: Any
    policy_average: Any

  config = Config.from_dict({**spo_jax.preset("point_reach").to_dict(), **BASE})
  state = spo_jax.make_train(config).init(jax.random.PRNGKey(0))
  assert state.hyperparams == ()
  checkpointer = Checkpointer(tmp_path / "checkpoints")
  checkpointer.save(1, state, {})
  old, _ = checkpointer.restore(1, OldTrainState(*state[:7]))
  assert isinstance(old, OldTrainState)
  new, _ = checkpointer.restore(1, jax.eval_shape(lambda: state))
  assert isinstance(new, spo_jax.TrainState) and new.hyperparams == ()
  for x, y in zip(jax.tree.leaves(state[:7]), jax.tree.leaves(old), strict=True):
    np.testing.assert_array_equal(x, y)
  # The counters (counters.py) travel in the meta, and come back into the new state.
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(new), strict=True):
    np.testing.assert_array_equal(x, y)
  checkpointer.close()
