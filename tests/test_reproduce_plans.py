"""spo_jax/reproduce/plans.py: which runs each question gets, and their budgets."""

from __future__ import annotations

import pytest

from spo_jax.reproduce import plans


def test_the_tiny_plan_has_the_runs_each_question_promises():
  """q1: 2 matrix + 2 control; q2: 3 methods + the soft-label reference; q3: (1 beta + 2
  epsilons) x (2 methods + the reference); q4: 2 x 2."""
  runs = {q: plans.plan_runs(q, "cpu", 3, tiny=True) for q in plans.QUESTIONS}
  assert [r.name for r in runs["q1"]] == ["matrix-spo", "matrix-rm", "control-spo",
                                          "control-rm"]
  assert [r.name for r in runs["q2"]] == ["oracle-spo", "oracle-rm", "oracle-ppo",
                                          "oracle-spo-soft"]
  assert [r.name for r in runs["q3"]] == [
      "bradley_terry-beta1-spo", "bradley_terry-beta1-rm", "bradley_terry-beta1-spo-soft",
      "mistake-eps0-spo", "mistake-eps0-rm", "mistake-eps0-spo-soft", "mistake-eps0.2-spo",
      "mistake-eps0.2-rm", "mistake-eps0.2-spo-soft"]
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
  assert q3["spo"] == q2["spo"] and q3["rm"] == q2["rm"] and q3["spo_soft"] == q2["spo_soft"]
  noisy = [r for r in plans.plan_runs("q3", "cpu", 5) if r.setting == "mistake" and r.level]
  assert {r.config.teacher for r in noisy} == {"mistake(oracle)"}
  assert {r.config.teacher_epsilon for r in noisy} == {0.2}


def test_tuned_fields_reach_their_method_only():
  """The cpu plan's Q2/Q3 task carries the values tuned on seeds 100-102 per method: SPO's
  runs (and the soft-label reference, the same learner) get SPO's, RM's runs RM's, and PPO
  keeps the preset's, on every noise level."""
  tuned = plans.CPU_ENVS["balance"].tuned
  assert set(tuned) == {"spo", "rm"}
  preset = plans.base_config("balance", plans.CPU_ENVS["balance"], 2, tiny=False)
  runs = plans.plan_runs("q2", "cpu", 2) + plans.plan_runs("q3", "cpu", 2)
  assert {r.method for r in runs} == {"spo", "rm", "ppo", "spo_soft"}
  for run in runs:
    fields = tuned.get(run.method.removesuffix("_soft"), {})
    for name in {"learning_rate", "rm_learning_rate", "rm_ensemble_size"} | set(fields):
      expected = fields.get(name, getattr(preset, name))
      assert getattr(run.config, name) == expected, (run.name, name)
  # The values actually differ from the preset somewhere, or this test checks nothing.
  assert any(getattr(preset, k) != v for f in tuned.values() for k, v in f.items())


def test_env_and_teacher_overrides_reach_every_config():
  runs = plans.plan_runs("q4", "cpu", 2, env="balance", q4_teachers=("peak",))
  assert [r.name for r in runs] == ["peak-spo", "peak-rm"]
  assert {r.config.env for r in runs} == {"balance"}
  assert {r.config.teacher_quantity for r in runs} == {"position"}
  # With --env the gpu plan's q2 has one env, so run names carry no env prefix.
  assert [r.name for r in plans.plan_runs("q2", "gpu", 2, env="hopper")] == [
      "oracle-spo", "oracle-rm", "oracle-ppo", "oracle-spo-soft"]
  assert plans.plan_runs("q9", "cpu", 2) == []


def test_whole_episode_settings_override_the_locomotion_presets():
  """The questions compare whole episodes with centred rewards (halfcheetah's preset uses
  segments of 50 and its own backend)."""
  config = plans.plan_runs("q3", "gpu", 2)[0].config
  assert config.env == "halfcheetah"
  assert (config.segment_length, config.center_rewards, config.backend) == (0, True, None)
  assert config.teacher_scale == 500.0


