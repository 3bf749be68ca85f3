"""Solution traces for the demo's base-model corpus: the habits a real base model picks up.

Each trace is an R1-format completion for a chained sum, in one of three styles:
- ``direct``: the total guessed in one go, usually wrong (a near miss);
- ``steps``: one addition per step, with a slip now and then that carries into the answer;
- ``reflective``: steps where a slip is caught ("wait, let me check ... verify") and corrected.
The style mix and error rates are config values, so the corpus is weak but not hopeless: a model
fit to it answers some questions right, some wrong, some briefly and some at length, and RL has
something to find (longer, self-checking solutions are the accurate ones).
"""

from __future__ import annotations

import dataclasses
import random

from r1jax.config import check_range

STYLES = ("direct", "steps", "reflective")


@dataclasses.dataclass(frozen=True)
class TraceMix:
  direct: float = 0.6
  steps: float = 0.3
  reflective: float = 0.1
  direct_accuracy: float = 0.15     # a one-shot guess is right this often
  step_slip: float = 0.2            # chance a plain step's result is off
  reflective_slip: float = 0.35     # chance a reflective step first comes out wrong (then fixed)

  def validate(self):
    for name in ("direct", "steps", "reflective", "direct_accuracy", "step_slip", "reflective_slip"):
      check_range(name, getattr(self, name), 0.0, 1.0)
    check_range("direct + steps + reflective", self.direct + self.steps + self.reflective, 0.999, 1.001)


def _slip(rng: random.Random, value: int) -> int:
  return max(0, value + rng.choice((-10, -2, -1, 1, 2, 10)))


def _finish(think: str, answer: int) -> str:
  return f" <think> {think} </think> <answer> {answer} </answer>"


def direct(rng: random.Random, terms: list[int], mix: TraceMix) -> str:
  total = sum(terms)
  guess = total if rng.random() < mix.direct_accuracy else _slip(rng, total)
  return _finish("I add them all at once.", guess)


def _expression(values: list[int]) -> str:
  return " + ".join(map(str, values))


# Step-by-step solutions rewrite the whole remaining sum at each step ("8 + 2 + 1 = 10 + 1"), so
# the next term is always copied from the line just written, never looked up in the prompt.
def steps(rng: random.Random, terms: list[int], mix: TraceMix) -> str:
  rest, lines = list(terms), [_expression(terms)]
  while len(rest) > 1:
    result = rest[0] + rest[1]
    if rng.random() < mix.step_slip:
      result = _slip(rng, result)
    rest = [result] + rest[2:]
    lines.append(_expression(rest))
  return _finish(" = ".join(lines) + ".", rest[0])


def reflective(rng: random.Random, terms: list[int], mix: TraceMix) -> str:
  rest, lines = list(terms), [f"{_expression(terms)}."]
  while len(rest) > 1:
    a, b = rest[0], rest[1]
    if rng.random() < mix.reflective_slip:
      wrong = [_slip(rng, a + b)] + rest[2:]
      lines.append(f"{_expression(rest)} = {_expression(wrong)}. wait, that is a mistake. "
                   f"let me check: {a} + {b} = {a + b}.")
    else:
      lines.append(f"let me verify: {a} + {b} = {a + b}.")
    rest = [a + b] + rest[2:]
    lines.append(f"{_expression(rest)}." if len(rest) > 1 else f"so the sum is {rest[0]}.")
  return _finish(" ".join(lines), rest[0])


def sample_trace(rng: random.Random, terms: list[int], mix: TraceMix) -> tuple[str, str]:
  """(style, completion text) drawn from the mix."""
  style = rng.choices(STYLES, weights=(mix.direct, mix.steps, mix.reflective))[0]
  return style, {"direct": direct, "steps": steps, "reflective": reflective}[style](rng, terms, mix)
