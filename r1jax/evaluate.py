"""Evaluation metrics in the paper's terms, from k scored samples per problem.

- pass@1 averaged over the k samples; unbiased pass@k, 1 - C(n - c, k) / C(n, k) (Chen et al.);
- cons@k: the majority-vote answer over the k samples (ties go to the answer seen first) is right,
  reported as cons@<k> and, so that runs with different k share one key, as cons@k;
- per data type and per difficulty accuracy, and mean response length per difficulty; when the
  samples carry `thinking_tokens` (the tokens of the <think> block, :func:`thinking_text`), their
  mean overall and per difficulty (the paper's test-time-scaling figure: thinking grows with
  difficulty);
- reflective-word frequency: occurrences of "wait", "mistake", "however", "verify", "check" per
  response, and the share of responses with at least one.
The voted answer is the content of the last <answer> block, found as the verifiers find it
(`r1jax.rewards.extract`). Everything here is a pure function of the samples, so it is tested on
hand-computed examples.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from r1jax.rewards.extract import answer_block

REFLECTIVE_WORDS = ("wait", "mistake", "however", "verify", "check")
# The headline metrics a run's summary keeps of each evaluation (and its report tabulates).
SUMMARY_KEYS = ("pass@1", "cons@k", "response_length", "reflective_words_per_response")
_REFLECTIVE = re.compile(r"\b(" + "|".join(REFLECTIVE_WORDS) + r")\b", re.IGNORECASE)


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k from n samples of which c are correct."""
  if k > n:
    raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
  if n - c < k:
    return 1.0
  return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def extracted_answer(completion: str) -> str:
  """The normalised content of the last <answer> block ('' if none): the majority-vote key."""
  block = answer_block(completion)
  return "" if block is None else " ".join(block.split()).lower()


def majority_correct(answers: Sequence[str], correct: Sequence[bool]) -> bool:
  """cons@k: whether the most frequent non-empty answer is a correct one."""
  counts = collections.Counter(a for a in answers if a)
  if not counts:
    return False
  best = max(counts.values())
  winner = next(a for a in answers if a and counts[a] == best)
  return bool(correct[answers.index(winner)])


def thinking_text(completion: str) -> str:
  """The reasoning of a completion: what stands inside <think>...</think> (everything before
  </think>, since templates may open the block in the prompt; all of it if the block never
  closes, as when the budget ran out while thinking)."""
  end = completion.find("</think>")
  text = completion if end < 0 else completion[:end]
  start = text.find("<think>")
  return text if start < 0 else text[start + len("<think>"):]


def reflective_count(text: str) -> int:
  return len(_REFLECTIVE.findall(text))


def summarize(samples: Sequence[dict[str, Any]], k: int, pass_at: Sequence[int] = (1,)) -> dict[str, float]:
  """Metrics from samples with keys problem (id), completion, correct (bool), length (tokens),
  data_type and difficulty; each problem must have exactly k samples."""
  by_problem: dict[Any, list[dict]] = collections.defaultdict(list)
  for s in samples:
    by_problem[s["problem"]].append(s)
  bad = {p: len(v) for p, v in by_problem.items() if len(v) != k}
  if bad:
    raise ValueError(f"every problem needs {k} samples; these have other counts: {bad}")
  out: dict[str, float] = {}
  rows = []
  for group in by_problem.values():
    correct = [bool(s["correct"]) for s in group]
    answers = [extracted_answer(s["completion"]) for s in group]
    rows.append({"type": group[0]["data_type"], "difficulty": group[0]["difficulty"],
                 "pass1": float(np.mean(correct)), "cons": float(majority_correct(answers, correct)),
                 **{f"pass@{j}": pass_at_k(k, sum(correct), j) for j in pass_at},
                 "length": float(np.mean([s["length"] for s in group])),
                 "thinking": float(np.mean([s.get("thinking_tokens", np.nan) for s in group])),
                 "reflect": float(np.mean([reflective_count(s["completion"]) for s in group])),
                 "reflect_any": float(np.mean([reflective_count(s["completion"]) > 0 for s in group]))})
  mean = lambda key, rs=rows: float(np.mean([r[key] for r in rs]))
  out["pass@1"] = mean("pass1")
  out[f"cons@{k}"] = out["cons@k"] = mean("cons")
  for j in pass_at:
    out[f"pass@{j}_unbiased"] = mean(f"pass@{j}")
  out["response_length"] = mean("length")
  out["reflective_words_per_response"] = mean("reflect")
  out["reflective_response_share"] = mean("reflect_any")
  thinking = all("thinking_tokens" in s for s in samples)
  if thinking:
    out["thinking_tokens"] = mean("thinking")
  for key, name in (("type", "type"), ("difficulty", "difficulty")):
    for value in sorted({r[key] for r in rows}):
      subset = [r for r in rows if r[key] == value]
      out[f"pass@1/{name}={value}"] = mean("pass1", subset)
      if key == "difficulty":
        out[f"response_length/difficulty={value}"] = mean("length", subset)
        if thinking:
          out[f"thinking_tokens/difficulty={value}"] = mean("thinking", subset)
  return out
