"""Write a labels file for the 'learned' teacher from a simulated teacher.

  python scripts/make_labels.py --env point_reach --teacher oracle --num-pairs 2000 \\
      --horizon 32 --out labels.npz
  python scripts/make_labels.py --env point_reach --teacher 'mistake(bradley_terry)' \\
      --set teacher_epsilon=0.2 --set teacher_scale=10 --labels sampled --out noisy.npz

Rolls out 2 * num_pairs random-action episodes (raw action u ~ N(0, I), env action tanh(u))
of at most --horizon steps, folds each into its trajectory features and asks the teacher for
P(a > b) on disjoint pairs ('soft'), or for one Bernoulli(P) label per pair ('sampled').
Then train with

  spo-train --env point_reach --teacher learned --teacher-labels-file labels.npz

The file holds features_a [P, F], features_b [P, F], labels [P] in [0, 1], and
feature_names [F] (for people; the loader ignores it). Real human labels need only the same
feature layout: F = 2 + D + A + M features [return, length, mean observation (D),
mean |action| (A), per-metric sums (M)] per trajectory, computed with
`spo_jax.teachers.learned.TrajectoryFeatures` (or `batch_features`) on the trajectories the
rater compared; `labels` holds the rater's answers (1: a preferred, 0: b, 1/2: no preference).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

import spo_jax
from spo_jax.config import ConfigError
from spo_jax.teachers import env_spec, make_teacher
from spo_jax.teachers.labels import make_labels
from spo_jax.teachers.learned import feature_names


def _parse_set(items: list[str]) -> dict[str, object]:
  """['teacher_epsilon=0.2', 'teacher_raters=r.json'] -> {field: JSON value, else string}."""
  out = {}
  for item in items:
    field, sep, text = item.partition("=")
    if not sep or not field:
      raise ConfigError(f"--set {item!r} must look like FIELD=VALUE, e.g. teacher_epsilon=0.2")
    try:
      out[field] = json.loads(text)
    except json.JSONDecodeError:
      out[field] = text
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--env", default="point_reach", help="environment name")
  parser.add_argument("--teacher", default="oracle",
                      help="teacher expression, e.g. 'oracle' or 'mistake(bradley_terry)'")
  parser.add_argument("--num-pairs", type=int, default=2000, help="labelled pairs P")
  parser.add_argument("--horizon", type=int, default=32, help="episode length H")
  parser.add_argument("--labels", choices=("soft", "sampled"), default="soft",
                      help="'soft': P(a > b); 'sampled': one Bernoulli(P) label per pair")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="a teacher_* config field, e.g. teacher_epsilon=0.2 (repeatable)")
  parser.add_argument("--out", required=True, help="output .npz path")
  args = parser.parse_args(argv)

  try:
    config = spo_jax.Config.from_dict({"env": args.env, "teacher": args.teacher,
                                       "episode_length": args.horizon, "seed": args.seed,
                                       **_parse_set(args.set)})
    spo_jax.validate(config)
    if args.num_pairs < 1:
      raise ConfigError(f"--num-pairs = {args.num_pairs} must be >= 1")
    env = spo_jax.make_env(config.env, config.backend)
    spec = env_spec(env, config.episode_length, config.env)
    teacher = make_teacher(config, spec)
  except ConfigError as error:
    print(f"make_labels: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None

  start = time.perf_counter()
  features_a, features_b, labels = make_labels(
      env, teacher, args.num_pairs, config.episode_length, jax.random.PRNGKey(args.seed),
      labels=args.labels)
  names = np.asarray(feature_names(spec))
  out = args.out if args.out.endswith(".npz") else args.out + ".npz"
  np.savez(out, features_a=features_a, features_b=features_b, labels=labels,
           feature_names=names)
  print(f"wrote {out}: {len(labels)} pairs ({args.num_pairs - len(labels)} abstained), "
        f"F = {len(names)} features [{', '.join(names)}], mean label {labels.mean():.3f}, "
        f"{time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
  main()