def test_env_steps_per_seed_is_the_budget_or_the_iteration_cap():
  """tiny: min(200 steps, 3 iterations x 6 envs x 12 steps = 216) = 200; cpu balance:
  min(100,000, 80 x 32 x 1000 = 2,560,000) = 100,000; cpu pendulum (q4): min(60,000,
  40 x 32 x 200 = 256,000) = 60,000; matrix game (tiny): min(10^12, 6 x 8 x 1) = 48; gpu (no
  cap): the budget."""
  tiny = plans.plan_runs("q1", "cpu", 1, tiny=True)
  assert plans.env_steps_per_seed(tiny[0].config) == 48
  assert plans.env_steps_per_seed(tiny[2].config) == 200
  assert plans.env_steps_per_seed(plans.plan_runs("q2", "cpu", 1)[0].config) == 100_000
  assert plans.env_steps_per_seed(plans.plan_runs("q4", "cpu", 1)[0].config) == 60_000
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
  assert {r.method for r in runs if r.question == "q2"} == {"spo", "rm", "ppo", "spo_soft"}
  # q1 4; q2 5 envs x 4; q3 (3 betas + 4 epsilons) x 3; q4 2 teachers x 2.
  assert len(runs) == 4 + 20 + 21 + 4


@pytest.mark.parametrize("scale", ["cpu", "gpu", "tiny"])
def test_every_q4_teacher_has_fields_for_every_env(scale):
  for settings in plans.PLANS[scale].envs.values():
    assert set(settings.q4) == set(plans.NONMARKOV)


@pytest.mark.parametrize("scale", ["cpu", "gpu", "tiny"])
def test_q2_and_q3_compare_spo_and_rm_at_equal_labels(scale):
  """SPO: sampled labels (one Bernoulli label per query), k opponents per trajectory, so N k
  labels per iteration; RM: N k labelled pairs per iteration (its buffer holds at least one
  iteration's); the soft-label all-pairs SPO is the only soft run, and it is marked as the
  reference method. Everything else about the pair is the same config, but for the fields
  tuned for each method on the tuning seeds (`EnvSettings.tuned`)."""
  plan = plans.PLANS[scale]
  k = plan.labels_per_trajectory
  runs = [r for q in ("q2", "q3") for r in plans.plan_runs(q, scale, 2, tiny=scale == "tiny")]
  for run in runs:
    c = run.config
    if run.method == "spo":
      assert (c.labels, c.num_opponents) == ("sampled", k)
    elif run.method == "rm":
      assert c.rm_queries_per_iteration == c.num_envs * k
      assert c.rm_buffer_size >= c.num_envs * k
    elif run.method == "spo_soft":
      assert (c.labels, c.num_opponents, c.reward_source) == ("soft", 0, "spo")
      assert "spo_soft" in plans.REFERENCE_METHODS and "reference" in plans.METHOD_LABELS[
          "spo_soft"]
  pairs = {}
  for run in runs:
    pairs.setdefault((run.question, run.setting, run.level), {})[run.method] = run.config
  tuned_fields = {name for settings in plan.envs.values() for fields in settings.tuned.values()
                  for name in fields}
  for configs in pairs.values():
    spo, rm = configs["spo"], configs["rm"]
    assert spo.replace(labels="soft", num_opponents=0, reward_source="reward_model",
                       rm_queries_per_iteration=rm.rm_queries_per_iteration,
                       rm_buffer_size=rm.rm_buffer_size,
                       **{name: getattr(rm, name) for name in tuned_fields}) == rm


def test_labels_per_trajectory_override_and_soft_reference_switch():
  runs = plans.plan_runs("q3", "cpu", 2, labels_per_trajectory=5, soft_reference=False)
  assert {r.method for r in runs} == {"spo", "rm"}
  assert {r.config.num_opponents for r in runs if r.method == "spo"} == {5}
  assert {r.config.rm_queries_per_iteration for r in runs if r.method == "rm"} == {32 * 5}


