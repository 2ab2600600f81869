"""Learning benchmark (`spo-learning-bench`): Brax PPO, our PPO on the env reward, and SPO,
side by side. The command line's help (spo_jax/learning_bench/cli.py) describes the method.

  settings  Brax PPO's published settings per env and their scaling to our N (`SETTINGS`)
  plans     arguments checked and contenders resolved, machine and versions (`make_plan`)
  running   OUT checked on a resume, one subprocess per run, the run itself (`run_one`)
  analysis  final returns, returns at equal env steps, wall time, ratios (`summarize`)
  report    curves.csv, summary.csv and summary.md (`markdown`, `write_outputs`)
  figures   curves.png (`plot`)
  cli       the argument parser and `main`

The names below are re-exported so that `from spo_jax.learning_bench import X` and
`learning_bench.X` keep working as when this was one module.
"""

from spo_jax.checkpoint import write_text_atomic
from spo_jax.learning_bench.analysis import GRID_FRACTIONS, interpolate, summarize
from spo_jax.learning_bench.cli import build_parser, main
from spo_jax.learning_bench.figures import COLOURS, PLOT_POINTS, plot
from spo_jax.learning_bench.plans import (
    CONTENDERS,
    OURS,
    BenchError,
    describe_machine,
    make_plan,
    our_config,
    parse_contenders,
    parse_seeds,
    resolve_backend,
    versions,
)
from spo_jax.learning_bench.report import markdown, write_outputs
from spo_jax.learning_bench.running import (
    load_runs,
    prepare_out,
    run_one,
    run_order,
    run_path,
)
from spo_jax.learning_bench.settings import (
    SETTINGS,
    BraxPPOSettings,
    brax_evaluation,
    brax_kwargs,
    brax_steps_per_training_step,
    brax_total_steps,
    scaled_batch_size,
)

# The name `prepare_out` had while it was private to this package; tests still call it.
_prepare_out = prepare_out

__all__ = [
    "COLOURS", "CONTENDERS", "GRID_FRACTIONS", "OURS", "PLOT_POINTS", "SETTINGS", "BenchError",
    "BraxPPOSettings", "brax_evaluation", "brax_kwargs", "brax_steps_per_training_step",
    "brax_total_steps", "build_parser", "describe_machine", "interpolate", "load_runs", "main",
    "make_plan", "markdown", "our_config", "parse_contenders", "parse_seeds", "plot",
    "prepare_out", "resolve_backend", "run_one", "run_order", "run_path", "scaled_batch_size",
    "summarize", "versions", "write_outputs", "write_text_atomic",
]
