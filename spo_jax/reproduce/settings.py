"""The reproduction's plan as data: per environment its sizes, budget and teacher settings
(`EnvSettings`), per scale which environment serves which question with which grids
(`ScalePlan`, `PLANS`), and the values tuned for each method on tuning seeds. `plans.py`
turns these into runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class EnvSettings:
  """What one environment needs for the questions: sizes, budget and teacher parameters."""

  num_envs: int
  episode_length: int
  num_timesteps: int  # env steps per seed (Q2, Q3, Q4 and Q1's control task)
  max_iterations: int  # a cap on iterations, so that a slow learner cannot run away
  bt_scale: float  # bradley_terry: returns are divided by this (about the batch's spread)
  q4: dict[str, dict[str, Any]]  # teacher name -> its teacher_* fields
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  # Method ('spo', 'rm') -> the fields tuned for it on tuning seeds (scripts/tune_reproduce.py),
  # applied to that method's Q2/Q3 runs; the soft-label reference takes SPO's.
  tuned: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


# inverted_pendulum: obs = (cart position, hinge angle, cart velocity, angular velocity);
# reward 1 per step alive; the episode ends at |angle| > 0.2. H = 200 keeps the vmapped
# iteration (all S x N x H steps are simulated under vmap) cheap while the task stays the
# same (return = steps balanced, at most H). Q4's properties are invisible to the return:
# 'constraint' wants the cart to stay within |x| <= 0.1 of the centre all episode,
# 'deadline' wants the cart at x >= 0.3 as early as possible (within 60 steps).
_PENDULUM_Q4 = {
    "constraint": {"teacher_quantity": "abs:obs:0", "teacher_threshold": 0.1},
    "deadline": {"teacher_quantity": "obs:0", "teacher_threshold": 0.3, "teacher_deadline": 60},
    "peak": {"teacher_quantity": "obs:0"},
    "steady": {"teacher_quantity": "obs:2"},
}
# The package's cart-pole (balance): the same two properties on its position metric.
_BALANCE_Q4 = {
    "constraint": {"teacher_quantity": "abs:position", "teacher_threshold": 0.2},
    "deadline": {"teacher_quantity": "position", "teacher_threshold": 0.3,
                 "teacher_deadline": 10},
    "peak": {"teacher_quantity": "position"},
    "steady": {"teacher_quantity": "angle"},
}
# Locomotion (gpu scale): obs[1] is the torso pitch of hopper/walker2d/halfcheetah; the
# 'constraint' keeps it within 0.4 rad (no diving forward), 'deadline' wants a forward
# reward term of 1 (speed ~1 m/s) early, 'peak' the top speed.
_LOCOMOTION_Q4 = {
    "constraint": {"teacher_quantity": "abs:obs:1", "teacher_threshold": 0.4},
    "deadline": {"teacher_quantity": "reward_forward", "teacher_threshold": 1.0,
                 "teacher_deadline": 200},
    "peak": {"teacher_quantity": "reward_forward"},
    "steady": {"teacher_quantity": "reward_forward"},
}
# humanoid has no 'reward_forward' metric; its forward term is 'reward_linvel'.
_HUMANOID_Q4 = {
    **_LOCOMOTION_Q4,
    "deadline": {"teacher_quantity": "reward_linvel", "teacher_threshold": 1.0,
                 "teacher_deadline": 200},
    "peak": {"teacher_quantity": "reward_linvel"},
    "steady": {"teacher_quantity": "reward_linvel"},
}

# point_reach: Q1's control task at --scale cpu, and the smoke test's plan (--tiny).
# Q4: stay within |x| <= 1 ('constraint'); come within 0.5 of the target (reward = -distance
# >= -0.5) within 8 steps ('deadline').
_POINT_Q4 = {
    "constraint": {"teacher_quantity": "abs:obs:0", "teacher_threshold": 1.0},
    "deadline": {"teacher_quantity": "reward", "teacher_threshold": -0.5, "teacher_deadline": 8},
    "peak": {"teacher_quantity": "reward"},
    "steady": {"teacher_quantity": "action_norm"},
}
CPU_ENVS: dict[str, EnvSettings] = {
    "inverted_pendulum": EnvSettings(
        num_envs=32, episode_length=200, num_timesteps=60_000, max_iterations=40,
        bt_scale=20.0, q4=_PENDULUM_Q4,
        overrides={"num_minibatches": 4, "eval_every": 2, "num_eval_envs": 16}),
    # Q2 and Q3 at `--scale cpu`: the package's cart-pole held for up to 1000 steps, 100k env
    # steps per seed. No method's learning curve is at the 1000 cap from the start, and the
    # env-reward PPO stays far below it (seeds 100-109: mean final return 246, one seed of
    # ten at 1000), unlike inverted_pendulum at H = 200 where every method sat at 200
    # (docs/results.md, "Why balance"). Returns span 0..1000: Bradley-Terry divides by 100.
    "balance": EnvSettings(
        num_envs=32, episode_length=1000, num_timesteps=100_000, max_iterations=80,
        bt_scale=100.0, q4=_BALANCE_Q4, overrides={"num_minibatches": 4, "eval_every": 2},
        # Tuned on seeds 100-102, four configurations each, scored by the area under the eval
        # curve (scripts/tune_reproduce.py; data in docs/results/tuning/).
        tuned={"spo": {"learning_rate": 3e-3},
               "rm": {"learning_rate": 1e-3, "rm_learning_rate": 3e-3, "rm_ensemble_size": 3}}),
    # Q1's control task at `--scale cpu`: a point in the plane judged by the 'spatial' raters
    # (each wants it to travel far in another direction, 120 degrees apart; raters.py),
    # whose majority cycles on about 20% of the triples of a training batch. Each method's
    # settings are tuned on seeds 100-102 (`CONTROL_TUNED`, below). About 50 iterations of N = 64
    # episodes of H = 32 steps.
    "point_reach": EnvSettings(
        num_envs=64, episode_length=32, num_timesteps=100_000, max_iterations=60, bt_scale=10.0,
        q4=_POINT_Q4, overrides={"eval_every": 2, "num_eval_envs": 16}),
}
GPU_ENVS: dict[str, EnvSettings] = {
    name: EnvSettings(num_envs=256, episode_length=1000, num_timesteps=steps,
                      max_iterations=0, bt_scale=scale,
                      q4=_HUMANOID_Q4 if name == "humanoid" else _LOCOMOTION_Q4,
                      overrides={"eval_every": 10, "checkpoint_every": 50})
    for name, steps, scale in (("hopper", 20_000_000, 300.0), ("walker2d", 30_000_000, 300.0),
                               ("halfcheetah", 30_000_000, 500.0), ("ant", 50_000_000, 500.0),
                               ("humanoid", 50_000_000, 500.0))
}
# point_reach at a few steps: the smoke test's plan (--tiny). Its return varies from seed to
# seed (unlike a balancing task that every seed survives), so the statistics mean something.
TINY_ENVS: dict[str, EnvSettings] = {
    "point_reach": EnvSettings(
        num_envs=6, episode_length=12, num_timesteps=200, max_iterations=3, bt_scale=5.0,
        q4=_POINT_Q4,
        overrides={"num_minibatches": 1, "update_epochs": 1, "eval_every": 1,
                   "num_eval_envs": 4, "policy_hidden_sizes": (16,),
                   "value_hidden_sizes": (16,), "rm_hidden_sizes": (16,),
                   "rm_train_steps": 2, "rm_queries_per_iteration": 8, "rm_batch_size": 8,
                   "checkpoint_every": 0}),
}


@dataclasses.dataclass(frozen=True)
class ScalePlan:
  """Which environment serves which question, the noise grid and the matrix-game length."""

  envs: dict[str, EnvSettings]
  control_env: str  # Q1's control task (needs an intransitive rater preset)
  q2_envs: tuple[str, ...]
  q3_env: str
  q4_env: str
  betas: tuple[float, ...]
  epsilons: tuple[float, ...]
  q4_teachers: tuple[str, ...]
  matrix_iterations: int
  final_episodes: int  # episodes per seed of the final rollouts (Q1 raters, Q4 properties)
  default_seeds: int
  # Q2/Q3 equal-label budget k: labels per trajectory for SPO (k sampled-label opponents)
  # and N k pairs per iteration for the reward model (`equal_label_configs`).
  labels_per_trajectory: int = 1
  # Q1 control: PPO iterations of the best response that estimates exploitability, and the
  # checkpoint spacing (every checkpoint kept) whose iterates form SPO's time-averaged policy.
  br_iterations: int = 20
  mixture_every: int = 2
  br_episodes: int = 0  # pairs that measure a best response's win rate (0: final_episodes)
  # Q1 control: `teacher_raters` of the intransitive teacher on `control_env` ('' for the
  # env's preset raters; another env given with --env always gets its preset).
  control_raters: str = ""
  # Q1 control: method -> the fields tuned for it on `control_env` (tuning seeds only),
  # applied when the control task runs on that env.
  control_tuned: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


# Q1's control task (point_reach, spatial raters), tuned on seeds 100-102 with four
# configurations per method, scored by the best-response exploitability of the policy each
# method is judged by (SPO's mixture of iterates, RM's last iterate; lower is better;
# scripts/tune_q1_control.py, data in docs/results/tuning/q1_control/). SPO: learning rate
# 1e-3 (0.113, the preset's 3e-3: 0.203). RM: the policy's 3e-3 with the reward model's 3e-3
# and an ensemble of 3 (0.309, the preset's settings: 0.467).
CONTROL_TUNED: dict[str, dict[str, Any]] = {
    "spo": {"learning_rate": 1e-3},
    "rm": {"learning_rate": 3e-3, "rm_learning_rate": 3e-3, "rm_ensemble_size": 3}}

PLANS = {
    # Q1 control on point_reach with the spatial raters; Q2/Q3 on balance at H = 1000 (see
    # CPU_ENVS). Q3's grid is one level of each noise beside the noiseless point: each
    # reward-model run of 10 seeds takes 13-31 minutes on one core of the 2-core CPU, so the
    # gpu plan's three levels of each do not fit 3 hours.
    "cpu": ScalePlan(envs=CPU_ENVS, control_env="point_reach", control_raters="spatial",
                     q2_envs=("balance",), q3_env="balance",
                     q4_env="inverted_pendulum", betas=(1.0,),
                     epsilons=(0.0, 0.2), q4_teachers=("constraint", "deadline"),
                     matrix_iterations=600, final_episodes=32, default_seeds=10,
                     labels_per_trajectory=2, br_iterations=60, mixture_every=2,
                     br_episodes=256, control_tuned=CONTROL_TUNED),
    "gpu": ScalePlan(envs=GPU_ENVS, control_env="hopper",
                     q2_envs=("ant", "halfcheetah", "hopper", "walker2d", "humanoid"),
                     q3_env="halfcheetah", q4_env="hopper", betas=(0.3, 1.0, 3.0),
                     epsilons=(0.0, 0.1, 0.2, 0.3), q4_teachers=("constraint", "deadline"),
                     matrix_iterations=1000, final_episodes=64, default_seeds=10,
                     labels_per_trajectory=1, br_iterations=200, mixture_every=5),
    "tiny": ScalePlan(envs=TINY_ENVS, control_env="point_reach", control_raters="spatial",
                      q2_envs=("point_reach",),
                      q3_env="point_reach", q4_env="point_reach", betas=(1.0,), epsilons=(0.0, 0.2),
                      q4_teachers=("constraint", "deadline"), matrix_iterations=6,
                      final_episodes=4, default_seeds=3, labels_per_trajectory=1,
                      br_iterations=2, mixture_every=1),
}


# Q1's matrix game, tuned on seeds 100-102 with four configurations per method, scored by the
# averaged policy's final exploitability (scripts/tune_matrix_game.py; data in
# docs/results/tuning/matrix_game/). SPO: the preset's values won. RM: the policy's learning
# rate 1e-3 (the preset's) with the reward model's 3e-3 and an ensemble of 3.
MATRIX_TUNED: dict[str, dict[str, Any]] = {
    "spo": {}, "rm": {"rm_learning_rate": 3e-3, "rm_ensemble_size": 3}}
