"""Procedural math problems with exact answers: multi-step integer arithmetic, linear equations
(integer solutions at low difficulty, fractions from difficulty 3), and countdown-style target
reaching (count the operator placements that hit a target, found by exhaustive search), plus the
demo's chained sums (:mod:`r1jax.data.tasks.sums`)."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

from r1jax.data.tasks.sums import chain_sum

MAX_DIFFICULTY = 5
_OPERAND_MAX = (9, 20, 50, 100, 999)


def _expression(rng: random.Random, n_ops: int, high: int) -> tuple[str, int]:
  """A random expression with n_ops binary operators; returns (text, precedence of its top)."""
  if n_ops == 0:
    return str(rng.randint(1, high)), 3
  left_ops = rng.randint(0, n_ops - 1)
  left, left_prec = _expression(rng, left_ops, high)
  right, right_prec = _expression(rng, n_ops - 1 - left_ops, high)
  op = rng.choice("+-*")
  prec = 1 if op in "+-" else 2
  if left_prec < prec:
    left = f"({left})"
  # Right operands of '-' (and of '*' over a sum) need brackets to keep the tree's meaning.
  if right_prec < prec or (right_prec == prec and op == "-"):
    right = f"({right})"
  return f"{left} {op} {right}", prec


def arithmetic(rng: random.Random, difficulty: int) -> tuple[str, str]:
  text, _ = _expression(rng, difficulty + 1, _OPERAND_MAX[difficulty - 1])
  value = eval(text, {"__builtins__": {}})  # our own generated integer expression
  return f"Compute the value of {text}.", str(value)


def _linear_side(a: int, b: int) -> str:
  x_term = {1: "x", -1: "-x"}.get(a, f"{a}x") if a else ""
  if not x_term:
    return str(b)
  if b == 0:
    return x_term
  return f"{x_term} {'+' if b > 0 else '-'} {abs(b)}"


def linear(rng: random.Random, difficulty: int) -> tuple[str, str]:
  span = 3 * difficulty + 2
  while True:
    a, c = rng.randint(-span, span), rng.randint(-span, span)
    b, e = rng.randint(-5 * span, 5 * span), rng.randint(-5 * span, 5 * span)
    if a == c or a == 0:
      continue
    x = Fraction(e - b, a - c)
    if difficulty < 3 and x.denominator != 1:
      continue
    break
  left = _linear_side(a, b)
  if difficulty >= 4:  # factor the left side: k(a'x + b') with the same solution
    k = rng.choice((2, 3, -2, 5))
    left = f"{k}({_linear_side(a, b)})"
    e, c = e * k, c * k
  return f"Solve for x: {left} = {_linear_side(c, e)}.", str(x)


def countdown(rng: random.Random, difficulty: int) -> tuple[str, str]:
  numbers = [rng.randint(1, 9 if difficulty < 3 else 20) for _ in range(difficulty + 2)]
  values = []
  for ops in itertools.product("+-*", repeat=len(numbers) - 1):
    text = "".join(f"{n}{op}" for n, op in zip(numbers, ops)) + str(numbers[-1])
    values.append(eval(text, {"__builtins__": {}}))
  target = rng.choice(values)
  shown = " ".join(map(str, numbers))
  prompt = (f"Place one of +, - or * between each pair of neighbouring numbers in {shown} (keep the "
            f"numbers in this order; * binds tighter than + and -). How many of the "
            f"{len(values)} possible placements give exactly {target}?")
  return prompt, str(values.count(target))


KINDS = (arithmetic, linear, countdown, chain_sum)
