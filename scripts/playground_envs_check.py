"""Build every MuJoCo Playground DM Control env through spo_jax and print its sizes, episode
limit and metric count (from an abstract reset: nothing is compiled), or why it failed.

    python scripts/playground_envs_check.py

Needs the `playground` extra. docs/envs.md quotes its result ("Which envs were run").
"""

import time

from spo_jax import envs, playground_env


def main() -> None:
  for name in playground_env.suite_names()["dm_control_suite"]:
    start = time.perf_counter()
    try:
      env = envs.make_env(f"playground:{name}")
      spec = envs.env_spec(env, env.episode_limit, f"playground:{name}")
      print(f"{name:24s} obs {spec.observation_size:4d} act {spec.action_size:3d} "
            f"limit {env.episode_limit} metrics {len(spec.metric_names)} "
            f"{time.perf_counter() - start:.1f} s", flush=True)
    except Exception as error:  # noqa: BLE001 (report every env, whatever fails)
      print(f"{name:24s} FAILED {type(error).__name__}: {str(error)[:200]}", flush=True)


if __name__ == "__main__":
  main()
