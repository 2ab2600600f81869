"""spo_jax: Self-Play Preference Optimization (SPO; Swamy et al., "A Minimaximalist Approach
to Reinforcement Learning from Human Feedback", ICML 2024) in JAX, on Brax environments.

Sample N trajectories from the policy, let a teacher compare them pairwise, reward each with
its win rate, improve the policy with jit-compiled PPO.
"""

import os

# MuJoCo picks its OpenGL platform once, when first imported (Brax imports it): EGL renders
# without a display (spo-eval --video, spo_jax/video.py). A user's own setting is kept.
os.environ.setdefault("MUJOCO_GL", "egl")

from spo_jax import _quiet  # noqa: F401  (first of ours: hides import-time notices)
from spo_jax.best_response import (
    ExploitabilityResult,
    FrozenPolicy,
    load_frozen,
    run_exploitability,
)
from spo_jax.config import Config, ConfigError, validate
from spo_jax.envs import make_env
from spo_jax.evaluate import PolicyParams
from spo_jax.loggers import LogOptions
from spo_jax.presets import PRESETS, default_config, preset
from spo_jax.rollout import Trajectory, rollout
from spo_jax.run_dir import RunDirBusy
from spo_jax.saved_policy import load_policy
from spo_jax.teachers import (
    BradleyTerry,
    Oracle,
    Teacher,
    TeacherContractError,
    TeacherStep,
    make_teacher,
    validate_teacher,
)
from spo_jax.tiny_envs import Balance, MatrixGame, PointReach
from spo_jax.train import (
    NumericalError,
    TrainingInterrupted,
    TrainState,
    build,
    init_over_seeds,
    make_train,
    train,
)
from spo_jax.winrate import compute_winrates, cyclic_triple_fraction, place_rewards, winrate
from spo_jax.write_errors import RunWriteError

__version__ = "0.1.0"

__all__ = [
    "Balance", "BradleyTerry", "build", "compute_winrates", "Config", "ConfigError",
    "cyclic_triple_fraction", "default_config", "ExploitabilityResult", "FrozenPolicy",
    "init_over_seeds", "load_frozen", "load_policy", "LogOptions", "make_env", "make_teacher",
    "make_train", "MatrixGame", "NumericalError", "Oracle", "place_rewards", "PointReach",
    "PolicyParams", "preset", "PRESETS", "rollout", "run_exploitability", "RunDirBusy",
    "RunWriteError", "Teacher", "TeacherContractError", "TeacherStep", "train",
    "TrainingInterrupted", "TrainState", "Trajectory", "validate", "validate_teacher",
    "winrate",
]
