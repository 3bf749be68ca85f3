"""Language-consistency reward: the share of the chain of thought written in the target language.

As in DeepSeek-R1: (words in the target language) / (words in the CoT), with the CoT taken from the
``<think>`` block (or everything before ``<answer>`` when it is missing). Math (``$…$``, ``\\(…\\)``,
``\\[…\\]``), fenced and inline code, LaTeX commands and numbers are removed first, since they are
language-neutral. Words are classified by script: a run of letters of one script is one word, and
each Han, kana or Hangul character is a word (those scripts do not separate words with spaces). No
model or randomness is involved, so the value is deterministic. No words gives 0.0, so emptying
the CoT never earns this reward.
"""

from __future__ import annotations

import re
import unicodedata

# Target language -> the script its words are written in.
SCRIPTS = {"en": "latin", "fr": "latin", "de": "latin", "es": "latin", "zh": "han",
           "ru": "cyrillic", "ja": "japanese", "ko": "hangul"}
_NON_PROSE = re.compile(
    r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+|[0-9_]+",
    re.DOTALL)
_CHAR_WORDS = ("han", "kana", "hangul")


def consistency(completion: str, language: str = "en") -> float:
  """Fraction of the CoT's words in ``language``'s script, in [0, 1]."""
  if language not in SCRIPTS:
    raise ValueError(f"unknown target language {language!r}; known: {', '.join(SCRIPTS)}")
  words = [_script(w) for w in _words(_cot(completion))]
  if not words:
    return 0.0
  target = SCRIPTS[language]
  accepted = {"han", "kana"} if target == "japanese" else {target}
  return sum(s in accepted for s in words) / len(words)


def _cot(completion: str) -> str:
  start = completion.find("<think>")
  end = completion.find("</think>")
  if start >= 0 and end > start:
    return completion[start + len("<think>"):end]
  answer = completion.find("<answer>")
  return completion if answer < 0 else completion[:answer]


def _words(text: str) -> list[str]:
  text = _NON_PROSE.sub(" ", text)
  words, current, current_script = [], [], None
  for ch in text:
    script = _script(ch) if ch.isalpha() else None
    if script is None or script != current_script or script in _CHAR_WORDS:
      if current:
        words.append("".join(current))
      current, current_script = ([ch], script) if script else ([], None)
    else:
      current.append(ch)
  if current:
    words.append("".join(current))
  return words


def _script(text: str) -> str:
  name = unicodedata.name(text[0], "")
  for prefix, script in (("LATIN", "latin"), ("CJK", "han"), ("HIRAGANA", "kana"),
                         ("KATAKANA", "kana"), ("HANGUL", "hangul"), ("CYRILLIC", "cyrillic"),
                         ("GREEK", "greek"), ("ARABIC", "arabic"), ("HEBREW", "hebrew"),
                         ("DEVANAGARI", "devanagari")):
    if name.startswith(prefix):
      return script
  return "other"
