"""The checks `config.validate` runs, one function per section of `Config`, in its order.

Each raises one `ConfigError` naming the field, its value and what is allowed (errors.py).
They live apart from `Config` so that the dataclass reads as its fields; `validate` (config.py)
is the one entry point and calls them in order, so the first problem found stays the same.
"""

from __future__ import annotations

from typing import Any

from spo_jax import envs, reward_sources, teachers
from spo_jax.errors import check_choice, check_float, check_int, fail

LABEL_MODES = ("soft", "sampled")
SELF_COMPARISON_MODES = ("exclude", "tie")
REWARD_PLACEMENTS = ("discounted", "spread", "terminal")
ACTIVATIONS = ("tanh", "relu", "swish")


def _sizes_ok(sizes: Any) -> bool:
  """A non-empty tuple of positive ints (bools are ints to Python, not sizes)."""
  return (isinstance(sizes, tuple) and bool(sizes)
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes))


def check_env_and_budget(cfg: Any, env: Any) -> None:
  """The environment (a registry name, or the label of the user's own `env`), its backend and
  horizons, the number of envs, the budget and the seeds."""
  if not isinstance(cfg.env, str) or not cfg.env:
    fail("env", cfg.env, "must be an environment name, or with your own Env instance "
         "(train(config, env=...)) any non-empty name for the run")
  if env is None:
    envs.check_env_name(cfg.env)
    label = cfg.env
  else:
    envs.check_env(env)  # before its episode_limit is compared below
    label = type(env).__name__
  if cfg.backend is not None and cfg.backend not in envs.BRAX_BACKENDS:
    fail("backend", cfg.backend, f"must be None or one of {list(envs.BRAX_BACKENDS)}")
  if cfg.backend is not None and env is None and envs.env_entry(cfg.env).family != "brax":
    fail("backend", cfg.backend, f"applies to Brax's envs only; '{cfg.env}' has its own "
         "physics: leave backend unset (None)")
  check_int(cfg, "episode_length", 1)
  max_len = envs.max_episode_length(cfg.env if env is None else env)
  if max_len is not None and cfg.episode_length > max_len:
    fail("episode_length", cfg.episode_length,
          f"the '{label}' episode lasts at most {max_len} steps; use episode_length <= {max_len}")
  check_int(cfg, "eval_episode_length", 0)
  if max_len is not None and cfg.eval_episode_length > max_len:
    fail("eval_episode_length", cfg.eval_episode_length,
         f"the '{label}' episode lasts at most {max_len} steps; use a value <= {max_len} "
         "(0: the training horizon)")
  check_int(cfg, "num_envs", 2)
  check_int(cfg, "num_timesteps", 1)
  check_int(cfg, "max_iterations", 0)
  check_int(cfg, "seed", 0, 2**31 - 1)
  check_int(cfg, "num_seeds", 1, 4096)


def check_registered_names(cfg: Any) -> None:
  """The reward source and the teacher (expression) are known to their registries."""
  reward_sources.REWARD_SOURCES.check(cfg.reward_source)
  teachers.check_teacher_config(cfg)


def check_reward_model(cfg: Any) -> None:
  """The `rm_*` fields of the Bradley–Terry reward-model baseline."""
  check_int(cfg, "rm_queries_per_iteration", 1)
  check_int(cfg, "rm_buffer_size", 1)
  check_int(cfg, "rm_ensemble_size", 1)
  check_float(cfg, "rm_learning_rate", 0.0, 1.0, low_open=True)
  check_int(cfg, "rm_train_steps", 0)
  check_int(cfg, "rm_batch_size", 1)
  check_choice(cfg, "rm_reward_normalization", ("scale", "standardize", "none"))
  check_float(cfg, "rm_output_penalty", 0.0, 1e6)
  if not _sizes_ok(cfg.rm_hidden_sizes):
    fail("rm_hidden_sizes", cfg.rm_hidden_sizes, "must be a non-empty tuple of positive integers")


