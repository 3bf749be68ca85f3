"""Procedural STEM multiple choice: kinematics, circuits and molar mass, with distractors built from
typical mistakes. The options are written into the prompt as ``A) ...``; the gold is the letter.
Difficulty adds steps (unit conversions, resistor networks, mole counts) and a fifth option."""

from __future__ import annotations

import random

MAX_DIFFICULTY = 5
LETTERS = "ABCDE"
_ATOMIC_MASS = {"H": 1.0, "C": 12.0, "N": 14.0, "O": 16.0, "Na": 23.0, "S": 32.0, "Cl": 35.5,
                "Ca": 40.0}
_COMPOUNDS = {  # formula -> atom counts
    "H2O": {"H": 2, "O": 1}, "CO2": {"C": 1, "O": 2}, "CH4": {"C": 1, "H": 4},
    "NH3": {"N": 1, "H": 3}, "NaCl": {"Na": 1, "Cl": 1}, "C6H12O6": {"C": 6, "H": 12, "O": 6},
    "H2SO4": {"H": 2, "S": 1, "O": 4}, "CaCO3": {"Ca": 1, "C": 1, "O": 3},
    "C2H5OH": {"C": 2, "H": 6, "O": 1}, "HNO3": {"H": 1, "N": 1, "O": 3},
}


def _fmt(value: float) -> str:
  return f"{value:.4g}"


def _kinematics(rng: random.Random, difficulty: int):
  speed, time = rng.randint(2, 30), rng.randint(2, 60)
  if difficulty >= 3:  # speed in km/h, time in minutes, answer in metres
    q = (f"A cyclist rides at a constant {speed} km/h for {time} minutes. How far do they travel, "
         "in metres?")
    right = speed * 1000 / 60 * time
    wrong = [speed * time, speed * 1000 * time, speed / 3.6 * time, right / 2]
  else:
    q = f"A cart moves at a constant {speed} m/s for {time} s. How far does it travel, in metres?"
    right = speed * time
    wrong = [speed / time, speed + time, right * 2, right / 2]
  return q, right, wrong


def _circuit(rng: random.Random, difficulty: int):
  volts = rng.choice((3, 6, 9, 12, 24))
  r1, r2 = rng.randint(1, 20), rng.randint(1, 20)
  if difficulty >= 4:
    q = (f"Resistors of {r1} ohm and {r2} ohm are connected in parallel across a {volts} V "
         "battery. What total current flows, in amperes?")
    right = volts * (1 / r1 + 1 / r2)
    wrong = [volts / (r1 + r2), volts * (r1 + r2), volts / r1, (r1 + r2) / volts]
  elif difficulty >= 2:
    q = (f"Resistors of {r1} ohm and {r2} ohm are connected in series to a {volts} V battery. "
         "What current flows, in amperes?")
    right = volts / (r1 + r2)
    wrong = [volts * (r1 + r2), volts * (1 / r1 + 1 / r2), volts / r1, (r1 + r2) / volts]
  else:
    q = f"A {volts} V battery drives current through a {r1} ohm resistor. What is the current, in amperes?"
    right = volts / r1
    wrong = [volts * r1, r1 / volts, volts + r1, volts - r1]
  return q, right, wrong


def _molar(rng: random.Random, difficulty: int):
  formula, atoms = rng.choice(sorted(_COMPOUNDS.items()))
  masses = ", ".join(f"{el} = {_ATOMIC_MASS[el]:g}" for el in sorted(atoms))
  molar = sum(_ATOMIC_MASS[el] * n for el, n in atoms.items())
  naive = sum(_ATOMIC_MASS[el] for el in atoms)  # forgetting the atom counts
  if difficulty >= 3:
    grams = rng.randint(1, 50) * molar / rng.choice((2, 4, 5, 10))
    q = (f"How many moles are in {_fmt(grams)} g of {formula}? Atomic masses (g/mol): {masses}.")
    right = grams / molar
    wrong = [grams * molar, grams / naive, molar / grams, right * 2]
  else:
    q = f"What is the molar mass of {formula} in g/mol? Atomic masses (g/mol): {masses}."
    right = molar
    wrong = [naive, molar + _ATOMIC_MASS["H"] * 2, molar * 2, molar - 1]
  return q, right, wrong


def _multiple_choice(kind):
  def generate(rng: random.Random, difficulty: int) -> tuple[str, str]:
    question, right, wrong = kind(rng, difficulty)
    n_options = 5 if difficulty >= 4 else 4
    options = [_fmt(right)]
    candidates = [_fmt(w) for w in wrong] + [_fmt(right * f) for f in (1.5, 0.75, 3, 0.1, 10)]
    for text in candidates:  # distinct distractors, mistakes first
      if text not in options and len(options) < n_options:
        options.append(text)
    rng.shuffle(options)
    lines = "\n".join(f"{LETTERS[i]}) {opt}" for i, opt in enumerate(options))
    return f"{question}\n{lines}", LETTERS[options.index(_fmt(right))]
  generate.__name__ = kind.__name__.lstrip("_")
  return generate


KINDS = tuple(_multiple_choice(k) for k in (_kinematics, _circuit, _molar))
