"""Pairwise preference data: JSONL files, or the embedded synthetic set.

A pair is {"prompt", "chosen", "rejected"} with the raw question as prompt. The synthetic set
stands in for the paper's helpfulness data at demo scale: for a chained-sum question, the chosen
response is a readable R1-format solution and the rejected one gives the same answer in a
degraded way (no format, a repetition loop, or a chain of thought in mixed languages). Correctness
is never what separates them, so the model learns readability, not arithmetic; rule rewards keep
judging the answers.
"""

from __future__ import annotations

import json
import random
from typing import Any

from r1jax.data.tasks import sums
from r1jax.data.tasks.splits import split_of
from r1jax.sft import traces

DEGRADATIONS = ("unformatted", "repetitive", "mixed_language")
_FOREIGN = ("сумма", "加上", "равно", "然后", "итак", "答案")


def _degrade(rng: random.Random, kind: str, terms: list[int], chosen: str) -> str:
  total = sum(terms)
  if kind == "unformatted":
    return f" {' + '.join(map(str, terms))} is {total}"
  if kind == "repetitive":
    loop = " ".join([f"{terms[0]} + {terms[1]} ="] * rng.randint(4, 8))
    return f" <think> {loop} </think> <answer> {total} </answer>"
  words = chosen.split()
  for i in rng.sample(range(2, len(words) - 4), k=min(4, max(len(words) - 6, 0))):
    words[i] = rng.choice(_FOREIGN)  # inside the <think> block, never the tags or the answer
  return " " + " ".join(words)


def synthetic_pairs(num_pairs: int, seed: int) -> list[dict[str, str]]:
  """`num_pairs` (prompt, chosen, rejected) triples on train-split chained sums."""
  rng = random.Random(f"r1jax/preferences/{seed}")
  mix = traces.TraceMix(step_slip=0.0)
  pairs = []
  while len(pairs) < num_pairs:
    prompt, _ = sums.chain_sum(rng, rng.randint(1, 3))
    if split_of(prompt) != "train":
      continue
    terms = sums.terms_of(prompt)
    chosen = getattr(traces, rng.choice(("steps", "reflective")))(rng, terms, mix)
    kind = DEGRADATIONS[len(pairs) % len(DEGRADATIONS)]
    pairs.append({"prompt": prompt, "chosen": chosen,
                  "rejected": _degrade(rng, kind, terms, chosen), "degradation": kind})
  return pairs


def read_pairs(path: str) -> list[dict[str, Any]]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      if line.strip():
        row = json.loads(line)
        if not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
          raise ValueError(f"{path}:{line_no}: a preference row needs string 'prompt', 'chosen' "
                           "and 'rejected'")
        rows.append(row)
  return rows
