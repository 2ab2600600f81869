"""One registry per kind of plug-in: teachers, teacher wrappers, reward sources, env families.

A registry maps a name to an entry (a NamedTuple whose `description` says what the name
does). Config validation (`Registry.check`), `spo-train --help` (`Registry.describe`) and the
docs read the same registry, so adding a plug-in is one file plus one `register` call:

  from spo_jax.reward_sources import REWARD_SOURCES, RewardSourceEntry
  REWARD_SOURCES.register("my_source", RewardSourceEntry(build=..., description="..."))

Imports nothing from JAX or the rest of the package (errors only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from spo_jax.errors import ConfigError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
  """Names -> entries of one kind. `kind` ("teacher", "reward source", ...) and `field` (the
  config field that names one) only word the error messages."""

  def __init__(self, kind: str, field: str):
    self.kind, self.field = kind, field
    self._entries: dict[str, Entry] = {}

  def register(self, name: str, entry: Entry, *, replace: bool = False) -> Entry:
    """Add `entry` under `name`; a name already taken is refused unless `replace`."""
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
      raise ConfigError(f"{self.kind} name {name!r} must be a lower-case identifier "
                        "(letters, digits, underscores)")
    if name in self._entries and not replace:
      raise ConfigError(f"{self.kind} {name!r} is already registered; pass replace=True to "
                        "override it")
    self._entries[name] = entry
    return entry

  def unregister(self, name: str) -> None:
    """Remove `name` (for tests and interactive sessions); unknown names are ignored."""
    self._entries.pop(name, None)

  def get(self, name: str) -> Entry:
    """The entry of `name`, or `ConfigError` naming the config field and the known names."""
    self.check(name)
    return self._entries[name]

  def check(self, name: object) -> None:
    if not isinstance(name, str) or name not in self._entries:
      raise ConfigError(f"config field '{self.field}' = {name!r} is not a known {self.kind}; "
                        f"known: {', '.join(self.names())}")

  def names(self) -> tuple[str, ...]:
    """Registered names, in registration order."""
    return tuple(self._entries)

  def describe(self) -> str:
    """'name: description' lines, for `--help` and the docs."""
    return "\n".join(f"  {name}: {getattr(entry, 'description', '')}"
                     for name, entry in self._entries.items())

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)
