"""Procedural reasoning tasks that need no download: one module per data type (math, code, stem,
logic), each a tuple ``KINDS`` of named generators ``(rng, difficulty) -> (prompt, gold)``.
:func:`generate` draws a deterministic stream of candidates from a seed, assigns each to a split by a
hash of its prompt (so splits never overlap, whatever the seed), drops duplicates, and returns
checked examples in the shared schema.
"""

from __future__ import annotations

import random
from typing import Any

from r1jax.data.schema import DATA_TYPES, SPLITS, DataError, make_example
from r1jax.data.tasks import code, logic, math, stem
from r1jax.data.tasks.splits import split_of

MODULES = {"math": math, "code": code, "stem": stem, "logic": logic}
MAX_DIFFICULTY = 5
# Candidates of the right split that may repeat in a row before the space counts as used up.
_PATIENCE = 300


def kind_names(data_type: str) -> tuple[str, ...]:
  return tuple(kind.__name__ for kind in MODULES[data_type].KINDS)


def generate(data_type: str, difficulty: int, split: str, count: int, seed: int,
             kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
  """``count`` distinct examples of one type and difficulty in ``split``, deterministic in ``seed``.

  ``kinds`` restricts the generators to those names (see :func:`kind_names`); empty means all.
  """
  if data_type not in DATA_TYPES:
    raise ValueError(f"unknown data type {data_type!r}; known: {', '.join(DATA_TYPES)}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
  if not 1 <= difficulty <= MAX_DIFFICULTY:
    raise ValueError(f"difficulty {difficulty} is outside [1, {MAX_DIFFICULTY}]")
  unknown = set(kinds) - set(kind_names(data_type))
  if unknown:
    raise ValueError(f"unknown {data_type} kinds {sorted(unknown)}; known: {kind_names(data_type)}")
  generators = [k for k in MODULES[data_type].KINDS if not kinds or k.__name__ in kinds]
  # One stream per (seed, type, difficulty), shared by all splits: each split keeps its own bucket.
  rng = random.Random(f"r1jax/{seed}/{data_type}/{difficulty}")
  examples, seen, repeats = [], set(), 0
  while len(examples) < count and repeats < _PATIENCE:
    kind = generators[rng.randrange(len(generators))]
    prompt, gold = kind(rng, difficulty)
    if split_of(prompt) != split:
      continue
    if prompt in seen:
      repeats += 1
      continue
    seen.add(prompt)
    repeats = 0
    source_id = f"procedural/{data_type}/d{difficulty}/{split}/{len(examples)}"
    examples.append(make_example(prompt, data_type, gold, difficulty, source_id,
                                 where=f"procedural {data_type} ({kind.__name__})"))
  if len(examples) < count:
    raise DataError(f"procedural {data_type} at difficulty {difficulty} yielded only "
                    f"{len(examples)} distinct {split} problems (asked for {count}); ask for fewer "
                    "or use a higher difficulty")
  return examples
