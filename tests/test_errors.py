"""The ground-floor errors and field checks, and their re-export from config."""

from types import SimpleNamespace

import pytest

from spo_jax import config, errors


def test_config_re_exports_the_same_classes():
  assert config.ConfigError is errors.ConfigError
  assert issubclass(errors.ProtocolError, errors.ConfigError)


@pytest.mark.parametrize("value, words", [(True, "integer"), (0, "between 1"), (11, "and 10")])
def test_check_int_names_the_field(value, words):
  with pytest.raises(errors.ConfigError, match=f"'n' = {value!r} is invalid: .*{words}"):
    errors.check_int(SimpleNamespace(n=value), "n", 1, 10)


def test_check_float_refuses_nan_and_open_bounds():
  with pytest.raises(errors.ConfigError, match=r"\(0.0, 1.0\]"):
    errors.check_float(SimpleNamespace(x=0.0), "x", 0.0, 1.0, low_open=True)
  with pytest.raises(errors.ConfigError):
    errors.check_float(SimpleNamespace(x=float("nan")), "x", 0.0, 1.0)

