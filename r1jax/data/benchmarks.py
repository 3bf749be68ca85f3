"""The public benchmarks of the paper's evaluation tables, read from local files in the TFDS manual
directory: ``<manual_dir>/r1_benchmarks/<name>/<split>.jsonl`` (or ``.parquet``).

Each benchmark converts its published row layout to the example schema:
  math500        MATH-500: 'problem', 'answer' (or a 'solution' with \\boxed{}), 'level' (1-5)
  aime           AIME-style JSONL: 'problem', 'answer' (an integer), optionally 'id', 'difficulty'
  gpqa           GPQA: 'Question', 'Correct Answer', 'Incorrect Answer 1'..'3' (options shuffled
                 per question, the same way every time), or MMLU-style 'question', 'choices',
                 'answer'
  livecodebench  LiveCodeBench-style: 'question_content', 'public_test_cases' and optionally
                 'private_test_cases' (lists, or JSON strings, of {"input", "output"} stdin/stdout
                 tests), 'difficulty' ('easy' / 'medium' / 'hard'); rows whose tests are
                 function calls (testtype 'functional') are skipped and counted
They are read directly (no TFDS build step), so an evaluation sees the file as it is now.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from r1jax.data import formats
from r1jax.data.readers import field, find_split_files, read_rows
from r1jax.data.schema import DataError, make_example

FOLDER = "r1_benchmarks"
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")   # TFDS's own default
LCB_LEVELS = {"easy": 1, "medium": 2, "hard": 3}


@dataclasses.dataclass(frozen=True)
class Benchmark:
  name: str                 # the folder under <manual_dir>/r1_benchmarks/
  title: str                # its row label in the paper's tables
  category: str             # the paper's table groups: English, Code, Math
  convert: Callable[[dict[str, Any], str, int], dict[str, Any] | None]  # None: skip the row
  fields: str               # what a row needs, for the error message


def _math500(row, where, index):
  return formats.math(row, where, "test", index)


def _aime(row, where, index):
  problem = field(row, "problem", where)
  answer = field(row, "answer", where, (str, int))
  source = field(row, "id", where, (str, int), default=index)
  return make_example(problem, "math", str(answer), field(row, "difficulty", where, int, 0),
                      f"aime/{source}", where=where)


def _gpqa(row, where, index):
  if "Question" not in row:   # MMLU-style columns
    return formats.multiple_choice(row, where, "test", index)
  question = field(row, "Question", where).strip()
  options = [field(row, "Correct Answer", where).strip()]
  options += [field(row, f"Incorrect Answer {i}", where).strip() for i in (1, 2, 3)]
  # GPQA lists the correct answer first; a per-question permutation keyed by the question's text
  # puts it anywhere, identically on every run.
  key = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "little")
  order = sorted(range(4), key=lambda i: hashlib.sha256(f"{key}/{i}".encode()).digest())
  lines = "\n".join(f"{formats.LETTERS[j]}) {options[i]}" for j, i in enumerate(order))
  gold = formats.LETTERS[order.index(0)]
  source = field(row, "Record ID", where, (str, int), default=index)
  return make_example(f"{question}\n{lines}", "stem", gold, 0, f"gpqa/{source}", where=where)


def _tests(row, name, where) -> list[dict[str, Any]]:
  value = field(row, name, where, (str, list), default=[])
  if isinstance(value, str):
    try:
      value = json.loads(value) if value.strip() else []
    except json.JSONDecodeError as e:
      raise DataError(f"{where}: field '{name}' is not a JSON list of tests ({e.msg})") from None
  if not isinstance(value, list) or not all(isinstance(t, dict) and "input" in t and "output" in t
                                            for t in value):
    raise DataError(f"{where}: field '{name}' should be a list of {{\"input\", \"output\"}} tests")
  return value


def _livecodebench(row, where, index):
  tests = _tests(row, "public_test_cases", where) + _tests(row, "private_test_cases", where)
  if not tests:
    raise DataError(f"{where}: no tests in 'public_test_cases' / 'private_test_cases'")
  if any(t.get("testtype", "stdin") != "stdin" for t in tests):
    return None   # function-call tests need the starter code's harness: not verified here
  level = field(row, "difficulty", where, default="")
  if level and level.lower() not in LCB_LEVELS:
    raise DataError(f"{where}: field 'difficulty' is {level!r}; allowed: {', '.join(LCB_LEVELS)}")
  question = row.get("question_content") or field(row, "question", where)
  prompt = (f"{question}\n\nWrite a Python program that reads the input from standard input and "
            "writes the answer to standard output.")
  pairs = [{"input": str(t["input"]), "output": str(t["output"])} for t in tests]
  source = row.get("question_id", index)
  return make_example(prompt, "code", json.dumps(pairs), LCB_LEVELS.get(level.lower(), 0),
                      f"livecodebench/{source}", where=where)


BENCHMARKS = {b.name: b for b in (
    Benchmark("aime", "AIME", "Math", _aime, "'problem' and 'answer'"),
    Benchmark("math500", "MATH-500", "Math", _math500,
              "'problem', 'answer' (or 'solution' with \\boxed{}) and 'level'"),
    Benchmark("gpqa", "GPQA Diamond", "English", _gpqa,
              "'Question', 'Correct Answer', 'Incorrect Answer 1'..'3'"),
    Benchmark("livecodebench", "LiveCodeBench", "Code", _livecodebench,
              "'question_content', 'public_test_cases' (stdin/stdout), 'difficulty'"),
)}


def manual_dir(data_dir: str, manual: str) -> str:
  """The TFDS manual directory: `manual`, else <data_dir>/downloads/manual (the data section's
  `manual_dir` and `data_dir`, TFDS_DATA_DIR or TFDS's default when `data_dir` is empty)."""
  if manual:
    return manual
  root = data_dir or os.environ.get("TFDS_DATA_DIR") or DEFAULT_DATA_DIR
  return os.path.join(os.path.expanduser(root), "downloads", "manual")


def load(name: str, directory: str, split: str = "test") -> tuple[list[dict[str, Any]], int]:
  """(examples, rows skipped) of benchmark `name` from the manual directory `directory`."""
  if name not in BENCHMARKS:
    raise DataError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
  bench = BENCHMARKS[name]
  folder = os.path.join(directory, FOLDER, name)
  files = find_split_files(folder, (split,)) if os.path.isdir(folder) else {}
  if not files:
    raise DataError(f"benchmark {name}: no {split}.jsonl or {split}.parquet in {folder}; put the "
                    f"{bench.title} file there, each row with {bench.fields}")
  examples, skipped = [], 0
  for index, (where, row) in enumerate(read_rows(files[split])):
    example = bench.convert(row, where, index)
    if example is None:
      skipped += 1
    else:
      examples.append(example)
  if not examples:
    raise DataError(f"benchmark {name}: every row of {files[split]} was skipped ({skipped})")
  return examples, skipped
