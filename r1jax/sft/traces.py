"""Solution traces for the demo's base-model corpus: the habits a real base model picks up.

Each trace is an R1-format completion for a chained sum, in one of three styles:
- ``direct``: the total guessed in one go, usually wrong (a near miss);
- ``steps``: one addition per step, with a slip now and then that carries into the answer;
- ``reflective``: announced up front ("I will verify each step."), each addition is recomputed
  ("let me verify: ..."); a first result that disagrees is caught ("wait, that is a mistake")
  and the checked value carries on.
Every operation reads only what is adjacent: a step adds the two numbers just written, and the
terms still to add are restated after it ("3 + 8 = 11, so 11 + 1 + 6."), so a tiny model never
has to count its way back to an operand. The style mix and slip rates are config values, so the
corpus is weak but not hopeless: a model fit to it answers some questions right and some wrong,
some briefly and some at length, and RL has something to find (the longer, self-checking
solutions are the accurate ones).

The reflective style is announced before its first addition because a model cannot tell the two
step styles apart until then: without the announcement it writes every first result with the
blended slip rate of both, and plain solutions lose accuracy they never had in the corpus.
"""

from __future__ import annotations

import dataclasses
import random

from r1jax.config import check_range

STYLES = ("direct", "steps", "reflective")


@dataclasses.dataclass(frozen=True)
class TraceMix:
  direct: float = 0.64
  steps: float = 0.21
  reflective: float = 0.15
  direct_accuracy: float = 0.08     # a one-shot guess is right this often
  step_slip: float = 0.06           # chance a plain step's result is off (and carried on)
  reflective_slip: float = 0.25     # chance a reflective step first comes out wrong (then caught)

  def validate(self):
    for name in ("direct", "steps", "reflective", "direct_accuracy", "step_slip", "reflective_slip"):
      check_range(name, getattr(self, name), 0.0, 1.0)
    check_range("direct + steps + reflective", self.direct + self.steps + self.reflective, 0.999, 1.001)


def _slip(rng: random.Random, value: int) -> int:
  return max(0, value + rng.choice((-10, -2, -1, 1, 2, 10)))


def _finish(think: str, answer: int) -> str:
  return f" <think> {think} </think> <answer> {answer} </answer>"


def _expression(values: list[int]) -> str:
  return " + ".join(map(str, values))


def _carry_on(rest: list[int]) -> str:
  """What follows a step: the sum still to do, or the total."""
  return f"so {_expression(rest)}." if len(rest) > 1 else f"so the sum is {rest[0]}."


def direct(rng: random.Random, terms: list[int], mix: TraceMix) -> str:
  total = sum(terms)
  guess = total if rng.random() < mix.direct_accuracy else _slip(rng, total)
  return _finish("I add them all at once.", guess)


def steps(rng: random.Random, terms: list[int], mix: TraceMix) -> str:
  rest, parts = list(terms), [f"{_expression(terms)}."]
  while len(rest) > 1:
    a, b = rest[0], rest[1]
    result = _slip(rng, a + b) if rng.random() < mix.step_slip else a + b
    rest = [result] + rest[2:]
    parts.append(f"{a} + {b} = {result}, {_carry_on(rest)}")
  return _finish(" ".join(parts), rest[0])


REFLECTIVE_OPENING = "I will verify each step."


def reflective(rng: random.Random, terms: list[int], mix: TraceMix) -> str:
  rest, parts = list(terms), [REFLECTIVE_OPENING, f"{_expression(terms)}."]
  while len(rest) > 1:
    a, b = rest[0], rest[1]
    first = _slip(rng, a + b) if rng.random() < mix.reflective_slip else a + b
    verdict = "ok" if first == a + b else "wait, that is a mistake"
    rest = [a + b] + rest[2:]
    parts.append(f"{a} + {b} = {first}. let me verify: {a} + {b} = {a + b}. {verdict}, "
                 f"{_carry_on(rest)}")
  return _finish(" ".join(parts), rest[0])


TRACE_STYLES = {"direct": direct, "steps": steps, "reflective": reflective}


def sample_trace(rng: random.Random, terms: list[int], mix: TraceMix) -> tuple[str, str]:
  """(style, completion text) drawn from the mix."""
  style = rng.choices(STYLES, weights=(mix.direct, mix.steps, mix.reflective))[0]
  return style, TRACE_STYLES[style](rng, terms, mix)


def style_of(completion: str) -> str:
  """Which style a sampled completion follows (the card's per-style accuracy): reflective once
  it verifies anything, steps once it writes an addition, else direct."""
  if "verify" in completion or "mistake" in completion:
    return "reflective"
  return "steps" if "=" in completion else "direct"
