"""Regenerate docs/config.md from spo_jax/config.py (field docstrings and presets).

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
to reach return 1000 in about 30k env steps (docs/performance.md); the locomotion presets
have not yet been tuned for SPO. Fields not listed keep the defaults of the table below.
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
