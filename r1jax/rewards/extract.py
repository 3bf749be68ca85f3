"""Finding the answer inside an R1-format completion: the ``<answer>`` block, ``\\boxed{}``, code fences.

Shared by every verifier so that they agree on what "the answer" is: the content of the last
``<answer>...</answer>`` block when there is one, otherwise the whole completion (for outputs that
ignore the format; the format reward is what punishes that). Braces are matched, not regexed, so
``\\boxed{\\frac{1}{2}}`` comes out whole.
"""

from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_CODE_LANGS = ("python", "py", "python3", "")


def answer_block(text: str) -> str | None:
  """Content of the last complete ``<answer>...</answer>`` block, or None."""
  blocks = _ANSWER.findall(text)
  return blocks[-1] if blocks else None


def answer_region(text: str) -> str:
  """The answer block if present, else the whole completion."""
  block = answer_block(text)
  return text if block is None else block


def last_boxed(text: str) -> str | None:
  """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, or None."""
  for match in reversed(list(_BOXED.finditer(text))):
    inner = _balanced(text, match.end())
    if inner is not None:
      return inner
  return None


def final_answer(text: str) -> str | None:
  """The answer to grade: inside the answer block its last boxed part (or all of it), else the
  completion's last boxed expression, else None."""
  block = answer_block(text)
  if block is not None:
    boxed = last_boxed(block)
    return (boxed if boxed is not None else block).strip()
  boxed = last_boxed(text)
  return None if boxed is None else boxed.strip()


def fenced_code(text: str) -> str | None:
  """The last fenced code block tagged python (or untagged) in ``text``, or None."""
  blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _CODE_LANGS]
  return blocks[-1] if blocks else None


def _balanced(text: str, start: int) -> str | None:
  depth = 1
  i = start
  while i < len(text):
    c = text[i]
    if c == "\\":
      i += 2  # an escaped brace like \{ does not count
      continue
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
      if depth == 0:
        return text[start:i]
    i += 1
  return None
