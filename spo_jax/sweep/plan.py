"""A sweep's plan: the points (config overrides) and seeds a sweep file or flags name, checked
and split into groups that each compile once.

  [sweep]                      # where and over which seeds
  out = "sweeps/lr"            # the sweep directory
  seeds = [0, 1, 2, 3]
  [base]                       # Config fields every point shares (env first picks its preset)
  env = "balance"
  num_timesteps = 200_000
  [grid]                       # the product of these values ...
  learning_rate = [3e-4, 1e-3]
  entropy_coef = [0.0, 0.01]
  # ... or a list of points instead of [grid]:
  # [[points]]
  # learning_rate = 3e-4

A group is the points whose configs differ only in traced fields (`iteration.traced_fields`):
its points x seeds train as one vmapped program, one compile. Any other difference (env,
num_envs, network sizes, teacher, ...) changes shapes or code and starts another group.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
from pathlib import Path
from typing import Any

try:
  import tomllib
except ModuleNotFoundError:  # Python 3.10
  import tomli as tomllib

from spo_jax.config import Config, ConfigError, validate
from spo_jax.host_loop import RunSet
from spo_jax.iteration import TRACED_FIELDS, traced_fields
from spo_jax.presets import default_config, preset

# Names a sweep refuses in [base], [grid] and [[points]], and why: the sweep sets them itself,
# or one process can hold only one value.
CANNOT_VARY = {
    "seed": "the sweep's seeds are [sweep] seeds (--seeds)",
    "num_seeds": "the sweep's seeds are [sweep] seeds (--seeds)",
    "run_dir": "a sweep has one directory, [sweep] out (--out)",
    "out": "a sweep has one directory, [sweep] out (--out)",
    "seeds": "the sweep's seeds are [sweep] seeds (--seeds)",
}
# Fields that may be set in [base] but cannot take several values in one sweep.
ONE_VALUE = {
    "deterministic": "XLA reads its flags once per process, so every group shares it",
}
_FIELDS = tuple(f.name for f in dataclasses.fields(Config))


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a sweep runs: `points` (each a dict of Config overrides on top of `base`) x
  `seeds`, written to `out`."""

  out: Path
  seeds: tuple[int, ...]
  base: dict[str, Any]
  points: tuple[dict[str, Any], ...]

  def canonical(self) -> str:
    """The plan as the sweep directory keeps it (plan.json): a resumed sweep must match."""
    # Points keep their fields' order: it orders the columns, and in a grid it numbers the
    # points (so reordering a grid's fields changes the plan).
    return json.dumps({"base": dict(sorted(self.base.items())), "points": list(self.points),
                       "seeds": list(self.seeds)}, indent=2)

  def label(self, index: int) -> str:
    """'learning_rate=0.001 entropy_coef=0.01': point `index`'s values."""
    return " ".join(f"{k}={_text(v)}" for k, v in self.points[index].items()) or "base"


@dataclasses.dataclass(frozen=True)
class Group:
  """Points that compile together: `config` is their shared config with num_seeds = points x
  seeds; `runs` the (point, seed) runs in point-major order (run r = local point r // S,
  seed r % S), which is also the order of the checkpoint's leading axis."""

  index: int
  points: tuple[int, ...]
  config: Config
  traced: tuple[str, ...]
  runs: RunSet

  @property
  def name(self) -> str:
    return f"g{self.index:03d}"


def _text(value: Any) -> str:
  return json.dumps(list(value) if isinstance(value, tuple) else value)


def _check_name(name: str, where: str, *, base: bool = False) -> None:
  if name in CANNOT_VARY:
    raise ConfigError(f"'{name}' in {where} cannot vary within a sweep: {CANNOT_VARY[name]}")
  if name not in _FIELDS:
    close = difflib.get_close_matches(name, _FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown field '{name}' in {where}{hint}; fields are Config's "
                      "(docs/config.md)")
  if name in ONE_VALUE and not base:
    raise ConfigError(f"'{name}' in {where} cannot vary within a sweep: {ONE_VALUE[name]}; "
                      "set it in [base]")


