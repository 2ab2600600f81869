"""The best-response exploitability estimate (spo_jax/best_response.py) and the mixture of
saved iterates it is measured on.

point_reach (obs = [position (2), target (2)], the point moves 0.1 x action, reward =
-distance) judged by the `constraint` teacher on the action norm: a trajectory that never
takes an action of norm > 1 beats one that does; between two of the same kind the higher
return wins. A frozen policy that walks to the target at full speed violates on every step:
any responder that keeps its actions small beats it from every start (exploitable). One that
walks to the target at a speed inside the constraint is hard to beat: a responder can only
match it. Both frozen policies are hand-set networks, so the test does not depend on
training them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax import best_response as br
from spo_jax import networks as nets
from spo_jax.evaluate import PolicyParams
from spo_jax.setup import build

HIDDEN = (16,)
CONFIG = spo_jax.preset("point_reach").replace(
    num_envs=32, episode_length=12, policy_hidden_sizes=HIDDEN, value_hidden_sizes=HIDDEN,
    num_minibatches=2, learning_rate=3e-3, num_timesteps=10**6, checkpoint_every=1,
    teacher="constraint", teacher_quantity="action_norm", teacher_threshold=1.0)


def _policy(kernel_in: np.ndarray, kernel_out: np.ndarray, bias_out: np.ndarray
            ) -> PolicyParams:
  """A point_reach policy network with the given weights (the rest zero); observations are
  not normalized (the frozen policies below set normalize_observations False)."""
  networks = nets.make_networks(4, 2, HIDDEN, HIDDEN)
  params = nets.init_params(networks, jax.random.PRNGKey(0)).policy
  k0 = np.zeros((4, HIDDEN[0]), np.float32)
  k0[:, :kernel_in.shape[1]] = kernel_in
  k1 = np.zeros((HIDDEN[0], 2), np.float32)
  k1[:kernel_out.shape[0], :] = kernel_out
  mlp = {"Dense_0": {"kernel": jnp.asarray(k0), "bias": jnp.zeros(HIDDEN[0])},
         "Dense_1": {"kernel": jnp.asarray(k1), "bias": jnp.asarray(bias_out, jnp.float32)}}
  policy = {"params": {"MLP_0": mlp, "log_std": params["params"]["log_std"]}}
  return PolicyParams(nets.normalizer_init(4), policy)


def _constant(action) -> PolicyParams:
  """Mean = arctanh(action) whatever the observation: the env action is `action`."""
  return _policy(np.zeros((4, 1)), np.zeros((1, 2)), np.arctanh(np.asarray(action)))


def _to_target(speed: float) -> PolicyParams:
  """Hidden unit d = tanh(10 (target_d - position_d)), about the sign of the difference;
  mean_d = arctanh(speed) x that: each coordinate moves towards the target at `speed`
  (action tanh(mean) <= speed per coordinate, norm <= sqrt(2) speed) until close to it."""
  kernel_in = 10.0 * np.asarray([[-1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
  return _policy(kernel_in, np.arctanh(speed) * np.eye(2), np.zeros(2))


def _frozen(*params: PolicyParams) -> br.FrozenPolicy:
  networks = nets.make_networks(4, 2, HIDDEN, HIDDEN)
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
  return br.FrozenPolicy(networks, stacked, normalize_observations=False, deterministic=True)


def test_mixture_draws_each_episode_one_iterate_uniformly():
  """Three iterates with constant actions (-0.5, 0, +0.5 in both coordinates): the action
  tells which iterate acted. 3000 episodes, fixed key: every episode keeps its iterate over
  two steps with different step keys, the iterate is the one `frozen_policy_fn` reports, and
  the counts pass a chi-square test of uniformity (2 degrees of freedom; 13.8 is the 0.999
  quantile). A mixture that always used iterate 0, or drew anew each step, fails."""
  levels = np.asarray([-0.5, 0.0, 0.5])
  frozen = _frozen(*[_constant([a, a]) for a in levels])
  episodes = 3000
  policy_fn, index = br.frozen_policy_fn(frozen, jax.random.PRNGKey(3), episodes)
  obs = jax.random.normal(jax.random.PRNGKey(4), (episodes, 4))
  picked = []
  for step in range(2):
    raw, _ = policy_fn(obs, jax.random.PRNGKey(10 + step))
    action = np.tanh(np.asarray(raw))[:, 0]
    picked.append(np.argmin(np.abs(action[:, None] - levels[None, :]), axis=1))
  np.testing.assert_array_equal(picked[0], picked[1])
  np.testing.assert_array_equal(picked[0], np.asarray(index))
  counts = np.bincount(picked[0], minlength=3)
  chi2 = float(np.sum((counts - episodes / 3) ** 2 / (episodes / 3)))
  assert chi2 < 13.8, counts
  assert counts.min() > 0.28 * episodes


def test_mixture_indices_exact_with_a_fixed_key():
  """The draw is jax.random.randint: the same key gives the same indices, all in range."""
  a = br.mixture_indices(jax.random.PRNGKey(0), 64, 5)
  b = br.mixture_indices(jax.random.PRNGKey(0), 64, 5)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (64,) and int(a.min()) >= 0 and int(a.max()) <= 4
  assert len(set(np.asarray(a).tolist())) == 5


def _estimate(frozen: br.FrozenPolicy, iterations: int) -> br.ExploitabilityResult:
  setup = build(CONFIG)
  return br.exploitability(frozen, setup.env, setup.teacher, CONFIG, jax.random.PRNGKey(0),
                           iterations=iterations, eval_episodes=128)


def test_a_violating_walker_is_exploited_a_compliant_one_is_not():
  """Walking at 0.99 per coordinate (action norm 1.4 > 1 on every step): the untrained
  responder (pre-tanh noise of std 0.6) takes no action of norm > 1 in a few of its episodes,
  which win; the others violate too and mostly lose on return: start about 0.1 (measured
  0.10 at this key). After 30 iterations it keeps its actions small and wins nearly every
  pair: estimate > 0.3 and at least 0.2 above the start (the most is 0.5; measured 0.45).
  Walking at 0.6 per coordinate (norm 0.85, never violating): the untrained responder
  mostly violates and loses (start < -0.2, measured -0.38) and the trained one at best
  matches it: estimate < 0.1 (measured -0.34). A reward with the wrong sign, a frozen
  opponent other than the one given, or a responder that does not learn fails one."""
  fast = _estimate(_frozen(_to_target(0.99)), 30)
  assert fast.start < 0.25, fast.start
  assert fast.estimate > 0.3, fast
  assert fast.estimate > fast.start + 0.2
  assert fast.interval[0] < fast.estimate < fast.interval[1]
  assert len(fast.curve) == 30 and fast.curve[-5:].mean() > fast.curve[:5].mean() + 0.1

  compliant = _estimate(_frozen(_to_target(0.6)), 30)
  assert compliant.start < -0.2, compliant.start
  assert compliant.estimate < 0.1, compliant


def test_mixture_of_a_run_dir_and_its_exploitability(tmp_path):
  """A 3-iteration run saving every iteration and keeping every checkpoint: 'mixture' holds
  its 3 iterates in step order, 'last' the newest; `run_exploitability` runs end to end and
  reports the mixture's size. keep_checkpoints = 2 keeps only 2 iterates."""
  config = CONFIG.replace(max_iterations=3, keep_checkpoints=0, eval_every=10)
  spo_jax.train(config, run_dir=tmp_path / "all")
  mixture = br.load_frozen(tmp_path / "all", "mixture")
  assert mixture.steps == (1, 2, 3) and mixture.num_iterates == 3
  assert br.load_frozen(tmp_path / "all", "last").steps == (3,)
  spo_jax.train(config.replace(keep_checkpoints=2), run_dir=tmp_path / "two")
  assert br.load_frozen(tmp_path / "two", "mixture").steps == (2, 3)
  result = br.run_exploitability(tmp_path / "all", "mixture", iterations=1, eval_episodes=8)
  assert result.num_iterates == 3 and result.iterations == 1
  assert -0.5 <= result.start <= 0.5 and -0.5 <= result.estimate <= 0.5
  with pytest.raises(spo_jax.ConfigError, match="target"):
    br.load_frozen(tmp_path / "all", "average")


