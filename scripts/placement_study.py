"""Reward placement study behind the defaults in docs/design.md ("Reward placement").

  python scripts/placement_study.py      # ~10 minutes on a 2-core CPU

SPO with the oracle teacher on the package's `balance` env with H = 1000, three seeds per
setting, stopping at evaluation return 950 or 300k env steps.
"""

import spo_jax

for placement, center in [("spread", True), ("terminal", True), ("spread", False)]:
  for seed in range(3):
    config = spo_jax.preset("balance").replace(
        episode_length=1000, num_timesteps=300_000, seed=seed, reward_placement=placement,
        center_rewards=center, eval_every=1, target_return=950, num_eval_envs=8)
    metrics = spo_jax.train(config).metrics
    print(f"placement={placement} centred={center} seed={seed} steps={metrics['step']} "
          f"iterations={metrics['iteration']} eval_return={metrics['eval/episode_reward']:.0f}",
          flush=True)
