"""The generic registry every plug-in kind uses."""

from typing import NamedTuple

import pytest

from spo_jax.errors import ConfigError
from spo_jax.registry import Registry


class Entry(NamedTuple):
  value: int
  description: str


def test_register_get_describe_and_unregister():
  registry = Registry("widget", "widget")
  registry.register("small", Entry(1, "a small one"))
  registry.register("large", Entry(2, "a large one"))
  assert registry.names() == ("small", "large") and len(registry) == 2
  assert registry.get("large").value == 2 and "small" in registry
  assert registry.describe() == "  small: a small one\n  large: a large one"
  with pytest.raises(ConfigError, match="config field 'widget' = 'huge' is not a known widget; "
                                        "known: small, large"):
    registry.get("huge")
  with pytest.raises(ConfigError, match="already registered"):
    registry.register("small", Entry(3, ""))
  registry.register("small", Entry(3, "replaced"), replace=True)
  assert registry.get("small").value == 3
  registry.unregister("small")
  assert registry.names() == ("large",)


@pytest.mark.parametrize("name", ["Big", "two words", "", 3])
def test_names_must_be_lower_case_identifiers(name):
  with pytest.raises(ConfigError, match="lower-case identifier"):
    Registry("widget", "widget").register(name, Entry(0, ""))
