"""What acting with a saved policy needs, and loading it without rebuilding training.

A run writes `RUN_DIR/policy.json` (`run_dir.POLICY`, atomically, next to config.json): the
network factory's arguments (`networks.make_networks`), whether observations are normalized,
and the package env's constructor arguments (matrix_game's number of outcomes). Training
builds its networks from the same `PolicySpec` (`setup.build`), so the description cannot
drift from the weights. Loading (`load`, `load_policy`, `spo-eval`) then rebuilds
the networks from it and reads only the policy's weights and the observation normalizer from
the checkpoint (an Orbax partial restore): no teacher is built, no labels file read, no
model refitted. A run written before policy.json existed has none: `read_spec` returns None
and the callers build the whole training setup from config.json as before.

A run trained on the user's own env object (`train(config, env=MyEnv())`) cannot rebuild it
from `config.env`, which is then only a label: policy.json records the object's class as
`user_env_class` ('module:qualname'; null for an env built from its registry name), and
loading such a run needs the env passed back (`load_policy(run_dir, env=MyEnv())`,
`spo-eval --env-class`). Without it, loading stops in one line naming the class, before the
checkpoint is opened; a given env whose observation or action size differs from the policy's
is refused the same way (`check_env_fits`). Files written before the field existed read as null:
they were all trained on registry envs (a user's env then had to borrow a registry name).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
from brax.envs.base import Env

from spo_jax import envs as envs_lib
from spo_jax import networks as nets
from spo_jax import run_dir as run_dir_lib
from spo_jax.checkpoint import (
    Checkpointer,
    complete_steps,
    find_checkpoint_dir,
    read_run_config,
    restore_usable,
)
from spo_jax.config import Config, ConfigError
from spo_jax.evaluate import PolicyParams, make_policy_factory, seed_slice
from spo_jax.iteration import policy_params

FORMAT = 1  # policy.json's layout version; a newer one is refused in one line


@dataclasses.dataclass(frozen=True)
class PolicySpec:
  """The network factory's arguments plus what acting and evaluating need besides weights."""

  observation_size: int
  action_size: int
  policy_hidden_sizes: tuple[int, ...]
  value_hidden_sizes: tuple[int, ...]
  activation: str
  init_log_std: float
  discrete: bool  # categorical policy over action_size actions, else tanh-Gaussian
  normalize_observations: bool
  env_kwargs: dict[str, Any]  # the package env's constructor arguments (`envs.make_env`)
  # 'module:qualname' of the user's own env object the run trained on (`envs.class_path`);
  # None when the env was built from `config.env` by name.
  user_env_class: str | None = None

  @classmethod
  def from_config(cls, config: Config, env: Env, observation_size: int,
                  env_kwargs: dict[str, Any], user_env_class: str | None = None) -> PolicySpec:
    return cls(observation_size, env.action_size, tuple(config.policy_hidden_sizes),
               tuple(config.value_hidden_sizes), config.activation, float(config.init_log_std),
               nets.has_discrete_actions(env), config.normalize_observations,
               dict(env_kwargs), user_env_class)

  def env_facts(self) -> tuple[int, int, bool]:
    """(observation size, action size, discrete): what an env must match to run this policy."""
    return self.observation_size, self.action_size, self.discrete

  def make_networks(self) -> nets.Networks:
    return nets.make_networks(self.observation_size, self.action_size,
                              self.policy_hidden_sizes, self.value_hidden_sizes,
                              self.activation, self.init_log_std, discrete=self.discrete)

  def to_json(self) -> str:
    return json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, indent=2) + "\n"

  @classmethod
  def from_json(cls, text: str, where: str) -> PolicySpec:
    try:
      data = json.loads(text)
      if data.get("format", 0) > FORMAT:
        raise ConfigError(f"'{where}' has format {data['format']}, newer than this spo_jax "
                          f"reads ({FORMAT}); load it with the spo_jax version that wrote it")
      fields = {f.name for f in dataclasses.fields(cls)}
      values = {k: v for k, v in data.items() if k in fields}
      for name in ("policy_hidden_sizes", "value_hidden_sizes"):
        values[name] = tuple(values[name])
      return cls(**values)
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as error:
      raise ConfigError(f"'{where}' is not a valid policy description ({error})") from error


