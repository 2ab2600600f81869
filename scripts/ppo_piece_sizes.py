"""The PPO update's time against its piece size, at hopper's sizes (H x N = 1000 x 256).

  python scripts/ppo_piece_sizes.py [--repeats 3] [--micro 8,32]

A minibatch is computed in pieces of p = N H / (M num_microbatches) slots (at least 512), and
only the pieces that hold valid steps run (spo_jax/ppo.py). Early in training, when episodes
end after tens of steps, a minibatch holds ~V / M valid steps: with p far above that, most of
each piece's compute is on empty slots. This times `ppo_update` (jitted, best of `repeats`)
with hopper's preset networks (policy 128x128, critic 256x256; obs 11, actions 3; M = 16
minibatches x 8 epochs) on synthetic data: episodes of 5-50 steps (early training) and of
1000 steps (every slot valid), for each num_microbatches.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spo_jax import networks as nets
from spo_jax import ppo

HORIZON, NUM_ENVS, OBS, ACT = 1000, 256, 11, 3


def batch(lengths: np.ndarray, key: jax.Array):
  mask = (np.arange(HORIZON)[:, None] < lengths[None, :]).astype(np.float32)
  k1, k2, k3, k4 = jax.random.split(key, 4)
  obs = jax.random.normal(k1, (HORIZON, NUM_ENVS, OBS))
  raw_action = jax.random.normal(k2, (HORIZON, NUM_ENVS, ACT))
  log_prob = -jnp.abs(jax.random.normal(k3, (HORIZON, NUM_ENVS)))
  rewards = jax.random.normal(k4, (HORIZON, NUM_ENVS))
  return obs, raw_action, log_prob, rewards, jnp.asarray(mask)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--micro", default="8,32")
  args = parser.parse_args()
  networks = nets.make_networks(OBS, ACT, (128, 128), (256, 256))
  params = nets.init_params(networks, jax.random.PRNGKey(0))
  optimizer = optax.adam(3e-4)
  opt_state = optimizer.init(params)
  normalizer = nets.normalizer_init(OBS)
  rng = np.random.default_rng(0)
  cases = {"episodes of 5-50 steps": rng.integers(5, 51, NUM_ENVS),
           "episodes of 1000 steps": np.full(NUM_ENVS, HORIZON)}
  print(f"{'case':24s} {'valid':>8s} {'micro':>6s} {'piece':>6s} {'compile s':>10s} "
        f"{'update s':>9s}")
  for name, lengths in cases.items():
    data = batch(lengths, jax.random.PRNGKey(1))
    for micro in (int(m) for m in args.micro.split(",")):
      hp = ppo.PPOHyperparams(discount=0.997, gae_lambda=0.95, clip_epsilon=0.3,
                              value_coef=0.5, entropy_coef=1e-3, normalize_advantages=True,
                              update_epochs=8, num_minibatches=16, normalize_observations=True,
                              num_microbatches=micro)
      piece, _ = ppo._piece_size(HORIZON * NUM_ENVS, hp)
      update = jax.jit(lambda p, o, d, k, hp=hp: ppo.ppo_update(
          p, o, optimizer, networks, normalizer, *d, k, hp))
      start = time.perf_counter()
      jax.block_until_ready(update(params, opt_state, data, jax.random.PRNGKey(2)))
      compile_s = time.perf_counter() - start
      times = []
      for r in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(update(params, opt_state, data, jax.random.PRNGKey(3 + r)))
        times.append(time.perf_counter() - start)
      print(f"{name:24s} {int(lengths.sum()):8,d} {micro:6d} {piece:6d} {compile_s:10.1f} "
            f"{min(times):9.3f}", flush=True)


if __name__ == "__main__":
  main()
