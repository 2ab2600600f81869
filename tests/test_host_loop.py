"""spo_jax/host_loop.py: the plain Python around the jitted calls: when to evaluate and when
to stop, the rows an evaluation logs (each seed's training metrics averaged since the last
row, its counters; several seeds' mean), and the physics steps vmapped seeds really ran.
Runs without a run directory (nothing written) on the tiny cart-pole's env reward."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import counters as counters_lib
from spo_jax import networks as nets
from spo_jax.host_loop import HostLoop, _iteration_of, _lockstep_physics, _to_python
from spo_jax.loggers import LogOptions
from spo_jax.setup import build

BALANCE = spo_jax.preset("balance").replace(
    reward_source="ground_truth", num_envs=4, episode_length=8, num_minibatches=1,
    update_epochs=1, num_eval_envs=2, policy_hidden_sizes=(4,), value_hidden_sizes=(4,),
    num_timesteps=10**9)


def _loop(config, progress_fn=None):
  return HostLoop(build(config), None, progress_fn, verbose=False)


def test_to_python_and_the_iteration_of_a_state_with_a_seed_axis():
  row = _to_python({"steps": np.int32(7), "loss": np.float32(0.5), "flag": jnp.asarray(1)})
  assert row == {"steps": 7, "loss": 0.5, "flag": 1}
  assert [type(v) for v in row.values()] == [int, float, int]
  # The seeds of a run share their iteration [S]: the first one's is the run's.
  assert _iteration_of(types.SimpleNamespace(iteration=jnp.asarray([4, 4]))) == 4


def test_lockstep_physics_counts_the_longest_seeds_loop_for_every_seed():
  def iterate(state):
    # Each seed's own count (ignored: vmapped seeds simulate in step) and loop steps of
    # S = 2 seeds over 3 iterations per call.
    counters = state.counters._replace(physics_steps=jnp.zeros_like(state.counters.physics_steps))
    loop_steps = jnp.asarray([[2, 8, 4], [6, 3, 4]], jnp.int32)
    return state._replace(counters=counters), {"train/loop_steps": loop_steps}

  counters = counters_lib.from_meta({"physics_steps": [10, 20], "env_steps": [1, 2]}, (2,))
  state = spo_jax.TrainState(*([None] * 7), counters=counters)
  new, stacked = jax.jit(_lockstep_physics(iterate, num_envs=5))(state)
  # Longest loop per iteration: max(2, 6) + max(8, 3) + max(4, 4) = 18 steps, each of N = 5
  # envs: 90 physics steps added to both seeds' totals; other counters as `iterate` left them.
  assert counters_lib.to_meta(new.counters)["physics_steps"] == [100, 110]
  assert counters_lib.to_meta(new.counters)["env_steps"] == [1, 2]
  np.testing.assert_array_equal(stacked["train/loop_steps"], [[2, 8, 4], [6, 3, 4]])


def test_when_to_evaluate_and_when_to_stop():
  loop = _loop(BALANCE)
  config = loop.config = BALANCE.replace(eval_every=4, iterations_per_call=2)
  # Calls of 2 iterations end at 2, 4, 6, 8: an evaluation after the calls ending at 4 and 8.
  assert [it for it in (2, 4, 6, 8) if loop.evaluation_due(it, 0)] == [4, 8]
  # Every 100 env steps: due when the slowest seed's steps pass a multiple of 100.
  loop.config = config.replace(eval_every_steps=100)
  loop.counters["env_steps"] = [250, 180]
  assert loop.evaluation_due(9, steps_before=99) and not loop.evaluation_due(9, 100)

  state = types.SimpleNamespace(iteration=jnp.asarray([6, 6]))
  loop.config = config.replace(num_timesteps=200, max_iterations=0)
  assert not loop.finished(state)  # seed 1 has done 180 of 200 steps
  loop.counters["env_steps"] = [250, 200]
  assert loop.finished(state)
  loop.counters["env_steps"] = [0, 0]
  loop.config = config.replace(max_iterations=6)
  assert loop.finished(state)

  loop.config = config.replace(target_return=10.0)
  rows = [{"eval/episode_reward": 12.0}, {"eval/episode_reward": 9.0}]
  assert not loop.reached_target({"eval/episode_reward": 10.5, "per_seed": rows})
  assert loop.reached_target({"eval/episode_reward": 10.0})  # one seed, at the target
  loop.config = config
  assert not loop.reached_target({"eval/episode_reward": 1e9})  # no target: never


def test_a_run_evaluates_when_due_and_rows_average_the_iterations_since_the_last():
  seen, recorded = [], []
  loop = _loop(BALANCE.replace(eval_every=2, max_iterations=5),
               progress_fn=lambda step, m: seen.append((step, m)))
  iteration = loop.iteration

  def record(state):
    state, stacked = iteration(state)
    recorded.append(jax.device_get(stacked))  # [S = 1, iterations_per_call = 1]
    return state, stacked

  loop.iteration = record
  state = loop.restore_or_init(has_checkpoint=False, overwrite=False)
  loop.open_log(state, False, LogOptions(), "none")
  state = loop.iterate(state, None)
  loop.finish(state)
  loop.close(None)
  # eval_every = 2 of 5 iterations: after 2 and 4, and after 5, the last.
  assert [m["iteration"] for _, m in seen] == [2, 4, 5]
  per_iteration = {k: np.array([r[k][0, 0] for r in recorded]) for k in recorded[0]}
  env_steps = np.cumsum(per_iteration["train/env_steps"])
  for (step, row), last in zip(seen, (2, 4, 5), strict=True):
    first = {2: 0, 4: 2, 5: 4}[last]  # the iterations since the previous row
    assert step == row["step"] == env_steps[last - 1]
    for name in ("train/episode_reward", "ppo/value_loss"):
      assert row[name] == pytest.approx(per_iteration[name][first:last].mean(), rel=1e-6)
    assert row["seed"] == BALANCE.seed and np.isfinite(row["eval/episode_reward"])
    assert row["time/first_call_s"] > 0 and row["time/elapsed_s"] >= row["time/first_call_s"]
  assert loop.last_metrics is seen[-1][1]


def test_several_seeds_give_one_row_each_and_their_mean():
  config = BALANCE.replace(num_seeds=2, seed=7)
  loop = _loop(config)
  # What an evaluation reads of the state: the policy (all-zero weights here), the
  # normalizer and the iteration, each [S = 2, ...].
  networks = loop.setup.networks
  policy = jax.eval_shape(lambda key: nets.init_params(networks, key).policy,
                          jax.random.PRNGKey(0))
  state = spo_jax.TrainState(
      params=nets.Params(jax.tree.map(lambda x: jnp.zeros((2, *x.shape), x.dtype), policy),
                         None),
      opt_state=None, normalizer=jax.vmap(lambda _: nets.normalizer_init(4))(jnp.arange(2)),
      reward_state=None, key=None, iteration=jnp.zeros(2, jnp.int32), policy_average=(),
      counters=None)
  loop.counters.update({"env_steps": [120, 100], "physics_steps": [160, 160],
                        "total_queries": [0, 0], "total_feedback": [0, 0]})
  # Seed 7 trained two iterations since the last row, seed 8 one.
  loop.windows = [[{"train/episode_reward": 2.0}, {"train/episode_reward": 4.0}],
                  [{"train/episode_reward": 9.0}]]
  summary = loop.evaluate(state)
  seed_7, seed_8 = summary["per_seed"]
  assert (seed_7["seed"], seed_7["step"], seed_7["train/episode_reward"]) == (7, 120, 3.0)
  assert (seed_8["seed"], seed_8["step"], seed_8["train/episode_reward"]) == (8, 100, 9.0)
  assert seed_7["train/physics_steps_total"] == 160 and seed_7["iteration"] == 0
  # The mean of the seeds' rows (3 and 9: 6), at the slowest seed's steps; windows emptied.
  assert summary["train/episode_reward"] == 6.0 and summary["step"] == 100
  assert summary["eval/episode_reward"] == pytest.approx(
      (seed_7["eval/episode_reward"] + seed_8["eval/episode_reward"]) / 2)
  assert "seed" not in summary and loop.windows == [[], []]


def test_a_resume_compiles_the_iteration_once(tmp_path, monkeypatch):
  # Orbax restores arrays committed to a device and `init` returns uncommitted ones; jit
  # keys its cache on that. Unless the loop places the restored state as `init` would, the
  # resumed run compiles its iteration twice: once for the restored state, once for the
  # iteration's own output.
  from spo_jax import host_loop

  loops = []
  original = host_loop.HostLoop.__init__

  def keep(self, *args, **kwargs):
    original(self, *args, **kwargs)
    loops.append(self)

  monkeypatch.setattr(host_loop.HostLoop, "__init__", keep)
  run = tmp_path / "run"
  spo_jax.train(BALANCE.replace(max_iterations=1, checkpoint_every=1), run_dir=run)
  spo_jax.train(BALANCE.replace(max_iterations=3, checkpoint_every=1), run_dir=run, resume=True)
  fresh, resumed = loops
  assert fresh.iteration._cache_size() == 1
  assert resumed.iteration._cache_size() == 1  # two calls, one compiled program
