"""Exploitability of a frozen policy on any env, estimated by training a best response.

SPO's guarantee is about the Minimax Winner: a policy that no other policy beats by more
than 1/2 in the teacher's eyes. Its exploitability

  e(pi) = max_rho  E_{tau ~ rho, tau' ~ pi} P(tau > tau') - 1/2

is 0 exactly at a Minimax Winner. In a one-step game it is computed exactly
(`policy_average.py`); on a multi-step env the max over all policies is estimated here by
training one: a fresh PPO policy (the responder), with the package's rollout and PPO, whose
reward is the teacher's preference of its trajectory over a trajectory of the FROZEN policy
sampled afresh each iteration (`BestResponseReward`: responder episode i against frozen
episode i, P - 1/2 placed as SPO places a win rate). The estimate is the trained responder's
mean preference over `eval_episodes` new paired episodes, minus 1/2; `start` is the same
measurement with the responder before training. A responder that trains badly only lowers the
estimate, so it is a lower bound on e(pi) (up to its sampling interval).

Where the responder starts: from scratch (`warm_start=False`), or from the frozen policy's
last iterate (`warm_start=True`: its policy network and observation normalizer; a fresh
critic). A teacher with hard answers (P in {0, 1/2, 1}: the intransitive raters' majority,
the non-Markovian teachers) prefers a trained policy's every episode to an untrained
responder's, so a responder from scratch sees the reward -1/2 on every trajectory, gets no
gradient and measures -1/2 before and after training (the reproduction's Q1 control task
measured exactly that for all 10 seeds of both methods). A copy of the frozen policy starts
near a tie, where the teacher's answers vary and PPO can climb towards whatever beats it,
provided both act alike: the responder samples its actions (PPO needs it), so the frozen
policy should sample too (`deterministic=False`). Against its own mode a sampled copy can
lose every pair (the Q1 control task's raters penalise effort and tilt, which sampling
noise adds), which again leaves no gradient. The frozen policy's samples are also what the
Minimax Winner is about: a distribution over trajectories. A copy can also stay stuck at its
tie: against a policy that travels fast one way (Q1's spatial raters judge the direction of
travel), a copy read 0.01 after 200 iterations where a responder from scratch reached 0.49.
Neither start dominates; the reproduction trains both and reports the larger reading (each
is a lower bound).

The frozen policy is a `FrozenPolicy`: a uniform mixture of M parameter sets, each episode
acting with ONE of them drawn uniformly (`mixture_indices`); M = 1 is a single policy.
`load_frozen(run_dir, 'mixture')` mixes every checkpoint the run kept: the time-averaged
policy of a multi-step env (set `keep_checkpoints = 0` to keep every one);
`load_frozen(run_dir, 'last')` is the last iterate, `load_frozen(run_dir, 'first')` the
oldest kept one (a near-untrained policy: a positive control for the measure).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env

from spo_jax import envs as envs_lib
from spo_jax import networks as nets
from spo_jax import saved_policy
from spo_jax import teachers as teachers_lib
from spo_jax.checkpoint import complete_steps, find_checkpoint_dir, read_run_config
from spo_jax.config import Config, ConfigError
from spo_jax.evaluate import PolicyParams, acting_policy, rollout_policy
from spo_jax.iteration import TrainState, make_functions, policy_params
from spo_jax.rollout import PolicyFn, RolloutResult, rollout
from spo_jax.setup import build, init_over_seeds, over_seeds
from spo_jax.teachers import TeacherProtocol, ask
from spo_jax.winrate import place_rewards

TARGETS = ("first", "last", "mixture")
Z_95 = 1.959964  # two-sided 95% normal quantile


class FrozenPolicy(NamedTuple):
  """A uniform mixture of M saved policies (M = 1: one policy), acting one per episode."""

  networks: nets.Networks
  params: PolicyParams  # leaves [M, ...]: the iterates, stacked
  normalize_observations: bool
  deterministic: bool  # each iterate acts with its mode (as evaluation does) or samples
  steps: tuple[int, ...] = ()  # the checkpoint step of each iterate (informative)

  @property
  def num_iterates(self) -> int:
    """M, for unseeded params [M, ...]."""
    return int(jax.tree.leaves(self.params)[0].shape[0])

  @property
  def num_iterates_per_seed(self) -> int:
    """M, for params with a seed axis [S, M, ...] (`exploitability_over_seeds`)."""
    return int(jax.tree.leaves(self.params)[0].shape[1])


def mixture_indices(key: jax.Array, num_episodes: int, num_iterates: int) -> jax.Array:
  """The iterate each episode acts with: [num_episodes] int32, i.i.d. uniform on
  0..num_iterates-1 (the uniform mixture's draw, once per episode)."""
  return jax.random.randint(key, (num_episodes,), 0, num_iterates)


def frozen_policy_fn(frozen: FrozenPolicy, key: jax.Array, num_episodes: int
                     ) -> tuple[PolicyFn, jax.Array]:
  """(`rollout` policy for `num_episodes` episodes, iterate index [num_episodes]): episode i
  acts with iterate index[i] at every step (`key` draws the indices; the rollout's step keys
  draw the actions of a stochastic policy)."""
  if frozen.num_iterates == 1:
    params = jax.tree.map(lambda x: x[0], frozen.params)
    policy = rollout_policy(frozen.networks, params, frozen.normalize_observations,
                            frozen.deterministic)
    return policy, jnp.zeros((num_episodes,), jnp.int32)
  index = mixture_indices(key, num_episodes, frozen.num_iterates)
  per_episode = jax.tree.map(lambda x: x[index], frozen.params)  # leaves [N, ...]

  def one(params: PolicyParams, o: jax.Array):
    return nets.apply_policy(frozen.networks, params.policy, params.normalizer, o,
                             frozen.normalize_observations)

  policy_fn = acting_policy(frozen.networks, lambda obs: jax.vmap(one)(per_episode, obs),
                            frozen.deterministic)
  return policy_fn, index


def single_policy(networks: nets.Networks, params: PolicyParams,
                  normalize_observations: bool = True, deterministic: bool = True
                  ) -> FrozenPolicy:
  """One policy (unstacked `params`) as a mixture of one."""
  stacked = jax.tree.map(lambda x: jnp.asarray(x)[None], params)
  return FrozenPolicy(networks, stacked, normalize_observations, deterministic)


def paired_preferences(teacher: TeacherProtocol, responder: RolloutResult,
                       frozen: RolloutResult, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(P(responder episode i > frozen episode i) [N], labelled [N] bool); an abstained pair
  counts as a tie, P = 1/2."""
  index = jnp.arange(jax.tree.leaves(responder.summaries)[0].shape[0])
  pref, abstain = jax.vmap(lambda a, b, i: ask(teacher, a, b, key, i))(
      responder.summaries, frozen.summaries, index)
  return jnp.where(abstain, 0.5, pref), ~abstain


@dataclasses.dataclass(frozen=True)
class BestResponseReward:
  """Reward source of the responder (`reward_sources.RewardSource`): each iteration rolls out
  N fresh episodes of the frozen policy and rewards responder trajectory i with
  P(responder_i > frozen_i) - 1/2, placed over its steps as SPO places a centred win rate
  (`winrate.place_rewards`), so the discounted return at t = 0 is exactly that preference.

  Its state (`TrainState.reward_state`) is the frozen policy's stacked parameters
  (`FrozenPolicy.params`, leaves [M, ...]), put there by `exploitability` after `init`: a
  traced value, so one compiled iteration serves every seed and every frozen policy of the
  same shapes, vmapped over seeds like training."""

  env: Env
  teacher: TeacherProtocol
  networks: nets.Networks  # the frozen policy's
  normalize_observations: bool
  deterministic: bool
  num_envs: int
  horizon: int
  placement: str = "discounted"
  discount: float = 1.0
  uses_teacher = True
  segment_length = 0

  def frozen(self, params: PolicyParams) -> FrozenPolicy:
    return FrozenPolicy(self.networks, params, self.normalize_observations, self.deterministic)

  def init(self, key: jax.Array, summary_template: Any) -> Any:
    del key, summary_template
    return ()  # replaced by the frozen parameters (`exploitability`)

  def rewards(self, state: Any, result: RolloutResult, key: jax.Array):
    k_pick, k_rollout, k_teacher = jax.random.split(key, 3)
    policy_fn, _ = frozen_policy_fn(self.frozen(state), k_pick, self.num_envs)
    opponents = rollout(self.env, policy_fn, k_rollout, self.num_envs, self.horizon,
                        self.teacher)
    pref, labelled = paired_preferences(self.teacher, result, opponents, k_teacher)
    rewards = place_rewards(pref - 0.5, result.trajectory.mask, self.placement, self.discount)
    invalid = jnp.sum(teachers_lib.invalid_answer(pref)).astype(jnp.int32)
    metrics = {"num_queries": jnp.asarray(self.num_envs, jnp.int32),
               "num_labels": jnp.sum(labelled).astype(jnp.int32),
               "teacher_invalid": invalid, "preference": jnp.mean(pref)}
    return rewards, state, metrics


class ExploitabilityResult(NamedTuple):
  """A best response's verdict on a frozen policy (floats on the host)."""

  estimate: float  # trained responder: mean P(responder > frozen) - 1/2 over eval episodes
  interval: tuple[float, float]  # its 95% normal interval over the eval episodes
  start: float  # the same with the responder before training (the starting value)
  start_interval: tuple[float, float]
  curve: np.ndarray  # [iterations] mean training preference - 1/2, per iteration
  iterations: int  # PPO iterations the responder trained
  eval_episodes: int
  num_iterates: int  # iterates in the frozen mixture

  def to_dict(self) -> dict[str, Any]:
    out = self._asdict()
    out["curve"] = [float(x) for x in self.curve]
    out["interval"], out["start_interval"] = list(self.interval), list(self.start_interval)
    return out


def _estimate(pref: np.ndarray) -> tuple[float, tuple[float, float]]:
  """mean - 1/2 and the 95% normal interval mean +- 1.96 sd / sqrt(E) over episodes."""
  pref = np.asarray(pref, np.float64)
  mean = float(pref.mean()) - 0.5
  half = Z_95 * float(pref.std(ddof=1)) / math.sqrt(len(pref)) if len(pref) > 1 else 0.0
  return mean, (mean - half, mean + half)


def exploitability(frozen: FrozenPolicy, env: Env, teacher: TeacherProtocol, config: Config,
                   key: jax.Array, *, iterations: int, eval_episodes: int = 64,
                   warm_start: bool = False) -> ExploitabilityResult:
  """Train a best response to `frozen` for `iterations` PPO iterations and measure it.

  The responder is a fresh policy with `config`'s networks, N = `config.num_envs`, horizon
  H = `config.episode_length` and PPO settings (its reward source is `BestResponseReward`,
  whatever `config.reward_source` says). Before and after training, `eval_episodes` pairs of
  episodes (responder episode i against frozen episode i, from independent reset states as
  in training; the responder samples its actions, as PPO trained it) give the mean
  preference minus 1/2. `warm_start`: the responder starts as the frozen policy's last
  iterate (module docstring).
  """
  seeded = frozen._replace(params=jax.tree.map(lambda x: x[None], frozen.params))
  return exploitability_over_seeds(seeded, env, teacher, config, key[None],
                                   iterations=iterations, eval_episodes=eval_episodes,
                                   warm_start=warm_start)[0]


class ResponderPrograms(NamedTuple):
  """The responder's compiled functions, vmapped over S seeds (`responder_programs`)."""

  init_cold: Any  # (keys [S], frozen params [S, M, ...]) -> TrainState, a fresh responder
  init_warm: Any  # the same, the responder's policy and normalizer copied from the newest
  step: Any  # TrainState -> (TrainState, metrics): one PPO iteration against the frozen
  evaluate: Any  # (TrainState, keys [S]) -> [S, E] P(responder episode > frozen episode)


@functools.lru_cache(maxsize=4)
def responder_programs(env: Env, teacher: TeacherProtocol, frozen_networks: nets.Networks,
                       frozen_normalize: bool, frozen_deterministic: bool, config: Config,
                       num_seeds: int, eval_episodes: int) -> ResponderPrograms:
  """The responder's jitted functions for these shapes, built once and shared: the
  responders from scratch and from a copy, and frozen policies of the same shapes (the
  oldest and the last iterate), reuse one compiled iteration instead of compiling it per
  call (the reproduction measures up to four frozen policies with two responders each)."""
  obs_size = envs_lib.observation_size(env)
  networks = nets.make_networks(obs_size, env.action_size, config.policy_hidden_sizes,
                                config.value_hidden_sizes, config.activation,
                                config.init_log_std, discrete=nets.has_discrete_actions(env))
  spec = teachers_lib.env_spec(env, config.episode_length, "")
  horizon = config.episode_length
  source = BestResponseReward(env, teacher, frozen_networks, frozen_normalize,
                              frozen_deterministic, config.num_envs, horizon,
                              config.reward_placement, config.discount)
  fns = make_functions(config.replace(iterations_per_call=1), env, teacher, networks, spec,
                       source=source)

  def init(key: jax.Array, frozen_params: PolicyParams, warm_start: bool) -> TrainState:
    state = fns.init(key)._replace(reward_state=frozen_params)
    if not warm_start:
      return state
    last = jax.tree.map(lambda x: x[-1], frozen_params)  # the newest iterate
    return state._replace(params=state.params._replace(policy=last.policy),
                          normalizer=last.normalizer)

  def evaluate(state: TrainState, k: jax.Array) -> jax.Array:
    k_pick, k_responder, k_frozen, k_teacher = jax.random.split(k, 4)
    responder = rollout_policy(networks, policy_params(state), config.normalize_observations,
                               deterministic=False)
    opponent, _ = frozen_policy_fn(source.frozen(state.reward_state), k_pick, eval_episodes)
    # Independent reset states, as in training and as SPO's win rates compare trajectories.
    a = rollout(env, responder, k_responder, eval_episodes, horizon, teacher)
    b = rollout(env, opponent, k_frozen, eval_episodes, horizon, teacher)
    return paired_preferences(teacher, a, b, k_teacher)[0]

  return ResponderPrograms(
      init_cold=jax.jit(init_over_seeds(functools.partial(init, warm_start=False), num_seeds)),
      init_warm=jax.jit(init_over_seeds(functools.partial(init, warm_start=True), num_seeds)),
      step=jax.jit(over_seeds(fns.iteration, num_seeds)),
      evaluate=jax.jit(over_seeds(evaluate, num_seeds)))


def exploitability_over_seeds(frozen: FrozenPolicy, env: Env, teacher: TeacherProtocol,
                              config: Config, keys: jax.Array, *, iterations: int,
                              eval_episodes: int = 64, warm_start: bool = False
                              ) -> list[ExploitabilityResult]:
  """`exploitability` of S frozen policies at once: `frozen.params` leaves [S, M, ...] (seed
  s's mixture of M iterates), `keys` [S]; one responder per seed, all vmapped in one
  compiled iteration (as `train` vmaps seeds). Returns one result per seed."""
  if iterations < 0 or eval_episodes < 2:
    raise ConfigError(f"best response: iterations = {iterations} must be >= 0 and "
                      f"eval_episodes = {eval_episodes} >= 2")
  if warm_start and frozen.normalize_observations != config.normalize_observations:
    raise ConfigError(
        f"best response: warm_start copies the frozen policy, which "
        f"{'normalizes' if frozen.normalize_observations else 'does not normalize'} its "
        f"observations; set normalize_observations = {frozen.normalize_observations} in the "
        f"responder's config")
  num_seeds = int(keys.shape[0])
  programs = responder_programs(env, teacher, frozen.networks, frozen.normalize_observations,
                                frozen.deterministic, config, num_seeds, eval_episodes)
  init_s = programs.init_warm if warm_start else programs.init_cold
  step, evaluate_s = programs.step, programs.evaluate
  k_init, k_start, k_end = (jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys)
                            for i in range(3))
  state = init_s(k_init, frozen.params)
  start = np.asarray(evaluate_s(state, k_start))  # [S, E]
  curve = []
  for _ in range(iterations):
    state, metrics = step(state)
    curve.append(np.asarray(metrics["train/preference"])[:, 0] - 0.5)  # [S]
  end = np.asarray(evaluate_s(state, k_end))
  curves = np.stack(curve, axis=1) if curve else np.zeros((num_seeds, 0))
  results = []
  for s in range(num_seeds):
    estimate, interval = _estimate(end[s])
    begin, begin_interval = _estimate(start[s])
    results.append(ExploitabilityResult(estimate, interval, begin, begin_interval,
                                        curves[s].astype(np.float64), iterations,
                                        eval_episodes, int(frozen.num_iterates_per_seed)))
  return results


def load_frozen(run_dir: str | Path, target: str = "last", seed_index: int = 0,
                env: Env | None = None, deterministic: bool = True) -> FrozenPolicy:
  """Seed `seed_index` of a run as a frozen policy: `target` 'last' (its newest usable
  checkpoint), 'first' (its oldest kept one: a near-untrained policy, the measure's starting
  value) or 'mixture' (the uniform mixture of every checkpoint it kept, one drawn per
  episode: the time-averaged policy; how many depends on `keep_checkpoints` and
  `checkpoint_every`, see `steps`)."""
  if target not in TARGETS:
    raise ConfigError(f"exploitability target '{target}' is unknown; use one of {TARGETS}")
  ckpt_dir = find_checkpoint_dir(run_dir)
  run_path = ckpt_dir.parent
  config = read_run_config(run_path)
  steps = complete_steps(ckpt_dir, verify=True)
  if not steps:
    raise ConfigError(f"'{ckpt_dir}' holds no complete checkpoint")
  if not 0 <= seed_index < config.num_seeds:
    raise ConfigError(f"seed_index = {seed_index} is out of range: the run trained "
                      f"{config.num_seeds} seed(s), use 0..{config.num_seeds - 1}")
  chosen = {"first": steps[:1], "last": steps[-1:]}.get(target, steps)
  loaded = [saved_policy.load(run_path, config, step, seed_index, with_env=False, env=env)
            for step in chosen]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[one.params for one in loaded])
  return FrozenPolicy(loaded[0].networks, stacked, config.normalize_observations,
                      deterministic, tuple(one.step for one in loaded))


