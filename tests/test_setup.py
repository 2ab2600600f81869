"""spo_jax/setup.py: the seed axis (keys, `over_seeds`, `init_over_seeds`) and what `build`
makes from a config, on the package's tiny envs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax.setup import build, init_over_seeds, over_seeds, seed_keys

TINY = spo_jax.preset("point_reach").replace(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9)


def _qr_operand_ranks(closed_jaxpr) -> list[int]:
  """The rank of every QR factorisation's operand in a program, nested programs included
  (scan and jit bodies): 2 is one matrix, 3 a batch of them."""
  ranks = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "qr":
        ranks.append(eqn.invars[0].aval.ndim)
      for value in eqn.params.values():
        for sub in value if isinstance(value, tuple | list) else (value,):
          if hasattr(sub, "eqns"):
            walk(sub)
          elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
            walk(sub.jaxpr)

  walk(closed_jaxpr.jaxpr)
  return ranks


def test_seed_i_starts_like_a_single_run_with_seed_plus_i():
  keys = seed_keys(TINY.replace(seed=5, num_seeds=3))
  # seed i of the run is PRNGKey(5 + i): [[0, 5], [0, 6], [0, 7]] for threefry keys.
  np.testing.assert_array_equal(keys, np.stack([jax.random.PRNGKey(s) for s in (5, 6, 7)]))


def test_over_one_seed_keeps_the_seed_axis_without_vmap():
  double = lambda x, y: (2 * x, x + y)
  out = over_seeds(double, 1)(jnp.array([[1.0, 2.0]]), jnp.array([[3.0, 4.0]]))
  # One seed: x = [1, 2], y = [3, 4] -> ([2, 4], [4, 6]), each with its axis of 1 put back.
  np.testing.assert_array_equal(out[0], [[2.0, 4.0]])
  np.testing.assert_array_equal(out[1], [[4.0, 6.0]])


def test_one_seed_keeps_its_conds_and_several_turn_them_into_selects():
  # The rollout's early exit is a `cond`; under vmap a `cond` on a batched predicate becomes
  # a `select` that runs both branches, which is why one seed is not vmapped.
  fn = lambda x: jax.lax.cond(x[0] > 0, lambda: x * 2, lambda: x)
  names = lambda s: {e.primitive.name
                     for e in jax.make_jaxpr(over_seeds(fn, s))(jnp.ones((s, 2))).jaxpr.eqns}
  assert "cond" in names(1)
  assert "cond" not in names(2) and "select_n" in names(2)


@pytest.mark.parametrize("reward_source", ["spo", "reward_model"])
def test_seeds_are_initialised_without_batched_qr(reward_source):
  # The orthogonal initialisers factorise a Gaussian matrix by QR. Vmapped over seeds (or
  # over the reward model's ensemble), those become batched QR calls, whose CPU kernel waits
  # on the thread pool it runs on and can deadlock a 2-core machine (init_over_seeds).
  setup = build(TINY.replace(num_seeds=3, reward_source=reward_source))
  keys = seed_keys(setup.config)
  ranks = _qr_operand_ranks(jax.make_jaxpr(init_over_seeds(setup.fns.init, 3))(keys))
  # At least the policy's and the value network's two Dense layers each (more with the
  # reward model), so the check below is not vacuous.
  assert len(ranks) >= 4
  assert set(ranks) == {2}, f"batched QR in the seeds' init: operand ranks {ranks}"
  # The plain vmap this replaces does batch them: the check can tell the two apart.
  assert 3 in _qr_operand_ranks(jax.make_jaxpr(jax.vmap(setup.fns.init))(keys))


def test_init_over_seeds_draws_what_each_single_seed_run_draws():
  setup = build(TINY.replace(num_seeds=3, reward_source="reward_model"))
  keys = seed_keys(setup.config)
  together = jax.jit(init_over_seeds(setup.fns.init, 3))(keys)
  vmapped = jax.jit(jax.vmap(setup.fns.init))(keys)
  for s in range(3):
    alone = jax.jit(setup.fns.init)(keys[s])
    for x, y, z in zip(jax.tree.leaves(alone), jax.tree.leaves(together),
                       jax.tree.leaves(vmapped), strict=True):
      # Bitwise: one seed at a time is the same arithmetic as the single run, and the same
      # values the vmapped init drew before (so no run's numbers changed with it).
      np.testing.assert_array_equal(x, y[s])
      np.testing.assert_array_equal(y[s], z[s])