def test_seeds_vmapped_each_face_their_own_frozen_policy():
  """Two seeds in one compiled call, seed 0 against the violating walker and seed 1 against
  the compliant one (params [S, M, ...]): with no training, each seed's start equals the
  single-seed measurement with its key (so seed s really faces policy s)."""
  setup = build(CONFIG)
  fast, compliant = _frozen(_to_target(0.99)), _frozen(_to_target(0.6))
  both = fast._replace(params=jax.tree.map(lambda a, b: jnp.stack([a, b]), fast.params,
                                           compliant.params))
  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  together = br.exploitability_over_seeds(both, setup.env, setup.teacher, CONFIG, keys,
                                          iterations=0, eval_episodes=64)
  alone = [br.exploitability(f, setup.env, setup.teacher, CONFIG, k, iterations=0,
                             eval_episodes=64) for f, k in zip((fast, compliant), keys,
                                                                strict=True)]
  assert [r.start for r in together] == pytest.approx([r.start for r in alone], abs=1e-6)
  assert together[0].start > together[1].start + 0.1


def _quiet(params: PolicyParams, log_std: float = -6.0) -> PolicyParams:
  """`params` whose samples are their mode up to pre-tanh noise of std exp(log_std)."""
  policy = params.policy["params"]
  quiet = {**policy, "log_std": jnp.full_like(policy["log_std"], log_std)}
  return params._replace(policy={"params": quiet})


