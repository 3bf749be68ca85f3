"""Format reward: the completion is exactly ``<think>…</think>`` then ``<answer>…</answer>``.

Only whitespace may come before, between and after the two blocks; each tag appears exactly once,
so a repeated or nested tag fails; and the answer may not be empty. The rule is the R1-Zero
template's, applied strictly so that the cheapest way to earn it is to follow it.
"""

from __future__ import annotations

import re

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_SHAPE = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", re.DOTALL)


def score(completion: str) -> float:
  """1.0 if the completion has the R1 format exactly, else 0.0."""
  if any(completion.count(tag) != 1 for tag in TAGS):
    return 0.0
  match = _SHAPE.fullmatch(completion)
  return float(match is not None and bool(match.group(2).strip()))