def write_spec(run_path: Path, spec: PolicySpec) -> None:
  run_dir_lib.write_text_atomic(run_path / run_dir_lib.POLICY, spec.to_json())


def read_spec(run_path: Path) -> PolicySpec | None:
  """The run's policy description; None for a run written before policy.json existed."""
  path = Path(run_path) / run_dir_lib.POLICY
  if not path.exists():
    return None
  return PolicySpec.from_json(path.read_text(), str(path))


def check_env_fits(spec: PolicySpec, env: Env | None, run_path: Path, fix: str) -> None:
  """Before the checkpoint is opened: a run trained on a user's own env needs it back, and a
  given env must have the sizes the policy was built for. Raises `ConfigError` in one line;
  `fix` says how the caller passes an env (an argument, a flag)."""
  if env is None:
    if spec.user_env_class is not None:
      raise ConfigError(f"'{run_path}' was trained on your own environment "
                        f"{spec.user_env_class}, which cannot be rebuilt from its name; {fix}")
    return
  envs_lib.check_env(env)
  given = (envs_lib.observation_size(env), env.action_size, nets.has_discrete_actions(env))
  if given != spec.env_facts():
    trained_on = spec.user_env_class or "the env its config.json names"
    raise ConfigError(f"environment {envs_lib.class_path(env)} ({_in_words(*given)}) does not "
                      f"fit the policy of '{run_path}' ({_in_words(*spec.env_facts())}); pass "
                      f"the environment it was trained on ({trained_on})")


def check_resume_env(saved: PolicySpec, current: PolicySpec | None, run_path: Path) -> None:
  """Before a resume opens the checkpoint: the env now given must be the kind the run trained
  on, else Orbax would fail on mismatched shapes, or a run on a user's env would go on in
  the registry env its label names. `current`: the resuming setup's spec (None: checked
  before building, no env object given). Raises `ConfigError` in one line."""
  if saved.user_env_class is not None and (current is None or current.user_env_class is None):
    raise ConfigError(f"cannot resume '{run_path}': it was trained on your own environment "
                      f"{saved.user_env_class}; pass it again: train(config, env=..., "
                      "resume=True, run_dir=...)")
  if current is not None and saved.env_facts() != current.env_facts():
    raise ConfigError(f"cannot resume '{run_path}': its policy was trained for "
                      f"{_in_words(*saved.env_facts())}, the environment now has "
                      f"{_in_words(*current.env_facts())}; resume with the environment it "
                      f"was trained on ({saved.user_env_class or 'the env config.json names'})")


def _in_words(observation_size: int, action_size: int, discrete: bool) -> str:
  actions = f"{action_size} discrete actions" if discrete else f"action size {action_size}"
  return f"observation size {observation_size}, {actions}"


def abstract_policy_params(networks: nets.Networks, num_seeds: int) -> PolicyParams:
  """Shapes and dtypes of a run's PolicyParams with its leading seed axis [S, ...]."""
  def one(key):
    params = nets.init_params(networks, key)
    return PolicyParams(nets.normalizer_init(networks.observation_size), params.policy)

  return jax.eval_shape(jax.vmap(one), jax.random.split(jax.random.PRNGKey(0), num_seeds))


def restore_policy_params(checkpoint_dir: Path, networks: nets.Networks, num_seeds: int,
                          step: int | None = None) -> tuple[int, PolicyParams]:
  """(step, PolicyParams [S, ...]) read from the newest usable checkpoint (or `step`):
  only the policy's weights and the normalizer, the rest of the TrainState is not read."""
  abstract = abstract_policy_params(networks, num_seeds)
  # The checkpoint stores the TrainState's NamedTuples as dicts of their fields.
  wanted = {"params": {"policy": abstract.policy}, "normalizer": abstract.normalizer._asdict()}
  checkpointer = Checkpointer(checkpoint_dir)
  try:
    step, state, _ = restore_usable(checkpointer, wanted, step, partial=True)
  finally:
    checkpointer.close()
  return step, PolicyParams(nets.Normalizer(**state["normalizer"]), state["params"]["policy"])


