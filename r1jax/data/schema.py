"""The example schema shared by the builders, the pipeline and the rewards: every example is a dict
with ``prompt`` (the bare question, no template), ``data_type`` (one of :data:`DATA_TYPES`), ``gold``
(math: an answer expression; stem: an option letter; logic: a number, string or option letter;
code: Python assert lines or a JSON list of ``{"input", "output"}`` stdin/stdout pairs),
``difficulty`` (int) and ``source_id`` (str, unique within a dataset). :class:`DataError` is the one
exception type for bad data; its message names where the problem is.
"""

from __future__ import annotations

from typing import Any

from r1jax.rewards.config import DATA_TYPES  # the types there is a verifier for

FIELDS = ("prompt", "data_type", "gold", "difficulty", "source_id")
SPLITS = ("train", "eval", "test")


class DataError(ValueError):
  """Bad input data: a malformed row, a missing answer, an empty dataset, missing files."""


def make_example(prompt: str, data_type: str, gold: str, difficulty: int, source_id: str, *,
                 where: str) -> dict[str, Any]:
  """Builds a checked example; ``where`` (e.g. 'train.jsonl line 7') prefixes any error."""
  if not isinstance(prompt, str) or not prompt.strip():
    raise DataError(f"{where}: field 'prompt' is missing or empty")
  if data_type not in DATA_TYPES:
    raise DataError(f"{where}: field 'data_type' is {data_type!r}; allowed: {', '.join(DATA_TYPES)}")
  if not isinstance(gold, str) or not gold.strip():
    raise DataError(f"{where}: field 'gold' (the reference answer) is missing or empty")
  if isinstance(difficulty, bool) or not isinstance(difficulty, int):
    raise DataError(f"{where}: field 'difficulty' must be an integer, got {difficulty!r}")
  return {"prompt": prompt, "data_type": data_type, "gold": gold.strip(),
          "difficulty": difficulty, "source_id": str(source_id)}
