"""The SPO paper's four questions, reproduced over many seeds (`spo-reproduce`).

  plans     which runs answer which question at which scale (`PLANS`, `plan_runs`)
  running   train and measure the runs, skipping finished ones (`execute`)
  analysis  tidy tables, IQM and stratified-bootstrap intervals (`collect`, `summarize`)
  figures   the PNG figures of each question (`figures`)
  report    CSVs, markdown tables, summary.md and docs/results.md's generated blocks
  cli       the argument parser and `main`
  extras    lazy imports of the `reproduce` extra (rliable, pandas, matplotlib)

Nothing is imported here, so `import spo_jax.reproduce.plans` stays light; the extra is
needed only by analysis, figures and report, and only when their functions run.
"""
