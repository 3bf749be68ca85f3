"""Row readers for user-provided files (JSONL and Parquet) whose errors say where the problem is:
every row comes with a ``where`` string ('<file> line 12' or '<file> row 12') that the converters
put in front of their own messages, and :func:`field` names the missing or mistyped field."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from r1jax.data.schema import DataError

EXTENSIONS = (".jsonl", ".parquet")


def read_rows(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (where, row) for every row of a .jsonl or .parquet file; raises on an empty file."""
  count = 0
  if path.endswith(".parquet"):
    import pyarrow.parquet as pq  # only needed for Parquet inputs
    for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
      count += 1
      yield f"{path} row {i}", row
  else:
    with open(path, encoding="utf-8") as f:
      for i, line in enumerate(f, start=1):
        if not line.strip():
          continue
        where = f"{path} line {i}"
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
          raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        count += 1
        yield where, row
  if count == 0:
    raise DataError(f"{path}: the file has no rows")


def field(row: dict[str, Any], name: str, where: str, kind: type | tuple[type, ...] = str,
          default: Any = ...) -> Any:
  """``row[name]`` checked against ``kind``; a missing field is an error unless a default is given."""
  if name not in row or row[name] is None:
    if default is not ...:
      return default
    raise DataError(f"{where}: missing field '{name}' (fields present: {', '.join(sorted(row))})")
  value = row[name]
  if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
    names = " or ".join(k.__name__ for k in _as_tuple(kind))
    raise DataError(f"{where}: field '{name}' should be {names}, got {type(value).__name__} "
                    f"{_preview(value)}")
  return value


def _as_tuple(kind):
  return kind if isinstance(kind, tuple) else (kind,)


def _preview(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + "..."


def find_split_files(folder: str, splits: tuple[str, ...]) -> dict[str, str]:
  """{split: path} for each ``<split>.jsonl`` / ``<split>.parquet`` present in ``folder``."""
  found = {}
  for split in splits:
    for ext in EXTENSIONS:
      path = os.path.join(folder, split + ext)
      if os.path.isfile(path):
        if split in found:
          raise DataError(f"{folder}: both {split}.jsonl and {split}.parquet exist; keep one")
        found[split] = path
  return found