class LoadedPolicy(NamedTuple):
  """A saved policy ready to act and be evaluated: `params` of one seed."""

  config: Config
  env: Env
  networks: nets.Networks
  make_policy: Any  # make_policy(params, deterministic=True) -> policy(obs, key=None)
  params: PolicyParams
  step: int
  teacher: Any = None  # the run's teacher when the old path built it; else None
  # The run trained on a user's own env object: `config.env` is only its label, not a
  # registry name (policy.json's `user_env_class`; in an old run, an env passed to `load`).
  user_env: bool = False


def load(run_path: Path, config: Config, step: int | None = None, seed_index: int = 0,
         with_env: bool = True, env: Env | None = None,
         fix: str = "pass an instance: spo_jax.load_policy(run_dir, env=...)") -> LoadedPolicy:
  """Load seed `seed_index` of a run: from policy.json without building training, or, for a
  run written before it, through `setup.build` of the saved config (teacher included).

  `env`: the environment to act in instead of the one `config.env` names (required for a run
  trained on a user's own env; `check_env`, whose message ends with `fix`). `with_env` False
  (and no `env`): the result's env is None (`load_policy` needs only the networks)."""
  run_path = Path(run_path)
  checkpoint_dir = run_path / run_dir_lib.CHECKPOINTS
  spec = read_spec(run_path)
  if spec is None:
    return _load_by_building(run_path, config, step, seed_index, env)
  check_env_fits(spec, env, run_path, fix)
  networks = spec.make_networks()
  step, params = restore_policy_params(checkpoint_dir, networks, config.num_seeds, step)
  if env is None and with_env:
    env = envs_lib.make_env(config.env, config.backend, **spec.env_kwargs)
  return LoadedPolicy(config, env, networks,
                      make_policy_factory(networks, spec.normalize_observations),
                      seed_slice(params, seed_index), step,
                      user_env=spec.user_env_class is not None)


def _load_by_building(run_path: Path, config: Config, step: int | None,
                      seed_index: int, env: Env | None = None) -> LoadedPolicy:
  from spo_jax.setup import build, over_seeds, seed_keys  # local: setup imports this module

  setup = build(config, env)
  init = over_seeds(setup.fns.init, config.num_seeds)
  checkpointer = Checkpointer(run_path / run_dir_lib.CHECKPOINTS)
  try:
    step, state, _ = restore_usable(checkpointer, jax.eval_shape(init, seed_keys(config)), step)
  finally:
    checkpointer.close()
  return LoadedPolicy(config, setup.env, setup.networks, setup.make_policy,
                      seed_slice(policy_params(state), seed_index), step, setup.teacher,
                      user_env=env is not None)


def load_policy(path: str | Path, deterministic: bool = True, step: int | None = None,
                seed_index: int = 0, env=None):
  """Load a trained policy from a run directory: `policy(obs, key=None) -> action`.

  `env`: required for a run trained on your own env object (`train(config, env=MyEnv())`;
  its policy.json names the class): pass an instance, whose observation and action sizes
  must be the policy's. Without it such a run is refused in one line naming the class,
  before the checkpoint is opened; with a registry env's run it is optional and only checked.

  Needs no code: the config saved beside the weights rebuilds the networks. A run of several
  seeds (`num_seeds`) holds one policy per seed; `seed_index` picks one. Without `step`, the
  newest checkpoint that matches its manifest and reads (`restore_usable`: a damaged newer one
  is skipped with a line on stderr); with `step`, exactly that one or a `CheckpointError`.
  A run with `policy.json` (this module) is loaded without building training:
  the networks come from that description and only the policy's weights and the normalizer
  are read, so a `learned` teacher is not refitted and its labels file may be gone. Older
  runs are loaded by building the saved config's setup, as before.
  Takes no lock: a run may still be writing the directory.
  """
  ckpt_dir = find_checkpoint_dir(path)
  run_dir = ckpt_dir.parent
  config = read_run_config(run_dir)
  if not complete_steps(ckpt_dir):
    raise ConfigError(f"'{ckpt_dir}' holds no complete checkpoint")
  if not 0 <= seed_index < config.num_seeds:
    raise ConfigError(f"seed_index = {seed_index} is out of range: the run trained "
                      f"{config.num_seeds} seed(s), use 0..{config.num_seeds - 1}")
  loaded = load(run_dir, config, step, seed_index, with_env=False, env=env)
  return loaded.make_policy(loaded.params, deterministic=deterministic)
