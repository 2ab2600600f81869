# ruff: noqa: E501  (the generated page has markdown table rows longer than a code line)
"""Regenerate docs/config.md from spo_jax/config.py (field docstrings) and spo_jax/presets.py.

  python scripts/gen_config_docs.py > docs/config.md
"""

import ast
import dataclasses
from pathlib import Path

import spo_jax
from spo_jax.config import Config

source = Path(spo_jax.config.__file__).read_text()
cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Config")
docs = {}
body = cls.body
for node, following in zip(body, body[1:], strict=False):
  if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
    docs[node.target.id] = " ".join(following.value.value.split())

defaults = Config()
print("""# Configuration

One frozen dataclass, `spo_jax.Config`; every field is also a `spo-train` flag. `validate`
checks every field and the derived sizes (e.g. `num_minibatches` must divide
`num_envs * episode_length`; `episode_length` may not exceed the env's episode) before
anything is compiled, and raises one `ConfigError` naming the field, its value and what is
allowed. Fields that set array shapes (`num_envs`, `episode_length`, network sizes,
`num_minibatches`, `update_epochs`, `num_opponents`, `queue_size`) recompile when changed.

This page is generated: `python scripts/gen_config_docs.py > docs/config.md`.

## Presets

`spo_jax.preset(env)` / `spo-train --env ENV` start from these; other flags override them.
PPO settings come from Brax's published PPO hyperparameters per environment (learning
rate, discount, entropy cost, epochs, minibatches, network widths), adapted to SPO's
batches of N whole episodes from reset. `inverted_pendulum` (the default run) is measured
to reach return 1000 in about 30k env steps (docs/performance.md). Fields not listed keep
the defaults of the table below.

### Where the locomotion presets' values come from

`halfcheetah` and `hopper` are tuned for a 2-core CPU and about 1M env steps per run, on
seed 100 (hopper's N = 8 runs also on seed 101; the benchmark reports seeds 0-2), one run per setting, with `spo-train`
(`--reward-source ground_truth` for PPO on the env reward; budgets and returns below are
evaluation returns, 16 deterministic episodes of 1000 steps). `walker2d`, `ant` and
`humanoid` are Brax's settings with N episodes per iteration, not yet tuned.

| value | why (measured) |
|---|---|
| N = 8 episodes per iteration (halfcheetah and hopper) | an iteration is N x 1000 env steps when episodes run to the horizon, so N sets the number of PPO updates a budget buys: N = 256 gave 4 updates in 1M steps and a return of 57.5 at 860k (halfcheetah, before this tuning). PPO on halfcheetah: N = 32 reached 1010 at 512k and 1621 at 1.02M; N = 16 reached 921 at 240k and 1555 at 512k; N = 16 with 64 minibatches 1034 at 256k, 1528 at 512k, 2797 at 1.01M; **N = 8** (16 minibatches of 500 steps) 1244 at 256k, 1987 at 504k, 2843 at 1M. SPO (segments of 50) at N = 8: 1255 at 256k, 2371 at 504k, 3665 at 1M, where SPO at N = 16 still scored about 0 at 250k (benchmark seeds 0-2, docs/performance.md). Data of the N = 8 and 64-minibatch runs: docs/results/locomotion/tuning/halfcheetah-seed100/. Hopper ends its early episodes after ~30 steps, so N = 32 still makes short iterations: PPO reached 2949 at 428k (and 1045 at 1.03M); at N = 8 (seed 100) 2979 at 505k and 3455 at 807k (stopped), with a dip to 257 at 252k, as unsteady; whole-episode SPO stood at N = 32 and N = 16 (938 at 489k, 1046 at 516k) and crept forward at N = 8 (1245 at 504k, 1417 at 1M, seed 100; seed 101 stood, 1000 at 952k). The preset moved from N = 32 to N = 8 with the whole-episode term (next rows). |
| H = 1000 | the task's own episode, so evaluation and training agree; N = 64 episodes of H = 250 (with `eval_episode_length` 1000) learned nothing as SPO in 160k steps (train return 4.4 per 250 steps). |
| `segment_length` = 50 (halfcheetah and hopper SPO) | halfcheetah (N = 16): whole-episode SPO scored -11.6 at 320k; with segments of 50 steps, 254 at 320k and 1846 at 608k (PPO, same N: 1555 at 512k). Hopper (N = 32), where segments did worse: whole episodes learned to stay up (938 at 489k, episodes of 1000 steps) but not to hop; segments of 250 the same (953 at 1.0M); whole episodes at N = 16 (16 minibatches) the same, 1046 at 516k (stopped at 559k; data in docs/results/locomotion/tuning/hopper-seed100/); segments of 100 hopped and fell after ~218 steps (712 at 600k, stopped); segments of 50 hopped forward but fell: centred with an unbegun segment neither asked nor beaten, 409 at 125k (stopped); uncentred, 640 at 545k, episodes of ~178 steps; centred with a begun segment beating an unbegun one (the rule now), 431 at 246k, episodes of ~143 steps (stopped). PPO on hopper, same N: 2949 at 428k (docs/design.md, "Segments"). At N = 8 segments of 100 alone hopped and fell too (784 at 601k, episodes of ~205 steps, seed 101); hopper now uses segments of 50 with `episode_weight` (next row). |
| `episode_weight` = 5 (hopper SPO; 0 for halfcheetah, which has no early termination) | hopper, N = 8, 1M env steps, tuning seeds 100 and 101 (data: docs/results/locomotion/tuning/hopper-seed100/ and hopper-seed101/, one `<name>.config.json` and `<name>.metrics.jsonl` per run). Segments of 50 with c = 5: **3,492 at 1.0M (seed 100; 1,361 at 252k, 2,110 at 502k) and 3,579 at 1.0M (seed 101; 2,935 at 254k, 3,312 at 503k)**. Segments of 100 with c = 3: seed 101 3,584 at 1.0M, but seed 100 stood without hopping (974 at 904k, stopped). Segments of 100 with c = 1: seed 100 hopped and fell (383 at 451k, episodes of ~209 steps, stopped). Whole episodes alone at the same N: 1,417 (seed 100) and 1,000 (seed 101). c = 5 is about 0.7 of the 1 / (1 − 0.997^50) = 7.2 segments that count at t = 0 (docs/design.md, "Segments and whole episodes together"). |
| `num_minibatches` = 16, `update_epochs` = 8 | minibatches of 500 slots (N = 8 x H = 1000 / 16), Brax's 8 epochs; equal shares of the valid steps, so short early iterations still make 16 x 8 gradient steps. |
| `backend` = spring (halfcheetah) | 10.5k raw physics steps/s at N = 64 on this CPU against 3.5k (generalized, the default) and 3.0k (positional); every contender of the benchmark uses it. Hopper keeps its default backend (generalized). |
| observation and advantage normalisation on | Brax's `normalize_observations=True`; advantages normalised over each iteration's valid steps (the package default); not varied in the tuning. |
| learning rate 3e-4, discount 0.95 / 0.997, entropy 1e-3, networks (128, 128) / (256, 256) | Brax's values, kept; `max_grad_norm` 0.5 against 10 made no clear difference on halfcheetah (921 vs 621 at 240k, one seed each). |

Commands of the tuning runs (2-core AMD EPYC, jax 0.10.2, brax 0.14.2, 2026-11-26; two or
three ran at once, so their wall times are not comparable and are not used above; each
table figure is an `eval/episode_reward` row of the run's `metrics.jsonl`):

```bash
# halfcheetah, PPO on the env reward (N = 64 was stopped at 512k: 48.9)
spo-train --env halfcheetah --backend spring --reward-source ground_truth --num-envs 32 --num-timesteps 1000000 --seed 100 --eval-every 4
spo-train --env halfcheetah --backend spring --reward-source ground_truth --num-envs 16 --num-minibatches 16 --max-grad-norm 0.5 --num-timesteps 500000 --seed 100 --eval-every 5   # and --max-grad-norm 10
# halfcheetah at N = 8 (PPO, SPO) and N = 16 with 64 minibatches (PPO), 1M env steps each
spo-train --env halfcheetah --reward-source ground_truth --num-envs 8 --num-minibatches 16 --seed 100 --eval-every-steps 50000
spo-train --env halfcheetah --reward-source spo --num-envs 8 --num-minibatches 16 --seed 100 --eval-every-steps 50000
spo-train --env halfcheetah --reward-source ground_truth --num-envs 16 --num-minibatches 64 --seed 100 --eval-every-steps 50000
# halfcheetah, SPO: whole episodes, short episodes, segments
spo-train --env halfcheetah --backend spring --reward-source spo --num-envs 16 --num-minibatches 16 --num-timesteps 600000 --seed 100 --eval-every 5
spo-train --env halfcheetah --backend spring --reward-source spo --num-envs 64 --episode-length 250 --num-minibatches 16 --num-timesteps 600000 --seed 100 --eval-every 5
spo-train --env halfcheetah --backend spring --reward-source spo --segment-length 50 --num-envs 16 --num-minibatches 16 --num-timesteps 600000 --seed 100 --eval-every 5
# hopper: PPO, then SPO on whole episodes and on segments (add --no-center-rewards for the uncentred run)
spo-train --env hopper --reward-source ground_truth --num-envs 32 --num-minibatches 16 --num-timesteps 1000000 --seed 100 --eval-every 5
spo-train --env hopper --reward-source spo --num-envs 32 --num-minibatches 16 --num-timesteps 1000000 --seed 100 --eval-every 5
spo-train --env hopper --reward-source spo --segment-length 50 --num-envs 32 --num-minibatches 16 --num-timesteps 1000000 --seed 100 --eval-every 5
spo-train --env hopper --reward-source spo --segment-length 250 --num-timesteps 1000000 --seed 100 --eval-every 5
spo-train --env hopper --reward-source spo --segment-length 100 --num-timesteps 1000000 --seed 100 --eval-every-steps 50000
spo-train --env hopper --reward-source spo --num-envs 16 --num-minibatches 16 --seed 100 --eval-every-steps 50000
# hopper at N = 8 (seeds 100 and 101; file names in tuning/hopper-seed10x/ in brackets)
spo-train --env hopper --reward-source ground_truth --num-envs 8 --num-minibatches 16 --num-timesteps 1000000 --seed 100 --eval-every-steps 50000   # [ppo-n8], stopped at 807k
spo-train --env hopper --reward-source spo --num-envs 8 --num-minibatches 16 --num-timesteps 1000000 --seed 100 --eval-every-steps 50000   # [spo-n8-whole]; seed 101 stopped at 952k
spo-train --env hopper --reward-source spo --num-envs 8 --num-minibatches 16 --num-timesteps 600000 --gae-lambda 1.0 --seed 101 --eval-every-steps 50000   # [spo-n8-whole-gae-lambda1]
spo-train --env hopper --reward-source spo --num-envs 8 --num-minibatches 16 --num-timesteps 600000 --segment-length 100 --seed 101 --eval-every-steps 50000   # [spo-n8-seg100]
spo-train --env hopper --reward-source spo --num-envs 8 --num-minibatches 16 --num-timesteps 1000000 --segment-length 100 --episode-weight 3 --seed 101 --eval-every-steps 50000   # [spo-n8-seg100-episode3]; seed 100 stopped at 904k
spo-train --env hopper --reward-source spo --num-envs 8 --num-minibatches 16 --num-timesteps 1000000 --segment-length 100 --episode-weight 1 --seed 100 --eval-every-steps 50000   # [spo-n8-seg100-episode1], stopped at 451k
spo-train --env hopper --reward-source spo --num-envs 8 --num-minibatches 16 --num-timesteps 1000000 --segment-length 50 --episode-weight 5 --seed 101 --eval-every-steps 50000   # [spo-n8-seg50-episode5], both seeds: the preset
```

The N = 8 hopper runs ran two at a time, one per core (`taskset -c 0` / `-c 1`), on 2026-11-27,
with other jobs (tests) sometimes on the same cores: their wall times are not comparable, their
returns at equal env steps are.

The hopper segment runs of 50 steps were made with the code of their time: "unbegun segment
neither asked nor beaten" is the first version of `segment_winrates`, "begun beats unbegun"
the current one. The raw physics rates (backend row) come from a throwaway script, not kept:
a jitted `lax.scan` of 200 `env.step` calls on N = 64 envs with uniform random actions,
returning a checksum of the observations (as `spo-bench`'s `raw` contender, which has no
backend flag), the faster of two calls after the compiling one; the machine was otherwise idle.

For an accelerator, the same settings scale by N: `spo-train --env halfcheetah --num-envs 256
--num-minibatches 32` keeps 8 epochs of 8000-slot minibatches (about 40 iterations in 10M
env steps); hopper likewise with `--num-envs 256 --num-minibatches 32`. On an H200 (one seed
each, the preset's spring backend, 10.24M env steps) SPO reached an evaluation return of
3,958 and PPO on the env reward 3,028, each in under three minutes (docs/performance.md,
"GPU"). Not run on a GPU: hopper, more seeds, the generalized backend.
""")
print("| preset | fields that differ from the defaults |")
print("|---|---|")
for name, cfg in spo_jax.PRESETS.items():
  diffs = [f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(Config)
           if f.name != "env" and getattr(cfg, f.name) != getattr(defaults, f.name)]
  print(f"| `{name}` | {', '.join(diffs)} |")
print()
print("## Fields")
print()
print("| field | flag | default | meaning |")
print("|---|---|---|---|")
for field in dataclasses.fields(Config):
  flag = "--" + field.name.replace("_", "-")
  print(f"| `{field.name}` | `{flag}` | `{getattr(defaults, field.name)!r}` "
        f"| {docs.get(field.name, '')} |")
