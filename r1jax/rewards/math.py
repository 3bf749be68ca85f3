"""Math verifier: is the completion's final answer equivalent to the gold answer?

Builds on ``math_verify`` (LaTeX and plain parsing into sympy; sets, intervals, relations, matrices,
percentages, units) and corrects it where it is too lenient: its numeric comparison chops tiny
differences to zero (so 1/2^99 equalled 1/2^98) and rounds floats to 6 decimals (so 1e-10 equalled
2e-10). Every numeric match it reports is re-checked here at 50 digits: exact values must agree to
a relative 1e-12, written decimals to a relative 5e-6. It also reads notation the way a grader
does: every spelling of the empty set is one set, ``i`` is the imaginary unit (so ``e^{i\pi} = -1``
and ``i^2 = -1``), and a symbol means the same whatever the surrounding text made the parser assume.
Its SIGALRM timeouts are switched off (they only work in the main thread) and replaced by a
trace-function deadline on the thread's CPU time, so a busy host does not change a verdict; inputs
that would make a single C-level operation explode (2^{10^9}) are refused before parsing. The
reward service's wall-clock deadline per item remains the hard backstop.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import time

import math_verify
import sympy
from math_verify import grader

from r1jax.rewards import extract

DEFAULT_TIME_LIMIT_S = 2.0
MAX_ANSWER_CHARS = 1000
_EXACT_RTOL = sympy.Rational(1, 10**12)
_FLOAT_RTOL = sympy.Rational(5, 10**6)
_EXPLOSIVE = re.compile(
    r"(\^|\*\*)\s*\{?\s*\(?\s*\d{6,}"             # a literal exponent of a million or more
    r"|\d{5,}\s*!"                                   # factorial of a five-digit number
    r"|\d\s*(\^|\*\*)\s*[{(][^{}()]*\d\s*(\^|\*\*)")  # numeric power towers 2^{10^{9}}
_UNICODE = {"\u2212": "-", "\u00b0": "^\\circ", "\u00d7": "\\times", "\u2264": "\\le",
            "\u2265": "\\ge", "\u221e": "\\infty", "\u03c0": "\\pi", "\u221a": "\\sqrt",
            "\u2205": "\\emptyset"}
# Spellings the parser misreads: \varnothing becomes a symbol, \{ \} with spacing a string, and
# \mathrm{i} is dropped (so 2\mathrm{i} read as 2).
_EMPTY_SET = re.compile(
    r"\\varnothing(?![a-zA-Z])|\\(?:left\\)?\{(?:\s|\\[,;:! ])*\\(?:right\\)?\}")
_IMAGINARY_UNIT = re.compile(r"\\(?:mathrm|text|textrm|operatorname)\{i\}|\\imath(?![a-zA-Z])")
_I = sympy.Symbol("i", real=True)

# math_verify warns once that its (SIGALRM) timeout is disabled: ours replaces it.
logging.getLogger("math_verify").setLevel(logging.ERROR)


class MathTimeout(BaseException):
  """The deadline passed. A BaseException so that library ``except Exception`` cannot swallow it."""


def score(completion: str, gold: str, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> float:
  """1.0 if the completion's final answer is equivalent to ``gold``, else 0.0 (also on timeout)."""
  return judge(completion, gold, time_limit_s=time_limit_s)[0]


