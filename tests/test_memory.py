"""spo_jax/memory.py: the per-iteration memory estimate, worked by hand, and the refusal
that names what to lower."""

import jax
import pytest

from spo_jax.config import ConfigError
from spo_jax.memory import available_memory, check_memory, iteration_bytes
from spo_jax.presets import preset


def test_memory_estimate_by_hand():
  """point_reach: obs 4, action 2, so a step stores 4 + 2 + 8 = 14 floats = 56 bytes.
  S = 2, N = 10, H = 8, queue 6: rollout 2*8*10*56 = 8960 bytes, preferences
  2*10*(10 + 6)*4 = 1280 bytes; 10240 bytes in all. With 3 random opponents instead of all
  pairs: 2*10*3*4 = 240. PPO on the env reward compares nothing."""

  config = preset("point_reach").replace(num_seeds=2, num_envs=10, episode_length=8,
                                         queue_size=6)
  assert iteration_bytes(config, 4, 2) == {"rollout": 8960, "preferences": 1280}
  assert iteration_bytes(config.replace(num_opponents=3), 4, 2)["preferences"] == 240
  assert iteration_bytes(config.replace(reward_source="ground_truth"), 4, 2)[
      "preferences"] == 0
  check_memory(config, 4, 2, available=(10240, "test"))  # fits exactly
  with pytest.raises(ConfigError, match="lower num_seeds to at most 1 "):
    check_memory(config, 4, 2, available=(10239, "test"))
  with pytest.raises(ConfigError, match="lower num_envs or episode_length"):
    check_memory(config, 4, 2, available=(5000, "test"))


def test_queue_or_envs_named_when_the_preference_matrix_dominates():
  """S = 1, N = 10, H = 1, queue 1000: rollout 1*1*10*56 = 560 bytes, preferences
  1*10*(10 + 1000)*4 = 40,400 bytes. One seed does not fit 20,000 bytes and the matrix
  dominates: lower queue_size. With queue 0 and N = 100 (rollout 5,600, preferences
  1*100*100*4 = 40,000): lower num_envs."""
  config = preset("point_reach").replace(num_seeds=1, num_envs=10, episode_length=1,
                                         queue_size=1000)
  assert iteration_bytes(config, 4, 2) == {"rollout": 560, "preferences": 40_400}
  with pytest.raises(ConfigError, match=r"lower queue_size \(now 1000"):
    check_memory(config, 4, 2, available=(20_000, "test"))
  wide = config.replace(num_envs=100, queue_size=0)
  assert iteration_bytes(wide, 4, 2) == {"rollout": 5_600, "preferences": 40_000}
  with pytest.raises(ConfigError, match="lower num_envs .the N x"):
    check_memory(wide, 4, 2, available=(20_000, "test"))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an accelerator reports its own")
def test_available_memory_on_this_cpu_is_the_hosts_ram():
  limit, where = available_memory(preset("point_reach"))
  assert where == "host RAM" and limit > 2**30
