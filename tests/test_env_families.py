"""Env names by family (spo_jax/envs.py, `env_entry`, `canonical_env_name`): `brax:hopper` is
`hopper` wherever a name is accepted; an unknown name within a family is refused by
`spo-train` listing the family's names; the benchmark and reproduction commands refuse
families they cannot run, in one line with exit code 2, before anything is compiled. Nothing
here builds or compiles an env.
"""

import subprocess
import sys

import pytest

from spo_jax import bench, cli, envs
from spo_jax.config import ConfigError, validate
from spo_jax.learning_bench import cli as learning_cli
from spo_jax.learning_bench import plans as learning_plans
from spo_jax.presets import preset
from spo_jax.reproduce import cli as reproduce_cli


def test_brax_family_names_the_bare_env():
  assert envs.canonical_env_name("brax:hopper") == "hopper"
  assert envs.canonical_env_name("hopper") == "hopper"
  assert envs.canonical_env_name("gymnax:CartPole-v1") == "gymnax:CartPole-v1"
  assert envs.env_entry("brax:hopper") is envs.ENVS.get("hopper")
  assert envs.max_episode_length("brax:hopper") == envs.BRAX_EPISODE_LIMIT
  assert preset("brax:hopper") == preset("hopper")  # the preset of the bare name
  assert preset("brax:reacher").env == "reacher"  # no preset: the defaults, bare name
  validate(preset("hopper").replace(env="brax:hopper"))  # a Config may keep the family name


def test_spo_train_records_the_bare_name():
  command = cli.parse_train_args(["--env", "brax:hopper", "--num-envs", "8"])
  assert command.config == preset("hopper").replace(num_envs=8)


def test_an_unknown_brax_env_lists_brax_names():
  with pytest.raises(ConfigError, match="not one of Brax's environments; available: brax:ant"):
    validate(preset("brax:point_reach"))


@pytest.mark.parametrize("name, module, listed", [
    ("gymnax:Cartpole-v1", "gymnax", "gymnax:CartPole-v1, gymnax:Acrobot-v1"),
    ("playground:Cartpole", "mujoco_playground",
     "playground:CartpoleBalance, playground:CartpoleBalanceSparse")])
def test_cli_refuses_an_unknown_name_within_a_family_with_exit_code_2(name, module, listed,
                                                                      tmp_path):
  pytest.importorskip(module)  # the families' optional extras, in `test`: CI runs both
  out = subprocess.run([sys.executable, "-m", "spo_jax.cli", "--env", name,
                        "--run-dir", str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and listed in lines[0]
  assert not (tmp_path / "run").exists()


def test_an_unknown_family_lists_the_known_ones():
  with pytest.raises(ConfigError,
                     match="unknown environment family 'dmc'.*brax, gymnax, playground"):
    envs.env_entry("dmc:cartpole")


@pytest.mark.parametrize("name", ["gymnax:CartPole-v1", "playground:CartpoleBalance",
                                  "dmc:cartpole"])
def test_bench_refuses_other_families_in_one_line(name, tmp_path, capsys):
  code = bench.main(["--env", name, "--out", str(tmp_path / "bench.json")])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and f"spo-bench does not run '{name}'" in err[0]
  assert "Brax's (NAME or brax:NAME)" in err[0]
  assert list(tmp_path.iterdir()) == []


def test_learning_bench_refuses_gymnax_and_reads_brax_names(tmp_path, capsys):
  code = learning_cli.main(["--env", "gymnax:CartPole-v1", "--out", str(tmp_path / "out")])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1
  assert "spo-learning-bench does not run 'gymnax:CartPole-v1' (the 'gymnax' family)" in err[0]
  assert list(tmp_path.iterdir()) == []
  plan = learning_plans.make_plan("brax:inverted_pendulum", None, 100_000, "0", "spo", None)
  assert plan["env"] == "inverted_pendulum"


def test_reproduce_refuses_gymnax_in_one_line(tmp_path, capsys):
  code = reproduce_cli.main(["--question", "q2", "--env", "gymnax:CartPole-v1", "--out",
                             str(tmp_path / "out"), "--dry-run"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1
  assert "spo-reproduce does not run 'gymnax:CartPole-v1'" in err[0]
  assert list(tmp_path.iterdir()) == []