def judge(completion: str, gold: str, *,
          time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> tuple[float, str]:
  """(reward, status); status is ``ok``, ``no_answer`` or ``timeout``."""
  answer = extract.final_answer(completion)
  if answer is None or not answer.strip():
    return 0.0, "no_answer"
  try:
    return float(equivalent(answer, gold, time_limit_s=time_limit_s)), "ok"
  except MathTimeout:
    return 0.0, "timeout"


def equivalent(answer: str, gold: str, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> bool:
  """Whether two answer strings (LaTeX or plain) are mathematically equivalent; may raise
  MathTimeout."""
  if not _safe(answer) or not _safe(gold):
    return False
  with deadline(time_limit_s):
    parsed_gold = _parse(_normalize(gold))
    parsed_answer = _parse(_normalize(answer))
    if not parsed_gold or not parsed_answer:
      return False
    return bool(math_verify.verify(list(parsed_gold), list(parsed_answer), timeout_seconds=None))


@contextlib.contextmanager
def deadline(seconds: float):
  """Raises MathTimeout once this thread has used ``seconds`` of CPU time (checked at Python calls).

  CPU time, not wall time: a verification gets the same verdict on a busy host as on a quiet one.
  A trace function is per-thread and needs no signal, so this works off the main thread. It cannot
  interrupt one long C call; ``_safe`` keeps those out and the worker pool kills what remains.
  """
  cpu, wall = time.thread_time, time.monotonic
  end = cpu() + seconds
  # Reading the thread's CPU clock is a system call, ~10x dearer than the wall clock, and sympy
  # makes millions of calls. A thread cannot use more CPU than the wall time that passes, so the
  # CPU clock need only be read once the wall clock has advanced by the CPU time still left.
  next_read = [wall() + seconds]

  def tracer(frame, event, arg):
    if wall() >= next_read[0]:
      left = end - cpu()
      if left <= 0:
        raise MathTimeout()
      next_read[0] = wall() + max(left, 1e-3)
    return None  # no per-line tracing: only calls are checked, which keeps the overhead low

  previous = sys.gettrace()
  sys.settrace(tracer)
  try:
    yield
  finally:
    sys.settrace(previous)
  if cpu() > end:
    # A library may have swallowed the exception; a late answer still counts as a timeout.
    raise MathTimeout()


def _safe(text: str) -> bool:
  return len(text) <= MAX_ANSWER_CHARS and not _EXPLOSIVE.search(text)


def _normalize(text: str) -> str:
  text = text.strip()
  for old, new in _UNICODE.items():
    text = text.replace(old, new)
  text = _IMAGINARY_UNIT.sub("i", _EMPTY_SET.sub(r"\\emptyset ", text))
  text = text.strip().rstrip(".").strip()
  if not any(d in text for d in ("$", "\\(", "\\[")):
    text = f"${text}$"
  return text


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple:
  # Cached: the same gold is parsed for every one of the G samples of a prompt.
  return tuple(_as_grader_reads(x) if isinstance(x, (sympy.Basic, sympy.MatrixBase)) else x
               for x in math_verify.parse(text, parsing_timeout=None))


def _as_grader_reads(expr):
  """One real symbol per name, and a free ``i`` as the imaginary unit.

  The parser makes symbols non-real when it sees a standalone ``i`` (``1+2 i``) but real otherwise
  (``1+2i``), and symbols of one name with different assumptions never compare equal.
  """
  renames = {s: sympy.Symbol(s.name, real=True) for s in expr.atoms(sympy.Symbol)
             if type(s) is sympy.Symbol and s.is_real is not True}  # not Dummy or Wild
  if renames:
    expr = expr.xreplace(renames)
  if _I not in expr.free_symbols:  # a bound i (a summation index) stays a variable
    return expr
  try:
    unit = expr.subs(_I, sympy.I)
  except (TypeError, ValueError):  # an ordering such as i > 0: i was a real variable
    return expr
  # `i = 3` would collapse to False: there i names a variable, not the unit.
  if unit.atoms(sympy.logic.boolalg.BooleanAtom) - expr.atoms(sympy.logic.boolalg.BooleanAtom):
    return expr
  return unit


def _strict_numeric_eq(a, b, float_rounding: int, numeric_precision: int) -> bool:
  return _lenient_numeric_eq(a, b, float_rounding, numeric_precision) and _close(a, b)


def _close(a, b) -> bool:
  """Re-checks a numeric match at high precision (see the module docstring)."""
  if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
    return True  # math_verify compares matrices element by element through _strict_numeric_eq
  try:
    symbols = sorted((a.free_symbols | b.free_symbols), key=str)
    point = {s: sympy.Rational(2 * k + 3, 7) for k, s in enumerate(symbols)}
    has_float = bool(a.atoms(sympy.Float) or b.atoms(sympy.Float))
    rtol = _FLOAT_RTOL if has_float else _EXACT_RTOL
    for x in _readings(a):
      for y in _readings(b):
        vx, vy = sympy.N(x.subs(point), 50), sympy.N(y.subs(point), 50)
        if not (vx.is_number and vy.is_number):
          return True  # not numeric after all: keep math_verify's symbolic judgement
        if abs(vx - vy) <= rtol * max(abs(vx), abs(vy)):
          return True
    return False
  except (TypeError, ValueError, AttributeError, ArithmeticError):
    return True


def _readings(expr) -> list:
  """Values an expression may stand for: a percentage ``50%`` is read as 0.5 or as 50."""
  value = grader.get_pct_val(expr)
  return [expr.doit()] if value is None else [expr.doit(), value]


# math_verify calls this module-level function recursively (sets, tuples, matrices, relations), so
# replacing it here makes every numeric comparison strict.
_lenient_numeric_eq = grader.sympy_numeric_eq
grader.sympy_numeric_eq = _strict_numeric_eq
