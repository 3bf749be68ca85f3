"""Converters from the rows of published datasets to the shared example schema: GSM8K (the answer
after '####'), MATH (the last ``\\boxed{}``), MMLU-style multiple choice, MBPP and HumanEval code
with tests, and a generic mapping of user columns. Each takes ``(row, where, split, index)`` and
raises :class:`DataError` naming ``where`` and the field when the row cannot be used."""

from __future__ import annotations

import json
import re
from typing import Any

from r1jax.data.readers import field
from r1jax.data.schema import DATA_TYPES, DataError, make_example
from r1jax.rewards.extract import last_boxed

LETTERS = "ABCDEFGHIJ"


def gsm8k(row: dict[str, Any], where: str, split: str, index: int) -> dict[str, Any]:
  question = field(row, "question", where)
  answer = field(row, "answer", where)
  if "####" not in answer:
    raise DataError(f"{where}: field 'answer' has no '#### <final answer>' line (GSM8K format)")
  reasoning, gold = answer.rsplit("####", 1)
  gold = gold.strip().replace(",", "")
  if not gold:
    raise DataError(f"{where}: field 'answer' has nothing after '####'")
  # GSM8K has no levels; the number of solution steps is a fair proxy.
  steps = sum(1 for line in reasoning.splitlines() if line.strip())
  return make_example(question, "math", gold, steps, f"gsm8k/{split}/{index}", where=where)


def math(row: dict[str, Any], where: str, split: str, index: int) -> dict[str, Any]:
  problem = field(row, "problem", where)
  gold = row.get("answer")  # some mirrors ship the extracted answer; otherwise read \boxed{}
  if not isinstance(gold, str) or not gold.strip():
    gold = last_boxed(field(row, "solution", where))
    if gold is None or not gold.strip():
      raise DataError(f"{where}: field 'solution' has no \\boxed{{...}} answer (and no 'answer' field)")
  level = re.search(r"\d+", str(row.get("level", "")))
  return make_example(problem, "math", gold, int(level.group()) if level else 0,
                      f"math/{split}/{row.get('unique_id', index)}", where=where)


def _options(row: dict[str, Any], where: str) -> list[str]:
  if "choices" in row:
    choices = field(row, "choices", where, (list, tuple))
  else:  # original MMLU CSV columns A, B, C, D
    choices = [field(row, letter, where, (str, int, float)) for letter in "ABCD"]
  if not 2 <= len(choices) <= len(LETTERS):
    raise DataError(f"{where}: field 'choices' should have 2..{len(LETTERS)} options, got {len(choices)}")
  return [str(c) for c in choices]


def multiple_choice(row: dict[str, Any], where: str, split: str, index: int) -> dict[str, Any]:
  question = field(row, "question", where)
  options = _options(row, where)
  answer = field(row, "answer", where, (str, int))
  if isinstance(answer, int):
    if not 0 <= answer < len(options):
      raise DataError(f"{where}: field 'answer' is {answer}, not an index into {len(options)} choices")
    gold = LETTERS[answer]
  else:
    gold = answer.strip().upper()
    if gold not in LETTERS[:len(options)]:
      raise DataError(f"{where}: field 'answer' is {answer!r}; expected a letter "
                      f"A..{LETTERS[len(options) - 1]} or a 0-based index")
  lines = "\n".join(f"{LETTERS[i]}) {option}" for i, option in enumerate(options))
  subject = row.get("subject", "mmlu")
  return make_example(f"{question}\n{lines}", "stem", gold, 0, f"{subject}/{split}/{index}",
                      where=where)


def mbpp(row: dict[str, Any], where: str, split: str, index: int) -> dict[str, Any]:
  text = field(row, "text", where) if "text" in row else field(row, "prompt", where)
  tests = field(row, "test_list", where, (list, tuple))
  if not tests or not all(isinstance(t, str) and t.strip() for t in tests):
    raise DataError(f"{where}: field 'test_list' should be a non-empty list of assert lines")
  setup = row.get("test_setup_code") or ""
  prompt = f"{text}\nYour code should pass these tests:\n\n" + "\n".join(tests)
  gold = "\n".join(([setup] if setup.strip() else []) + list(tests))
  return make_example(prompt, "code", gold, 0, f"mbpp/{row.get('task_id', index)}", where=where)


def humaneval(row: dict[str, Any], where: str, split: str, index: int) -> dict[str, Any]:
  signature = field(row, "prompt", where)
  test = field(row, "test", where)
  entry_point = field(row, "entry_point", where)
  prompt = ("Complete the following Python function. Write the whole function, including the "
            f"signature and any imports it needs.\n\n```python\n{signature}```")
  # The tests define check(candidate); calling it on the entry point runs the asserts.
  gold = f"{test.rstrip()}\n\ncheck({entry_point})"
  return make_example(prompt, "code", gold, 0, str(row.get("task_id", f"humaneval/{index}")),
                      where=where)


def _as_gold(value: Any) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, (list, dict)):  # e.g. stdin/stdout test pairs
    return json.dumps(value)
  return str(value)


def generic(row: dict[str, Any], where: str, split: str, index: int, *, prompt: str, gold: str,
            data_type: str, type_column: str, difficulty_column: str, id_column: str) -> dict[str, Any]:
  """Maps user columns to the schema; the type is fixed (``data_type``) or read from ``type_column``."""
  kind = field(row, type_column, where) if type_column else data_type
  if kind not in DATA_TYPES:
    name = f"field '{type_column}'" if type_column else "the configured data type"
    raise DataError(f"{where}: {name} is {kind!r}; allowed: {', '.join(DATA_TYPES)}")
  value = field(row, gold, where, (str, int, float, list, dict))
  difficulty = field(row, difficulty_column, where, int) if difficulty_column else 0
  source = field(row, id_column, where, (str, int)) if id_column else f"{split}/{index}"
  return make_example(field(row, prompt, where), kind, _as_gold(value), difficulty, str(source),
                      where=where)
