"""Preference pairs from rejection sampling: a verified and a failed answer to the same prompt."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any


def preference_pairs(verified: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]],
                     per_prompt: int = 0) -> list[dict[str, str]]:
  """{"prompt", "chosen", "rejected"} rows: each prompt's verified completions zipped in file
  order with its failed ones (so no answer is used twice), at most `per_prompt` (0 = no cap)."""
  rejected = collections.defaultdict(list)
  for row in failed:
    rejected[row["prompt"]].append(row["completion"])
  chosen = collections.defaultdict(list)
  for row in verified:
    chosen[row["prompt"]].append(row["completion"])
  pairs = []
  for prompt, answers in chosen.items():
    zipped = list(zip(answers, rejected.get(prompt, ())))
    pairs += [{"prompt": prompt, "chosen": c, "rejected": r}
              for c, r in (zipped[:per_prompt] if per_prompt else zipped)]
  return pairs
