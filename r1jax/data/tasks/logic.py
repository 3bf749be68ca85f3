"""Procedural logic puzzles with one exact answer: continue a number sequence, order people from
comparison clues (answer: a name), and predict a small program's output (code-IO). Difficulty
raises the sequence family, the number of people and the program's loop length and nesting."""

from __future__ import annotations

import random

MAX_DIFFICULTY = 5
_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun")


def sequence(rng: random.Random, difficulty: int) -> tuple[str, str]:
  a, d = rng.randint(-10, 20), rng.randint(2, 9) * rng.choice((1, -1))
  family = rng.randint(0, min(difficulty, 4))
  if family == 0:
    terms = [a + d * i for i in range(7)]
  elif family == 1:
    terms = [a * rng.choice((2, 3)) ** i if a else (i + 1) * d for i in range(7)]
  elif family == 2:
    c = rng.randint(1, 3)
    terms = [a + d * i + c * i * i for i in range(7)]
  elif family == 3:
    terms = [a, d]
    for _ in range(5):
      terms.append(terms[-1] + terms[-2])
  else:  # two interleaved arithmetic sequences
    b, e = rng.randint(-10, 20), rng.randint(2, 9)
    terms = [a + d * (i // 2) if i % 2 == 0 else b + e * (i // 2) for i in range(7)]
  shown = ", ".join(map(str, terms[:-1]))
  return f"What is the next number in the sequence {shown}, ...?", str(terms[-1])


def ordering(rng: random.Random, difficulty: int) -> tuple[str, str]:
  people = rng.sample(_NAMES, difficulty + 2)  # tallest first
  clues = [f"{people[i]} is taller than {people[i + 1]}." for i in range(len(people) - 1)]
  clues += [f"{people[j]} is shorter than {people[i]}."  # redundant but true, as noise
            for i, j in [sorted(rng.sample(range(len(people)), 2)) for _ in range(difficulty // 2)]]
  rng.shuffle(clues)
  rank = rng.randrange(len(people))
  ordinal = ("tallest" if rank == 0 else "shortest" if rank == len(people) - 1
             else f"number {rank + 1} from the tallest")
  names = ", ".join(sorted(people))
  return (f"{names} have different heights. {' '.join(clues)} Who is {ordinal}? Answer with the "
          "name only."), people[rank]


def program_output(rng: random.Random, difficulty: int) -> tuple[str, str]:
  x0, n = rng.randint(0, 9), rng.randint(2, 2 + 2 * difficulty)
  m, b, c = rng.randint(7, 97), rng.randint(2, 9), rng.randint(1, 9)
  lines = [f"x = {x0}", f"for i in range({n}):"]
  if difficulty >= 3:
    lines += [f"    if i % 2 == 0:", f"        x = (x * {b} + i) % {m}",
              "    else:", f"        x = x + {c}"]
  else:
    lines += [f"    x = (x * {b} + {c}) % {m}"]
  if difficulty >= 5:
    lines = [lines[0], "for j in range(2):"] + ["    " + line for line in lines[1:]]
  lines.append("print(x)")
  program = "\n".join(lines)
  scope: dict = {}
  exec(program.replace("print(x)", "result = x"), {"__builtins__": {"range": range}}, scope)
  return f"What does this Python program print?\n\n{program}", str(scope["result"])


KINDS = (sequence, ordering, program_output)
