"""Procedural function-synthesis problems: a list of integers goes through ``difficulty`` filter /
map steps and a final reduction, described in words; the gold is unit tests computed by the
reference implementation, either Python asserts on ``solve(xs)`` or stdin/stdout pairs (JSON)."""

from __future__ import annotations

import json
import random

MAX_DIFFICULTY = 5


def _steps(rng: random.Random):
  """(description, function on a list) for one filter or map step with random constants."""
  k, t = rng.randint(2, 9), rng.randint(-9, 9)
  options = [
      (f"keeps only the elements greater than {t}", lambda xs, t=t: [x for x in xs if x > t]),
      (f"removes the elements equal to {t}", lambda xs, t=t: [x for x in xs if x != t]),
      ("keeps only the even elements", lambda xs: [x for x in xs if x % 2 == 0]),
      ("keeps only the odd elements", lambda xs: [x for x in xs if x % 2]),
      (f"keeps only the elements divisible by {k}", lambda xs, k=k: [x for x in xs if x % k == 0]),
      (f"multiplies every element by {k}", lambda xs, k=k: [x * k for x in xs]),
      (f"adds {k} to every element", lambda xs, k=k: [x + k for x in xs]),
      (f"replaces every element by its remainder modulo {k} (Python's % operator)",
       lambda xs, k=k: [x % k for x in xs]),
      ("replaces every element by its absolute value", lambda xs: [abs(x) for x in xs]),
      ("squares every element", lambda xs: [x * x for x in xs]),
  ]
  return rng.choice(options)


# (description, reduction, usable with stdin/stdout because it prints one scalar)
_REDUCERS = (
    ("returns the sum of the remaining elements (0 if there are none)", sum, True),
    ("returns the number of remaining elements", len, True),
    ("returns the sum of the elements at even positions 0, 2, 4, ... (0 if there are none)",
     lambda xs: sum(xs[::2]), True),
    ("returns the largest remaining element, or None if there are none",
     lambda xs: max(xs) if xs else None, False),
    ("returns the remaining elements as a list sorted in ascending order", sorted, False),
    ("returns the remaining elements as a list in reverse order", lambda xs: xs[::-1], False),
)


def _reference(steps, reduce_fn, xs):
  for _, fn in steps:
    xs = fn(xs)
  return reduce_fn(xs)


def list_pipeline(rng: random.Random, difficulty: int) -> tuple[str, str]:
  while True:  # redraw pipelines whose tests all expect the same value (e.g. odd then even)
    steps = [_steps(rng) for _ in range(difficulty)]
    reducer_text, reduce_fn, scalar = rng.choice(_REDUCERS)
    inputs = [[rng.randint(-20, 20) for _ in range(rng.randint(0, 8))] for _ in range(6)]
    if len({repr(_reference(steps, reduce_fn, xs)) for xs in inputs}) > 1:
      break
  reference = lambda xs: _reference(steps, reduce_fn, xs)

  described = "; ".join(text for text, _ in steps) + f"; then {reducer_text}"
  if scalar and rng.random() < 0.5:
    prompt = ("Write a Python program that reads one line of space-separated integers from "
              f"standard input (the line may be empty) and, in this order, {described}. Instead of "
              "returning the result, print it.")
    tests = [{"input": " ".join(map(str, xs)) + "\n", "output": f"{reference(xs)}\n"}
             for xs in inputs]
    return prompt, json.dumps(tests)
  prompt = (f"Write a Python function solve(xs) that takes a list of integers and, in this order, "
            f"{described}.")
  return prompt, "\n".join(f"assert solve({xs!r}) == {reference(xs)!r}" for xs in inputs)


KINDS = (list_pipeline,)