@pytest.mark.parametrize("k, ok", [(1, True), (31, True), (0, False), (32, False),
                                   (-3, False), (2.5, False), (True, False)])
def test_label_budget_outside_one_per_trajectory_to_n_minus_1_is_refused(k, ok):
  """cpu: N = 32, so k in 1..31; the refusal is one line naming the field and the range."""
  problem = plans.check_labels_per_trajectory(plans.PLANS["cpu"], k)
  assert (problem is None) == ok
  if not ok:
    assert "labels_per_trajectory" in problem and "use 1..31" in problem
    assert "\n" not in problem


def test_equal_label_configs_consume_equal_labels_per_iteration():
  """One iteration of the tiny SPO and RM configs (N = 6, k = 1): both log N k = 6 labels
  (the oracle never abstains), SPO with one Bernoulli draw per query; the soft reference
  asks every pair, N (N - 1) / 2 = 15."""
  import jax

  from spo_jax.setup import build

  runs = {r.method: r for r in plans.plan_runs("q2", "cpu", 1, tiny=True)}
  labels = {}
  for method in ("spo", "rm", "spo_soft"):
    config = runs[method].config.replace(num_seeds=1)
    setup = build(config)
    state = jax.jit(setup.fns.init)(jax.random.PRNGKey(0))
    _, metrics = jax.jit(setup.fns.iteration)(state)
    labels[method] = int(metrics["train/num_labels"][0])
  assert labels == {"spo": 6, "rm": 6, "spo_soft": 15}


@pytest.mark.parametrize("scale", ["cpu", "gpu", "tiny"])
def test_q1_control_keeps_every_checkpoint_and_asks_for_exploitability(scale):
  """SPO's oldest iterate (the positive control), last iterate and mixture, RM's policy, each
  measured by best responses of the plan's iterations over the plan's pairs; every
  checkpoint is kept, one per `mixture_every` iterations; the plan's raters judge."""
  plan = plans.PLANS[scale]
  control = {r.method: r for r in plans.plan_runs("q1", scale, 2, tiny=scale == "tiny")
             if r.setting == "control"}
  assert control["spo"].exploit == ("first", "last", "mixture")
  assert control["rm"].exploit == ("last",)
  for run in control.values():
    assert run.exploit_iterations == plan.br_iterations >= 1
    assert run.exploit_episodes == plan.br_episodes
    assert run.config.teacher == "intransitive"
    assert run.config.teacher_raters == plan.control_raters
    assert run.config.keep_checkpoints == 0
    assert run.config.checkpoint_every == plan.mixture_every >= 1


def test_q1_control_at_cpu_scale_is_point_reach_with_spatial_raters_and_another_env_its_preset():
  """The cpu plan's control task is point_reach judged by the spatial raters (256 pairs per
  best-response estimate); `--env inverted_pendulum` gets that env's preset raters ('')."""
  control = [r for r in plans.plan_runs("q1", "cpu", 2) if r.setting == "control"]
  assert {r.config.env for r in control} == {"point_reach"}
  assert {r.config.teacher_raters for r in control} == {"spatial"}
  assert {r.exploit_episodes for r in control} == {256}
  # Each method runs its tuned values (plans.CONTROL_TUNED), on this env only.
  by_method = {r.method: r.config for r in control}
  assert by_method["spo"].learning_rate == 1e-3
  assert (by_method["rm"].learning_rate, by_method["rm"].rm_learning_rate,
          by_method["rm"].rm_ensemble_size) == (3e-3, 3e-3, 3)
  other = [r for r in plans.plan_runs("q1", "cpu", 2, env="inverted_pendulum")
           if r.setting == "control"]
  assert {(r.config.env, r.config.teacher_raters) for r in other} == {("inverted_pendulum", "")}
  preset = plans.preset("inverted_pendulum")
  for run in other:
    assert (run.config.rm_learning_rate, run.config.rm_ensemble_size) == (
        preset.rm_learning_rate, preset.rm_ensemble_size)
