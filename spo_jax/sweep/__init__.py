"""Sweeps (`spo-sweep`, docs/sweeps.md): points x seeds, the traced fields of a group vmapped
in one compiled program, groups run one after another, resumable, shardable over a job array.

  plan     the sweep file and flags -> Plan (points, seeds) -> Groups
  run      a group in its run directory under the sweep directory, resumable
  results  results.csv (tidy), summary.csv (per point), the sorted table
  cli      the command line
"""

from spo_jax.sweep.plan import Group, Plan, make_groups, make_plan, plan_data

__all__ = ["Group", "Plan", "make_groups", "make_plan", "plan_data"]
