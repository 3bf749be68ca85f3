"""Chained sums, the embedded demo's math task: "Compute 3 + 7 + 5" with difficulty d giving
d + 2 single-digit terms. Solved step by step, each step is one two-number addition, so a tiny model can learn
the steps while guessing the total in one go stays unreliable: the gap RL has to discover."""

from __future__ import annotations

import random
import re

TERM_MAX = 9
EXTRA_TERMS = 2  # difficulty d has d + EXTRA_TERMS terms
_PROMPT = re.compile(r"^Compute (\d+(?: \+ \d+)+)\.?$")


def chain_sum(rng: random.Random, difficulty: int) -> tuple[str, str]:
  terms = [rng.randint(1, TERM_MAX) for _ in range(difficulty + EXTRA_TERMS)]
  return f"Compute {' + '.join(map(str, terms))}", str(sum(terms))


def terms_of(prompt: str) -> list[int]:
  """The terms of a chained-sum prompt; ValueError for any other prompt."""
  match = _PROMPT.match(prompt.strip())
  if not match:
    raise ValueError(f"not a chained-sum prompt: {prompt!r}")
  return [int(t) for t in match.group(1).split(" + ")]


KINDS = (chain_sum,)
