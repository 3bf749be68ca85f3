"""Multiple-choice verifier (STEM, and logic puzzles with lettered options).

The chosen option is read from the answer (the ``<answer>`` block, else the last ``\\boxed{}``,
else the whole completion). Explicit forms are tried first: a bare option ("B", "(B)", "B.",
"\\boxed{B}", "\\text{(B)}"), then phrases ("answer: b", "The answer is B", "option B"), then any
capital letter standing alone that is not an article or pronoun. Naming several different options
is wrong, so hedging ("A or C") never earns the reward.
"""

from __future__ import annotations

import re

from r1jax.rewards import extract

OPTIONS = "ABCDEFGHIJ"
_LATEX_WRAPPERS = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf|fbox)\s*\{([^{}]*)\}")
_BARE = re.compile(r"^\W*\(?([A-Ja-j])\)?\W*$")
_PHRASE = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option\s*|choice\s*)?[(\[]?([A-Ja-j])\b(?![-'])",
    re.IGNORECASE)
_PARENTHESISED = re.compile(r"\(([A-J])\)")
# A capital letter standing alone; "A" or "I" followed by a lower-case word is prose ("A good
# choice", "I think"), except a conjunction ("A or C" hedges between options).
_STANDALONE = re.compile(r"(?<![\w\\])([A-J])(?![\w'-])(?!\s+(?!(?:or|and|nor|vs)\b)[a-z])")


def extract_choice(text: str) -> str | None:
  """The single option letter named in ``text``'s answer, or None if none or several."""
  region = extract.answer_block(text)
  if region is None:
    region = extract.last_boxed(text)
  if region is None:
    region = text
  region = _LATEX_WRAPPERS.sub(r" \1 ", region).strip()
  bare = _BARE.match(region)
  if bare:
    return bare.group(1).upper()
  for pattern in (_PHRASE, _PARENTHESISED, _STANDALONE):
    found = {m.upper() for m in pattern.findall(region)}
    if found:
      return found.pop() if len(found) == 1 else None
  return None


def score(completion: str, gold: str) -> float:
  """1.0 if the completion picks exactly the gold option (a letter such as "B"), else 0.0."""
  gold = gold.strip().strip("()").upper()
  if len(gold) != 1 or gold not in OPTIONS:
    raise ValueError(f"multiple-choice gold must be one option letter in {OPTIONS}, got {gold!r}")
  return float(extract_choice(completion) == gold)
