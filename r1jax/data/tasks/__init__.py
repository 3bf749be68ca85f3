"""Procedural reasoning tasks that need no download: one module per data type (math, code, stem,
logic), each a tuple ``KINDS`` of generators ``(rng, difficulty) -> (prompt, gold)``.
:func:`generate` draws a deterministic stream of candidates from a seed, assigns each to a split by a
hash of its prompt (so splits never overlap, whatever the seed), drops duplicates, and returns
checked examples in the shared schema.
"""

from __future__ import annotations

import random
from typing import Any

from r1jax.data.schema import DATA_TYPES, SPLITS, DataError, make_example
from r1jax.data.tasks import code, logic, math, stem
from r1jax.data.tasks.splits import SPLIT_FRACTIONS, split_of

MODULES = {"math": math, "code": code, "stem": stem, "logic": logic}
MAX_DIFFICULTY = 5
# Candidates tried per requested example before concluding the problem space is too small.
_TRIES_PER_EXAMPLE = 40


def generate(data_type: str, difficulty: int, split: str, count: int, seed: int) -> list[dict[str, Any]]:
  """``count`` distinct examples of one type and difficulty in ``split``, deterministic in ``seed``."""
  if data_type not in DATA_TYPES:
    raise ValueError(f"unknown data type {data_type!r}; known: {', '.join(DATA_TYPES)}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
  if not 1 <= difficulty <= MAX_DIFFICULTY:
    raise ValueError(f"difficulty {difficulty} is outside [1, {MAX_DIFFICULTY}]")
  kinds = MODULES[data_type].KINDS
  # One stream per (seed, type, difficulty), shared by all splits: each split keeps its own bucket.
  rng = random.Random(f"r1jax/{seed}/{data_type}/{difficulty}")
  examples, seen = [], set()
  budget = int(_TRIES_PER_EXAMPLE * count / SPLIT_FRACTIONS[split]) + 100
  for _ in range(budget):
    if len(examples) == count:
      break
    kind = kinds[rng.randrange(len(kinds))]
    prompt, gold = kind(rng, difficulty)
    if prompt in seen or split_of(prompt) != split:
      continue
    seen.add(prompt)
    source_id = f"procedural/{data_type}/d{difficulty}/{split}/{len(examples)}"
    examples.append(make_example(prompt, data_type, gold, difficulty, source_id,
                                 where=f"procedural {data_type} ({kind.__name__})"))
  if len(examples) < count:
    raise DataError(f"procedural {data_type} at difficulty {difficulty} yielded only "
                    f"{len(examples)} distinct {split} problems (asked for {count}); ask for fewer "
                    "or use a higher difficulty")
  return examples