def _table(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
  value = data.get(key)
  if value is not None and not isinstance(value, kind):
    raise ConfigError(f"{where} must be a {'table' if kind is dict else 'list'}")
  return value


def parse_value(text: str) -> Any:
  """A flag's value as TOML reads it (1e-3 -> float, 64 -> int, [32, 32] -> list, true ->
  bool); anything TOML cannot read is a string (balance -> 'balance')."""
  try:
    return tomllib.loads(f"v = {text}")["v"]
  except tomllib.TOMLDecodeError:
    return text


def parse_list(text: str) -> list[Any]:
  """`--grid`'s values: a TOML array's items (`1e-4, 1e-3`, `[32], [64, 64]`), else the
  comma-separated items each read by `parse_value` (`balance,point_reach`)."""
  value = parse_value(f"[{text}]")
  if isinstance(value, list):
    return value
  return [parse_value(item.strip()) for item in text.split(",")]


def plan_data(path: str | Path | None, grid: list[str], sets: list[str], seeds: str | None,
              out: str | None) -> dict[str, Any]:
  """The sweep file's tables with the flags applied: `--grid FIELD=V1,V2` adds to [grid],
  `--set FIELD=V` to [base], `--seeds 0,1,2` and `--out DIR` replace [sweep]'s."""
  data: dict[str, Any] = {}
  if path is not None:
    path = Path(path)
    if not path.is_file():
      raise ConfigError(f"sweep file '{path}' does not exist")
    try:
      data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
      raise ConfigError(f"sweep file '{path}' is not valid TOML: {error}") from None
  unknown = sorted(set(data) - {"sweep", "base", "grid", "points"})
  if unknown:
    raise ConfigError(f"unknown table(s) {unknown} in the sweep file; tables are [sweep], "
                      "[base], [grid] and [[points]]")
  sweep = dict(_table(data, "sweep", dict, "[sweep]") or {})
  base = dict(_table(data, "base", dict, "[base]") or {})
  grid_table = _table(data, "grid", dict, "[grid]")
  grid_table = None if grid_table is None else dict(grid_table)
  for item in sets:
    name, value = _split(item, "--set")
    base[name] = parse_value(value)
  for item in grid:
    name, values = _split(item, "--grid")
    grid_table = {} if grid_table is None else grid_table
    grid_table[name] = parse_list(values)
  if seeds is not None:
    sweep["seeds"] = parse_value(f"[{seeds}]")
  if out is not None:
    sweep["out"] = out
  return {"sweep": sweep, "base": base, "grid": grid_table,
          "points": _table(data, "points", list, "[[points]]")}


def _split(item: str, flag: str) -> tuple[str, str]:
  name, sep, value = item.partition("=")
  if not sep or not name:
    raise ConfigError(f"{flag} '{item}' must read FIELD=VALUE")
  return name.strip(), value.strip()


def make_plan(data: dict[str, Any]) -> Plan:
  """Check the tables and expand the grid; every problem raises one `ConfigError`."""
  sweep, base, grid, points = data["sweep"], data["base"], data["grid"], data["points"]
  unknown = sorted(set(sweep) - {"out", "seeds"})
  if unknown:
    raise ConfigError(f"unknown key(s) {unknown} in [sweep]; keys are out and seeds")
  if not isinstance(sweep.get("out"), str) or not sweep["out"]:
    raise ConfigError("the sweep needs a directory: [sweep] out = \"DIR\" or --out DIR")
  seeds = sweep.get("seeds", [0])
  if (not isinstance(seeds, list) or not seeds
      or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31
                 for s in seeds)):
    raise ConfigError(f"[sweep] seeds = {seeds!r} must be a non-empty list of integers in "
                      "[0, 2^31 - 1]")
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f"[sweep] seeds = {seeds!r} repeats a seed")
  for name in base:
    _check_name(name, "[base]", base=True)
  if grid is not None and points is not None:
    raise ConfigError("the sweep file gives both [grid] and [[points]]; give one of them")
  if grid is None and points is None:
    raise ConfigError("the sweep names no points: give [grid] (--grid FIELD=V1,V2) or "
                      "[[points]]")
  if grid is not None:
    if not grid:
      raise ConfigError("the grid is empty: name at least one field in [grid]")
    for name, values in grid.items():
      _check_name(name, "[grid]")
      if not isinstance(values, list) or not values:
        raise ConfigError(f"grid field '{name}' = {values!r} must be a non-empty list of "
                          "values")
    names = list(grid)
    expanded = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
  else:
    if not points or not all(isinstance(p, dict) for p in points):
      raise ConfigError("[[points]] is empty: give at least one point")
    for i, point in enumerate(points):
      for name in point:
        _check_name(name, f"point {i}")
    expanded = [dict(p) for p in points]
  # TOML arrays come back as lists; configs hold tuples (hidden sizes).
  expanded = [{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
              for p in expanded]
  base = {k: tuple(v) if isinstance(v, list) else v for k, v in base.items()}
  plan = Plan(Path(sweep["out"]), tuple(seeds), base, tuple(expanded))
  if len(plan.points) * len(plan.seeds) > 4096:
    raise ConfigError(f"the sweep has {len(plan.points)} points x {len(plan.seeds)} seeds; "
                      "at most 4096 runs")
  return plan


def saved_plan(out: str | Path) -> Plan:
  """The plan a sweep directory was started with (its plan.json): --collect needs no file."""
  path = Path(out) / "plan.json"
  if not path.is_file():
    raise ConfigError(f"'{out}' holds no sweep (no plan.json)")
  try:
    data = json.loads(path.read_text())
    return make_plan({"sweep": {"out": str(out), "seeds": data["seeds"]}, "base": data["base"],
                      "grid": None, "points": data["points"]})
  except (ValueError, KeyError, TypeError) as error:
    raise ConfigError(f"'{path}' is not a sweep plan ({error})") from None


def point_config(plan: Plan, index: int) -> Config:
  """Point `index`'s config for one seed, validated; errors name the point."""
  merged = {**plan.base, **plan.points[index]}
  start = preset(merged["env"]) if isinstance(merged.get("env"), str) else default_config()
  try:
    config = Config.from_dict({**start.to_dict(), **merged, "seed": plan.seeds[0],
                               "num_seeds": 1})
    return validate(config)
  except (ConfigError, TypeError, ValueError) as error:
    raise ConfigError(f"point {index} ({plan.label(index)}): {error}") from None


def make_groups(plan: Plan) -> list[Group]:
  """The points split into groups by every non-traced field, in the order of their first
  points; each point validated (the first bad one raises, naming it)."""
  configs = [point_config(plan, i) for i in range(len(plan.points))]
  keys: dict[str, list[int]] = {}
  for i, config in enumerate(configs):
    shape_fields = config.to_dict()
    for name in traced_fields(config):
      shape_fields.pop(name)
    keys.setdefault(json.dumps(shape_fields, sort_keys=True, default=list), []).append(i)
  groups = []
  num_seeds = len(plan.seeds)
  for index, members in enumerate(keys.values()):
    first = configs[members[0]]
    traced = tuple(name for name in TRACED_FIELDS if name in traced_fields(first)
                   and len({getattr(configs[i], name) for i in members}) > 1)
    runs = RunSet(
        seeds=[seed for _ in members for seed in plan.seeds],
        values={name: [float(getattr(configs[i], name)) for i in members for _ in plan.seeds]
                for name in traced},
        tags=[{"point": i, **{k: _tag(v) for k, v in plan.points[i].items()}}
              for i in members for _ in plan.seeds])
    config = first.replace(num_seeds=len(members) * num_seeds, seed=plan.seeds[0])
    try:
      validate(config)
    except ConfigError as error:
      raise ConfigError(f"group {index} ({len(members)} points x {num_seeds} seeds): "
                        f"{error}") from None
    groups.append(Group(index, tuple(members), config, traced, runs))
  return groups


def _tag(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def parse_shard(text: str | None, environ: dict[str, str]) -> tuple[int, int]:
  """(i, n) from `--shard i/n`, else from SLURM's job array (SLURM_ARRAY_TASK_ID minus
  SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT), else (0, 1): the whole sweep."""
  if text is None:
    if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
      return 0, 1
    try:
      first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
      i, n = int(environ["SLURM_ARRAY_TASK_ID"]) - first, int(environ["SLURM_ARRAY_TASK_COUNT"])
    except ValueError:
      raise ConfigError("SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT are not integers; "
                        "pass --shard i/n") from None
    source = "SLURM's job array"
  else:
    left, sep, right = text.partition("/")
    try:
      i, n = int(left), int(right)
    except ValueError:
      raise ConfigError(f"--shard '{text}' must read i/n (e.g. 0/4)") from None
    if not sep:
      raise ConfigError(f"--shard '{text}' must read i/n (e.g. 0/4)")
    source = "--shard"
  if n < 1 or not 0 <= i < n:
    raise ConfigError(f"{source} gives shard {i}/{n}: need 0 <= i < n")
  return i, n


def shard_groups(groups: list[Group], shard: tuple[int, int]) -> list[Group]:
  """Shard i of n runs groups i, i + n, i + 2n, ..."""
  i, n = shard
  return [g for g in groups if g.index % n == i]
