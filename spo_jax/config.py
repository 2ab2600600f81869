"""Training configuration: one frozen dataclass, one `validate`, presets per environment.

Every field has a docstring (shown by `spo-train --help`). Fields that set array shapes
(`num_envs`, `episode_length`, network sizes, minibatch counts, ...) are static: changing
them recompiles. `validate` checks every field and every derived quantity before anything
is built or compiled, and raises one `ConfigError` naming the field, its value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

# The checks `validate` runs, one function per section, and the choices they allow
# (re-exported here, where they used to live).
from spo_jax import config_checks
from spo_jax.config_checks import (  # noqa: F401  (re-exported)
    ACTIVATIONS,
    LABEL_MODES,
    REWARD_PLACEMENTS,
    SELF_COMPARISON_MODES,
)

# The errors and field checks live on the ground floor (errors.py) so that envs, teachers and
# reward sources can raise them without importing this module; re-exported here.
from spo_jax.errors import (  # noqa: F401  (re-exported)
    ConfigError,
    ProtocolError,
    check_choice,
    check_float,
    check_int,
    fail,
)


@dataclasses.dataclass(frozen=True)
class Config:
  """Self-Play Preference Optimization (SPO, Swamy et al. 2024) on a Brax environment."""

  # --- environment ---------------------------------------------------------------
  env: str = "inverted_pendulum"
  """Environment: a Brax registry name (ant, halfcheetah, hopper, humanoid, inverted_pendulum,
  ...) or one of the package's own tiny environments (point_reach, balance, matrix_game). With
  your own Env object (`train(config, env=MyEnv())`) any non-empty name: it labels the run."""
  backend: str | None = None
  """Brax physics backend (generalized, positional, spring, mjx); None keeps the env's default.
  Brax's envs only: the package's, gymnax's and Playground's envs refuse a value."""
  episode_length: int = 1000
  """Horizon H: every iteration runs each environment for one episode of at most H steps."""
  num_envs: int = 128
  """N: episodes (trajectories) collected per iteration, all compared with each other."""
  eval_episode_length: int = 0
  """Steps of an evaluation episode (and of `spo-eval`); 0 means the training horizon H. A
  policy trained on shorter episodes than the task's (e.g. H = 250 on halfcheetah, whose
  returns are reported over 1000 steps) is evaluated on the task's length: the policy does not
  see the time step, only the critic does."""
  compaction_factor: int = 4
  """Rollout compaction f: once at most N / f episodes are still running, only those are
  stepped, gathered into a batch of N / f envs (then N / f^2, ... while at least 8), so the
  physics simulated follows the valid steps rather than N x the longest episode. Trajectories
  are the same; each extra batch size compiles one more copy of the env's step. 0: off (every
  env is stepped until the longest episode ends)."""

  # --- budget and seed -----------------------------------------------------------
  num_timesteps: int = 1_000_000
  """Training stops once this many environment steps (valid, pre-termination steps) were
  collected."""
  max_iterations: int = 0
  """Optional cap on training iterations; 0 means no cap (stop on num_timesteps only)."""
  seed: int = 0
  """Random seed for parameters, environments, teacher and minibatches."""
  num_seeds: int = 1
  """S: seeds trained together as one vmapped, compiled run (seed, seed + 1, ...,
  seed + S - 1), each seed initialised as its own single run would be; metrics.jsonl gets
  one row per seed per evaluation."""

  # --- reward source and teacher -------------------------------------------------
  reward_source: str = "spo"
  """Where PPO's reward comes from, a name in the reward-source registry
  (`spo_jax.reward_sources.REWARD_SOURCES`, listed by --help): 'spo' (win rate against the
  other trajectories, judged by the teacher), 'reward_model' (an MLP reward fit to the
  teacher's labels by Bradley-Terry: the iterative baseline) or 'ground_truth' (the
  environment's own reward; the reference)."""
  teacher: str = "oracle"
  """Preference function, possibly wrapped: a base teacher (oracle, bradley_terry,
  intransitive, constraint, peak, deadline, steady, matrix_game, learned) inside any chain of
  wrappers (mistake, myopic, equal, skip), e.g. 'mistake(myopic(oracle))'. A wrapper without
  parentheses wraps the oracle. See docs/teachers.md."""
  teacher_beta: float = 1.0
  """bradley_terry: inverse temperature beta > 0, P = sigmoid(beta * (R_a - R_b) / scale)."""
  teacher_scale: float = 1.0
  """bradley_terry: return scale > 0; returns are divided by it before the logistic, so that
  returns of hundreds do not make the teacher deterministic."""
  teacher_epsilon: float = 0.1
  """mistake: probability epsilon in [0, 1/2] of answering the wrong way,
  P' = (1 - epsilon) P + epsilon (1 - P)."""
  teacher_gamma: float = 0.99
  """myopic: gamma in (0, 1]; compares sum_t gamma^(T-1-t) r_t, recent steps weigh most
  (B-Pref's definition)."""
  teacher_tie_margin: float = 1.0
  """equal: returns closer than this margin (>= 0) are a tie, P = 1/2."""
  teacher_skip_threshold: float = 0.0
  """skip: the teacher abstains (no label) when both returns are below this threshold."""
  teacher_num_raters: int = 3
  """intransitive: number K of raters (odd, >= 3) voting by majority."""
  teacher_raters: str = ""
  """intransitive: rater utilities, '' for the environment's preset, 'spatial' for raters who
  each want the agent to travel in another direction of the plane (point_reach), or a JSON file
  {"metrics": [names...], "weights": [[K x M]]}; each rater's utility is the sum over steps of
  its weighted metrics."""
  teacher_quantity: str = "reward"
  """constraint/peak/deadline/steady: the per-step quantity judged: 'reward', 'action_norm',
  'action:<i>', 'obs:<i>', or a metric name of the env; an 'abs:' prefix takes the absolute
  value."""
  teacher_threshold: float = 0.0
  """constraint: a step violates the constraint when the quantity exceeds this; deadline: the
  level the quantity must reach."""
  teacher_deadline: int = 0
  """deadline: steps (>= 0) within which the level must be reached; 0 means the horizon."""
  teacher_table: str = "cycle3"
  """matrix_game: payoff table P[i, j] = P(outcome i preferred to outcome j): a preset
  ('rps', 'cycle3', 'transitive3') or a .json/.npy/.csv file with a square matrix."""
  teacher_labels_file: str = ""
  """learned: .npz file of labelled pairs (features_a [P, F], features_b [P, F], labels [P]) the
  preference network is fit to before training."""
  teacher_fit_steps: int = 2000
  """learned: gradient steps fitting the preference network to the labels file."""

  # --- reward-model baseline (reward_source = 'reward_model') ----------------------
  rm_queries_per_iteration: int = 64
  """reward_model: pairs of the current batch labelled by the teacher each iteration."""
  rm_buffer_size: int = 512
  """reward_model: labelled pairs kept (FIFO); each stores both trajectories' steps."""
  rm_hidden_sizes: tuple[int, ...] = (64, 64)
  """reward_model: hidden layer widths of the reward MLP r(s, a)."""
  rm_ensemble_size: int = 1
  """reward_model: ensemble members (the reward is their mean)."""
  rm_learning_rate: float = 1e-3
  """reward_model: Adam learning rate of the reward network."""
  rm_train_steps: int = 50
  """reward_model: Bradley-Terry gradient steps per iteration."""
  rm_batch_size: int = 32
  """reward_model: labelled pairs per gradient step."""
  rm_reward_normalization: Literal["scale", "standardize", "none"] = "scale"
  """reward_model: how the learned per-step reward is rescaled for PPO: 'scale' divides by its
  root mean square over valid steps (keeps the per-step constant, which carries the signal
  when episode lengths differ), 'standardize' also subtracts the mean, 'none' leaves it."""
  rm_output_penalty: float = 0.01
  """reward_model: weight (>= 0) of the mean squared reward added to the Bradley-Terry loss; it
  pins the constant offset that equal-length comparisons cannot determine."""

  # --- win rate ------------------------------------------------------------------
  labels: Literal["soft", "sampled"] = "soft"
  """'soft': use P(a > b) itself; 'sampled': one Bernoulli(P) label per query, as a rater gives."""
  num_opponents: int = 0
  """Opponents per trajectory: 0 compares all pairs; k > 0 draws k random opponents per
  trajectory (with replacement) from the batch and the queue, bounding queries to N*k."""
  queue_size: int = 0
  """Size of a FIFO queue of trajectory summaries from past iterations used as extra opponents
  (the paper's practical variant); 0 disables it."""
  self_comparison: Literal["exclude", "tie"] = "exclude"
  """A trajectory against itself: 'exclude' leaves it out of its own win rate; 'tie' counts it
  as one opponent with P = 1/2."""
  reward_placement: Literal["discounted", "spread", "terminal"] = "discounted"
  """'discounted': step t of a T-step trajectory gets w (1 - gamma) / (1 - gamma^T), so the
  discounted return PPO maximizes is exactly the win rate w at any length (docs/design.md,
  "Reward placement"); 'spread': every valid step gets w/T (the undiscounted return is w, the
  discounted one shrinks long trajectories); 'terminal': all of w at the last valid step."""
  center_rewards: bool = True
  """Subtract 1/2 from the win rate before placing it, so losing trajectories get a negative
  return."""
  segment_length: int = 0
  """SPO: 0 compares whole episodes (the paper's setting). L > 0 (a divisor of episode_length)
  compares segments of L steps: segment k of each trajectory against segment k of every other
  trajectory still running when it began, each segment rewarded with its own win rate spread
  over its steps, as preference-RL benchmarks compare clips (B-Pref: 50 steps). The teacher
  judges each segment as a trajectory of its own. Not with queue_size > 0; the reward-model
  baseline labels whole episodes whatever this says."""
  episode_weight: float = 0.0
  """SPO with segments: c > 0 also compares whole episodes and adds c times each
  trajectory's whole-episode win rate (placed as without segments) to its segments' rewards,
  so outliving the others pays while segments credit progress where it happened (hopper:
  docs/design.md, "Segments"). 0: segments alone. Needs segment_length > 0."""

  # --- networks ------------------------------------------------------------------
  policy_hidden_sizes: tuple[int, ...] = (64, 64)
  """Hidden layer widths of the policy MLP."""
  value_hidden_sizes: tuple[int, ...] = (64, 64)
  """Hidden layer widths of the value MLP (its input also carries the time feature t/H)."""
  activation: Literal["tanh", "relu", "swish"] = "tanh"
  """Hidden-layer activation of both MLPs."""
  init_log_std: float = -0.5
  """Initial log standard deviation of the (pre-tanh) Gaussian policy; unused by envs with
  discrete actions (matrix_game), whose policy is categorical."""
  normalize_observations: bool = True
  """Normalize observations with running mean and variance of all valid steps seen so far."""

  # --- PPO -----------------------------------------------------------------------
  learning_rate: float = 3e-4
  """Adam learning rate."""
  discount: float = 0.99
  """Discount gamma of the return PPO optimizes, in (0, 1]."""
  gae_lambda: float = 0.95
  """GAE lambda in [0, 1]."""
  clip_epsilon: float = 0.2
  """PPO ratio clipping epsilon > 0."""
  value_coef: float = 0.5
  """Weight of the value loss."""
  entropy_coef: float = 0.0
  """Weight of the entropy bonus (>= 0)."""
  max_grad_norm: float = 0.5
  """Global gradient-norm clipping threshold > 0."""
  update_epochs: int = 4
  """Passes over the iteration's data per PPO update."""
  num_minibatches: int = 16
  """Minibatches per epoch; must divide N * H. Each takes an equal share of the iteration's
  valid steps."""
  num_microbatches: int = 32
  """Pieces a minibatch is computed in (gradients accumulated, the same update): a piece holds
  N * H / (num_minibatches * num_microbatches) slots (at least 512, or the whole minibatch if
  smaller) and only the pieces holding valid steps run, so a PPO update costs about
  (valid steps / N * H) of a full pass, in steps of one piece. Early in training, when
  episodes end after tens of steps, that is most of an iteration's time saved; 1 runs every
  minibatch as one full-size piece. 32 gives pieces of 512 slots at the presets' sizes (8
  gave 2,000 at N = 256 on hopper, 3.6x slower early updates: scripts/ppo_piece_sizes.py)."""
  reward_scale: float = 1.0
  """Multiplies the per-step reward PPO sees (win-rate or environment reward)."""
  normalize_advantages: bool = True
  """Normalize advantages to zero mean and unit variance over the valid steps of an iteration."""

  # --- host loop -----------------------------------------------------------------
  shard: Literal["none", "envs", "seeds"] = "none"
  """Spread the work over all devices of `jax.devices()` on a `jax.sharding.Mesh`: 'envs' splits
  the N environments (num_envs must be a multiple of the device count), 'seeds' splits the
  seeds of `num_seeds` (a multiple of the device count); 'none' uses one device."""
  numerical_guard: bool = True
  """Stop training, naming the quantity and the iteration, when a teacher answer is not a
  probability or rewards, losses, gradients or parameters are nan/inf; the bad state is never
  checkpointed."""
  deterministic: bool = False
  """Make GPU runs repeat bit for bit: sets XLA_FLAGS=--xla_gpu_deterministic_ops=true before
  JAX starts its backend (deterministic reductions and scatters, no atomics; deterministic
  kernel choice). Costs speed on GPU, most in scatter-heavy code; no effect on CPU, which
  repeats bit for bit anyway (docs/determinism.md). May change on --resume."""
  iterations_per_call: int = 1
  """Training iterations fused into one compiled call (fewer host round trips)."""
  eval_every: int = 5
  """Evaluate (deterministic policy, ground-truth return) every this many iterations."""
  eval_every_steps: int = 0
  """If > 0, evaluate instead each time the env steps collected pass a multiple of this
  (as Brax spaces its evaluations): iterations shrink when episodes end early, so a spacing
  in iterations would evaluate far more often early in training than late."""
  num_eval_envs: int = 16
  """Episodes per evaluation."""
  checkpoint_every: int = 10
  """Save a checkpoint every this many iterations (and always at the end); 0 saves only at
  the end."""
  keep_checkpoints: int = 3
  """Checkpoints kept on disk (the newest ones); 0 keeps every one. The time-averaged policy
  of a multi-step run (`best_response.load_frozen(run, 'mixture')`) mixes the kept
  checkpoints, so a run whose average is measured keeps them all."""
  target_return: float | None = None
  """Stop early once the evaluation return reaches this value (None: never)."""

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> Config:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
      raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
    kwargs = dict(data)
    for key in ("policy_hidden_sizes", "value_hidden_sizes", "rm_hidden_sizes"):
      if key in kwargs and kwargs[key] is not None:
        kwargs[key] = tuple(kwargs[key])
    return cls(**kwargs)

  def replace(self, **changes: Any) -> Config:
    return dataclasses.replace(self, **changes)

  @property
  def batch_size(self) -> int:
    """Slots per iteration: N * H (valid and masked steps)."""
    return self.num_envs * self.episode_length

  @property
  def eval_horizon(self) -> int:
    """Steps of an evaluation episode: `eval_episode_length`, or H when it is 0."""
    return self.eval_episode_length or self.episode_length

  @property
  def minibatch_size(self) -> int:
    return self.batch_size // self.num_minibatches


def validate(cfg: Config, env: Any = None) -> Config:
  """Check every field and derived quantity; raise one `ConfigError` naming the first problem.

  Environment and teacher names are checked against their registries here too, so that a
  typo fails before anything is compiled. `env`: the user's own environment object given to
  `train(env=...)` or `build` (None: the env is built from `cfg.env`). With one, `cfg.env`
  is only the run's label (any non-empty name; the run directory records the object's class,
  spo_jax/saved_policy.py), the object is checked against `envs.EnvAdapter` and its own
  `episode_limit` bounds the horizons; every other check is the same. Returns `cfg`
  unchanged for chaining.
  """
  if not isinstance(cfg, Config):
    raise ConfigError(f"expected a spo_jax.Config, got {type(cfg).__name__}")
  config_checks.check_env_and_budget(cfg, env)
  config_checks.check_registered_names(cfg)
  config_checks.check_reward_model(cfg)
  config_checks.check_preference_rewards(cfg)
  config_checks.check_networks(cfg)
  config_checks.check_ppo(cfg)
  config_checks.check_running(cfg)
  config_checks.check_plugin_configs(cfg, env)
  return cfg