def load_frozen_seeds(run_dir: str | Path, target: str = "last", env: Env | None = None,
                      deterministic: bool = True) -> FrozenPolicy:
  """Every seed of a run as frozen policies, params leaves [S, M, ...] (`load_frozen` per
  seed, stacked), for `exploitability_over_seeds`."""
  config = read_run_config(find_checkpoint_dir(run_dir).parent)
  seeds = [load_frozen(run_dir, target, s, env, deterministic) for s in range(config.num_seeds)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[f.params for f in seeds])
  return seeds[0]._replace(params=stacked)


def run_exploitability(run_dir: str | Path, target: str = "last", *, iterations: int,
                       eval_episodes: int = 64, seed: int = 0, seed_index: int = 0,
                       config: Config | None = None, teacher: TeacherProtocol | None = None,
                       env: Env | None = None, warm_start: bool = False,
                       deterministic: bool = True) -> ExploitabilityResult:
  """`exploitability` of a run's last iterate or mixture (`load_frozen`), judged by the run's
  own teacher (or `teacher`), the responder trained with the run's config (or `config`: e.g.
  a smaller N); `seed` keys the responder; `warm_start` as in `exploitability`;
  `deterministic=False`: the frozen iterates sample their actions (as with a warm start
  against a teacher with hard answers they should, module docstring)."""
  frozen = load_frozen(run_dir, target, seed_index, env, deterministic)
  run_config = read_run_config(Path(run_dir))
  config = config or run_config
  # The run's env and teacher (a reward-model or PPO run's teacher is its config's too).
  setup = build(run_config.replace(num_seeds=1), env, teacher)
  return exploitability(frozen, setup.env, setup.teacher, config, jax.random.PRNGKey(seed),
                        iterations=iterations, eval_episodes=eval_episodes,
                        warm_start=warm_start)
