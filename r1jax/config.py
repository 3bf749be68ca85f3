"""Typed configuration: frozen dataclasses built once from an experiment's ConfigDict.

Experiment files (``experiments/*.py``) return an ``ml_collections.ConfigDict``; library code never
sees it. :func:`from_dict` turns one section into its frozen dataclass, recursing into nested
dataclass fields, rejecting unknown keys, and running each class's ``validate()`` so that a bad
value is reported once, at start-up, under its full dotted key with the allowed values or range.
A class may list keys that moved (``MOVED_KEYS``, old -> new dotted key): an old key is still read
when it agrees with the new one, and is otherwise an error that names the new key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
  """A config value is missing, misspelled or out of range. ``key`` is the dotted path."""

  def __init__(self, key: str, message: str):
    self.key = key
    self.message = message
    super().__init__(f"config key '{key}': {message}")

  def under(self, prefix: str) -> "ConfigError":
    return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.message)


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
  allowed = tuple(allowed)
  if value not in allowed:
    raise ConfigError(key, f"got {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def check_range(key: str, value: float, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
  """Checks low <= value <= high (or strict where *_open); either bound may be None."""
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open else value > high)
  if too_low or too_high:
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    raise ConfigError(key, f"got {value!r}; allowed range: {left}{lo}, {hi}{right}")


def check_divides(key: str, value: int, divisor: int, divisor_name: str) -> None:
  if divisor <= 0 or value % divisor:
    raise ConfigError(key, f"got {value}; must be a positive multiple of {divisor_name}={divisor}")


def _field_types(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _dataclass_in(tp) -> type | None:
  """The dataclass inside ``tp`` (``X`` or ``X | None``), if any."""
  if dataclasses.is_dataclass(tp):
    return tp
  if typing.get_origin(tp) in (typing.Union, types.UnionType):
    for arg in typing.get_args(tp):
      if dataclasses.is_dataclass(arg):
        return arg
  return None


def _coerce(tp, value):
  """Lists from ConfigDicts become tuples so that configs stay hashable (jit static args)."""
  origin = typing.get_origin(tp)
  if origin is tuple or tp is tuple or (origin in (typing.Union, types.UnionType) and any(
      typing.get_origin(a) is tuple for a in typing.get_args(tp))):
    if isinstance(value, (list, tuple)):
      return tuple(tuple(v) if isinstance(v, list) else v for v in value)
  if tp is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def _section_default(cls, name: str):
  field = next(f for f in dataclasses.fields(cls) if f.name == name)
  return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _read_moved_keys(cls, values: dict, prefix: str) -> None:
  """Takes each old key of ``cls.MOVED_KEYS`` out of ``values``; it must equal its new key."""
  for old, new in getattr(cls, "MOVED_KEYS", {}).items():
    old_section, old_key = old.split(".")
    if not isinstance(values.get(old_section), Mapping) or old_key not in values[old_section]:
      continue
    values[old_section] = dict(values[old_section])
    value = values[old_section].pop(old_key)
    section, key = new.split(".")
    current = dict(values.get(section) or {}).get(key, getattr(_section_default(cls, section), key))
    if value != current:
      where = f"{prefix}.{old}" if prefix else old
      raise ConfigError(where, f"got {value!r}; this value is set once, as '{new}' (now "
                        f"{current!r}): set that key instead and drop this one")


def from_dict(cls: type[T], values: Mapping[str, Any] | None, prefix: str = "") -> T:
  """Builds and validates dataclass ``cls`` from a mapping; errors name the dotted key."""
  values = dict(values or {})
  if hasattr(values, "to_dict"):
    values = values.to_dict()
  _read_moved_keys(cls, values, prefix)
  types_by_name = _field_types(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ConfigError(f"{prefix}.{unknown[0]}" if prefix else unknown[0],
                      f"unknown key; known keys: {', '.join(sorted(names))}")
  kwargs = {}
  for name, value in values.items():
    tp = types_by_name[name]
    sub = _dataclass_in(tp)
    key = f"{prefix}.{name}" if prefix else name
    if sub is not None and isinstance(value, Mapping) or (sub is not None and hasattr(value, "to_dict")):
      kwargs[name] = from_dict(sub, value, key)
    else:
      kwargs[name] = _coerce(tp, value)
  try:
    obj = cls(**kwargs)
  except TypeError as e:
    raise ConfigError(prefix or cls.__name__, str(e)) from None
  validate = getattr(obj, "validate", None)
  if validate is not None:
    try:
      validate()
    except ConfigError as e:
      raise e.under(prefix) from None
  return obj


def to_dict(obj) -> dict[str, Any]:
  """The inverse of :func:`from_dict`, for logging a run's resolved config."""
  return dataclasses.asdict(obj)
