"""spo_jax/reproduce/plans.py: which runs each question gets, and their budgets."""

from __future__ import annotations

import pytest

from spo_jax.reproduce import plans


def test_the_tiny_plan_has_the_runs_each_question_promises():
  """q1: 2 matrix + 2 control; q2: 3 methods; q3: (1 beta + 2 epsilons) x 2; q4: 2 x 2."""
  runs = {q: plans.plan_runs(q, "cpu", 3, tiny=True) for q in plans.QUESTIONS}
  assert [r.name for r in runs["q1"]] == ["matrix-spo", "matrix-rm", "control-spo",
                                          "control-rm"]
  assert [r.name for r in runs["q2"]] == ["oracle-spo", "oracle-rm", "oracle-ppo"]
  assert [r.name for r in runs["q3"]] == [
      "bradley_terry-beta1-spo", "bradley_terry-beta1-rm", "mistake-eps0-spo",
      "mistake-eps0-rm", "mistake-eps0.2-spo", "mistake-eps0.2-rm"]
  assert [r.name for r in runs["q4"]] == ["constraint-spo", "constraint-rm", "deadline-spo",
                                          "deadline-rm"]
  everything = [r for q in plans.QUESTIONS for r in runs[q]]
  assert all(r.config.num_seeds == 3 and r.config.seed == 0 for r in everything)
  assert all(r.config.reward_source == plans.METHODS[r.method] for r in everything)
  # Only the runs whose final policies are rolled out with the teacher are measured.
  assert {r.name for r in everything if r.measure} == {
      "control-spo", "control-rm", "constraint-spo", "constraint-rm", "deadline-spo",
      "deadline-rm"}


def test_q3_noiseless_point_is_exactly_q2s_oracle_config():
  """mistake(oracle) at epsilon 0 is the oracle: the same config, so `execute` copies Q2's
  finished run instead of training it twice."""
  q2 = {r.method: r.config for r in plans.plan_runs("q2", "cpu", 5)}
  q3 = {r.method: r.config for r in plans.plan_runs("q3", "cpu", 5) if r.level == 0.0}
  assert q3["spo"] == q2["spo"] and q3["rm"] == q2["rm"]
  noisy = [r for r in plans.plan_runs("q3", "cpu", 5) if r.setting == "mistake" and r.level]
  assert {r.config.teacher for r in noisy} == {"mistake(oracle)"}
  assert {r.config.teacher_epsilon for r in noisy} == {0.1, 0.2, 0.3}


def test_env_and_teacher_overrides_reach_every_config():
  runs = plans.plan_runs("q4", "cpu", 2, env="balance", q4_teachers=("peak",))
  assert [r.name for r in runs] == ["peak-spo", "peak-rm"]
  assert {r.config.env for r in runs} == {"balance"}
  assert {r.config.teacher_quantity for r in runs} == {"position"}
  # With --env the gpu plan's q2 has one env, so run names carry no env prefix.
  assert [r.name for r in plans.plan_runs("q2", "gpu", 2, env="hopper")] == [
      "oracle-spo", "oracle-rm", "oracle-ppo"]
  assert plans.plan_runs("q9", "cpu", 2) == []


def test_whole_episode_settings_override_the_locomotion_presets():
  """The questions compare whole episodes with centred rewards (halfcheetah's preset uses
  segments of 50 and its own backend)."""
  config = plans.plan_runs("q3", "gpu", 2)[0].config
  assert config.env == "halfcheetah"
  assert (config.segment_length, config.center_rewards, config.backend) == (0, True, None)
  assert config.teacher_scale == 500.0


def test_env_steps_per_seed_is_the_budget_or_the_iteration_cap():
  """tiny: min(200 steps, 3 iterations x 6 envs x 12 steps = 216) = 200; cpu pendulum:
  min(60,000, 40 x 32 x 200 = 256,000) = 60,000; matrix game (tiny): min(10^12, 6 x 8 x 1)
  = 48; gpu (no cap): the budget."""
  tiny = plans.plan_runs("q1", "cpu", 1, tiny=True)
  assert plans.env_steps_per_seed(tiny[0].config) == 48
  assert plans.env_steps_per_seed(tiny[2].config) == 200
  assert plans.env_steps_per_seed(plans.plan_runs("q2", "cpu", 1)[0].config) == 60_000
  assert plans.env_steps_per_seed(plans.plan_runs("q2", "gpu", 1, env="ant")[0].config) == (
      50_000_000)


def test_dry_run_prints_one_line_per_run_and_the_total():
  runs = plans.plan_runs("q4", "cpu", 3, tiny=True)
  lines: list[str] = []
  plans.dry_run(runs, log=lines.append)
  assert len(lines) == 1 + len(runs) + 1
  row = next(line for line in lines if line.startswith("q4/deadline-rm"))
  # 3 seeds x min(200 steps, 3 iterations x 6 envs x 12 steps = 216) = 600 steps.
  assert row.split()[1:3] == ["point_reach", "reward_model"] and row.endswith(" 600")
  assert lines[-1] == "4 runs, at most 2,400 env steps in all (every config validated)"


def test_every_gpu_config_is_valid_and_within_the_promised_budget():
  """The locomotion plan cannot run here; its configs must still pass `validate` (no env is
  built: that is the dry run's job)."""
  from spo_jax.config import validate

  runs = [r for q in plans.QUESTIONS for r in plans.plan_runs(q, "gpu", 10)]
  brax = [r for r in runs if r.config.env != "matrix_game"]
  assert {r.config.env for r in brax} == {"ant", "halfcheetah", "hopper", "walker2d",
                                          "humanoid"}
  for run in runs:
    validate(run.config)
    assert run.config.num_seeds == 10
  assert all(10_000_000 <= r.config.num_timesteps <= 50_000_000 for r in brax)
  assert {r.method for r in runs if r.question == "q2"} == {"spo", "rm", "ppo"}
  assert len(runs) == 37


@pytest.mark.parametrize("scale", ["cpu", "gpu", "tiny"])
def test_every_q4_teacher_has_fields_for_every_env(scale):
  for settings in plans.PLANS[scale].envs.values():
    assert set(settings.q4) == set(plans.NONMARKOV)