def check_preference_rewards(cfg: Any) -> None:
  """Labels, opponents and queue, self-comparison, reward placement, compaction, segments."""
  check_choice(cfg, "labels", LABEL_MODES)
  check_int(cfg, "num_opponents", 0)
  check_int(cfg, "queue_size", 0)
  if cfg.num_opponents > 0 and cfg.self_comparison == "exclude" and cfg.num_envs < 2:
    fail("num_envs", cfg.num_envs, "random opponents need at least 2 environments")
  check_choice(cfg, "self_comparison", SELF_COMPARISON_MODES)
  check_choice(cfg, "reward_placement", REWARD_PLACEMENTS)
  if not isinstance(cfg.center_rewards, bool):
    fail("center_rewards", cfg.center_rewards, "must be true or false")
  check_int(cfg, "compaction_factor", 0)
  if cfg.compaction_factor == 1:
    fail("compaction_factor", 1, "must be 0 (off) or at least 2 (each batch N / f of the last)")
  check_int(cfg, "segment_length", 0)
  if cfg.segment_length and cfg.episode_length % cfg.segment_length:
    fail("segment_length", cfg.segment_length,
         f"must divide episode_length = {cfg.episode_length} (or be 0 for whole episodes)")
  check_float(cfg, "episode_weight", 0.0, 1e6)


def check_networks(cfg: Any) -> None:
  """Hidden sizes, activation, initial log-std, observation normalization."""
  for field in ("policy_hidden_sizes", "value_hidden_sizes"):
    sizes = getattr(cfg, field)
    if not _sizes_ok(sizes):
      fail(field, sizes, "must be a non-empty tuple of positive integers, e.g. (64, 64)")
  check_choice(cfg, "activation", ACTIVATIONS)
  check_float(cfg, "init_log_std", -5.0, 2.0)
  if not isinstance(cfg.normalize_observations, bool):
    fail("normalize_observations", cfg.normalize_observations, "must be true or false")


def check_ppo(cfg: Any) -> None:
  """PPO's coefficients, epochs and minibatches (which must divide the N * H slots)."""
  check_float(cfg, "learning_rate", 0.0, 1.0, low_open=True)
  check_float(cfg, "discount", 0.0, 1.0, low_open=True)
  check_float(cfg, "gae_lambda", 0.0, 1.0)
  check_float(cfg, "clip_epsilon", 0.0, 1.0, low_open=True)
  check_float(cfg, "value_coef", 0.0, 1e3)
  check_float(cfg, "entropy_coef", 0.0, 1.0)
  check_float(cfg, "max_grad_norm", 0.0, 1e6, low_open=True)
  check_int(cfg, "update_epochs", 1)
  check_int(cfg, "num_minibatches", 1)
  check_int(cfg, "num_microbatches", 1)
  if cfg.batch_size % cfg.num_minibatches:
    fail("num_minibatches", cfg.num_minibatches,
          f"must divide num_envs * episode_length = {cfg.batch_size}")
  check_float(cfg, "reward_scale", 0.0, 1e6, low_open=True)
  if not isinstance(cfg.normalize_advantages, bool):
    fail("normalize_advantages", cfg.normalize_advantages, "must be true or false")


def check_running(cfg: Any) -> None:
  """Sharding, guard and determinism flags, evaluation and checkpoint cadence, target."""
  check_choice(cfg, "shard", ("none", "envs", "seeds"))
  if cfg.shard == "seeds" and cfg.num_seeds < 2:
    fail("shard", cfg.shard, "sharding seeds needs num_seeds >= 2 (a multiple of the device "
         "count); use shard='envs' to spread one seed's environments")
  if not isinstance(cfg.numerical_guard, bool):
    fail("numerical_guard", cfg.numerical_guard, "must be true or false")
  if not isinstance(cfg.deterministic, bool):
    fail("deterministic", cfg.deterministic, "must be true or false")
  check_int(cfg, "iterations_per_call", 1)
  check_int(cfg, "eval_every", 1)
  check_int(cfg, "eval_every_steps", 0)
  check_int(cfg, "num_eval_envs", 1)
  check_int(cfg, "checkpoint_every", 0)
  check_int(cfg, "keep_checkpoints", 0)
  if cfg.target_return is not None:
    check_float(cfg, "target_return", -1e12, 1e12)


def check_plugin_configs(cfg: Any, env: Any) -> None:
  """Checks of the chosen plug-ins' own fields and combinations (e.g. SPO refuses segments
  with a queue), declared by their registry entries."""
  if env is None:  # a user's env object is not the registry entry its label may name
    envs.env_entry(cfg.env).check_config(cfg)
  reward_sources.REWARD_SOURCES.get(cfg.reward_source).check_config(cfg)