def _duel(a: br.FrozenPolicy, b: br.FrozenPolicy, setup, key, episodes: int = 128) -> float:
  """Mean P(episode of a > episode of b) - 1/2 over paired episodes from independent resets."""
  keys = jax.random.split(key, 5)
  policy_a, _ = br.frozen_policy_fn(a, keys[0], episodes)
  policy_b, _ = br.frozen_policy_fn(b, keys[1], episodes)
  horizon = CONFIG.episode_length
  run_a = spo_jax.rollout(setup.env, policy_a, keys[2], episodes, horizon, setup.teacher)
  run_b = spo_jax.rollout(setup.env, policy_b, keys[3], episodes, horizon, setup.teacher)
  return float(jnp.mean(br.paired_preferences(setup.teacher, run_a, run_b, keys[4])[0])) - 0.5


def test_warm_start_copies_the_policy_and_its_normalizer():
  """A warm responder is the frozen policy's last iterate: network AND observation statistics.

  The frozen walker (0.6 per coordinate, always compliant; samples = its mode, log_std -6)
  normalizes its observations with a mean of 1 on the TARGET coordinates only, so it walks
  towards target - 1. Judged by the constraint teacher (both comply, so the higher return
  wins), a warm copy faces itself from independent reset states: start near 0 (|start| <
  0.15). The same network on identity statistics (what a copy without the normalizer would
  be) walks to the true target and beats the frozen walker by more than 0.15, and the cold
  responder (fresh network) starts below -0.2: a copy that missed either part would not
  start near 0."""
  config = CONFIG.replace(normalize_observations=True)
  setup = build(config)
  shifted = nets.Normalizer(jnp.asarray([0.0, 0.0, 1.0, 1.0]), jnp.ones(4), jnp.asarray(1e6))
  networks = nets.make_networks(4, 2, HIDDEN, HIDDEN)

  def frozen_of(params: PolicyParams) -> br.FrozenPolicy:
    stacked = jax.tree.map(lambda x: jnp.asarray(x)[None], params)
    return br.FrozenPolicy(networks, stacked, normalize_observations=True, deterministic=True)

  walker = frozen_of(_quiet(_to_target(0.6))._replace(normalizer=shifted))
  key = jax.random.PRNGKey(0)
  warm = br.exploitability(walker, setup.env, setup.teacher, config, key, iterations=0,
                           eval_episodes=128, warm_start=True)
  assert abs(warm.start) < 0.15, warm.start
  assert _duel(frozen_of(_quiet(_to_target(0.6))), walker, setup, key) > 0.15
  cold = br.exploitability(walker, setup.env, setup.teacher, config, key, iterations=0,
                           eval_episodes=128)
  assert cold.start < -0.2, cold.start


def test_warm_start_trains_from_the_copy():
  """The copied parameters go through PPO's update (their structure and dtypes must match
  the fresh state's, or the compiled iteration refuses them): two iterations run, and the
  estimate and the curve of 2 values are in [-1/2, 1/2]."""
  config = CONFIG.replace(normalize_observations=False)
  setup = build(config)
  frozen = _frozen(_quiet(_to_target(0.6), -1.0))
  result = br.exploitability(frozen, setup.env, setup.teacher, config, jax.random.PRNGKey(1),
                             iterations=2, eval_episodes=16, warm_start=True)
  assert -0.5 <= result.estimate <= 0.5 and len(result.curve) == 2
  assert all(-0.5 <= c <= 0.5 for c in result.curve)


def test_warm_start_refuses_a_responder_that_would_see_other_observations():
  """The frozen walkers act on raw observations; a responder config that normalizes them
  would run the copied network on other inputs: refused in one line naming the field."""
  setup = build(CONFIG)
  with pytest.raises(spo_jax.ConfigError, match="normalize_observations = False"):
    br.exploitability(_frozen(_to_target(0.6)), setup.env, setup.teacher,
                      CONFIG.replace(normalize_observations=True), jax.random.PRNGKey(0),
                      iterations=0, warm_start=True)


def test_responders_of_the_same_shapes_share_one_compiled_iteration():
  """Two frozen policies of the same shapes, each met by a responder from scratch and by one
  started as a copy (what the reproduction does for SPO's oldest and last iterates): one
  set of compiled functions serves all four, and the PPO iteration and the evaluation are
  each compiled once. Before, each call compiled its own."""
  config = CONFIG.replace(normalize_observations=False)
  setup = build(config)
  br.responder_programs.cache_clear()
  for frozen in (_frozen(_to_target(0.6)), _frozen(_constant([0.9, 0.9]))):
    for warm in (False, True):
      br.exploitability(frozen, setup.env, setup.teacher, config, jax.random.PRNGKey(2),
                        iterations=1, eval_episodes=8, warm_start=warm)
  info = br.responder_programs.cache_info()
  assert (info.misses, info.hits) == (1, 3)
  frozen = _frozen(_to_target(0.6))
  programs = br.responder_programs(setup.env, setup.teacher, frozen.networks, False, True,
                                   config, 1, 8)
  assert programs.step._cache_size() == 1 and programs.evaluate._cache_size() == 1
