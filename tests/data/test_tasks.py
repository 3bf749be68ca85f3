import ast
import json

import pytest

from r1jax.data import tasks
from r1jax.data.schema import DATA_TYPES, FIELDS, DataError
from r1jax.data.tasks import math as math_tasks
from r1jax.data.tasks import sums


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_deterministic_and_seed_dependent(data_type):
  a = tasks.generate(data_type, 2, "train", 20, seed=0)
  assert a == tasks.generate(data_type, 2, "train", 20, seed=0)
  b = tasks.generate(data_type, 2, "train", 20, seed=1)
  assert [e["prompt"] for e in a] != [e["prompt"] for e in b]


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_splits_never_overlap_even_across_seeds(data_type):
  prompts = {split: {e["prompt"] for seed in (0, 1) for difficulty in (1, 3)
                     for e in tasks.generate(data_type, difficulty, split, 15, seed)}
             for split in ("train", "eval", "test")}
  assert not prompts["train"] & prompts["eval"]
  assert not prompts["train"] & prompts["test"]
  assert not prompts["eval"] & prompts["test"]


@pytest.mark.parametrize("data_type", DATA_TYPES)
@pytest.mark.parametrize("difficulty", [1, 5])
def test_examples_follow_the_schema(data_type, difficulty):
  examples = tasks.generate(data_type, difficulty, "eval", 10, seed=3)
  assert len({e["prompt"] for e in examples}) == 10
  for e in examples:
    assert tuple(sorted(e)) == tuple(sorted(FIELDS))
    assert e["data_type"] == data_type and e["difficulty"] == difficulty


def test_gold_answers_are_checkable():
  for e in tasks.generate("stem", 4, "train", 20, seed=0):
    letters = [line[0] for line in e["prompt"].splitlines() if line[1:3] == ") "]
    assert letters == list("ABCDE") and e["gold"] in letters
  for e in tasks.generate("code", 3, "train", 20, seed=0):
    if e["gold"].startswith("["):
      pairs = json.loads(e["gold"])
      assert all(set(p) == {"input", "output"} for p in pairs)
    else:
      assert all(line.startswith("assert solve(") for line in e["gold"].splitlines())
      ast.parse(e["gold"])


def test_arithmetic_gold_is_the_value_and_harder_means_longer():
  import random
  easy = [math_tasks.arithmetic(random.Random(i), 1) for i in range(20)]
  hard = [math_tasks.arithmetic(random.Random(i), 5) for i in range(20)]
  for prompt, gold in easy:
    assert eval(prompt.removeprefix("Compute the value of ").rstrip(".")) == int(gold)
  assert sum(len(p) for p, _ in hard) > 2 * sum(len(p) for p, _ in easy)


def test_countdown_count_is_brute_force_verified():
  import itertools
  import random
  import re
  prompt, gold = math_tasks.countdown(random.Random(7), 2)
  numbers = re.search(r"numbers in ([\d ]+) \(", prompt).group(1).split()
  target = int(re.search(r"give exactly (-?\d+)", prompt).group(1))
  hits = sum(eval("".join(n + o for n, o in zip(numbers, ops)) + numbers[-1]) == target
             for ops in itertools.product("+-*", repeat=len(numbers) - 1))
  assert hits == int(gold) >= 1


def test_too_small_a_problem_space_is_an_error():
  with pytest.raises(DataError, match="distinct"):
    tasks.generate("code", 1, "test", 10_000, seed=0)
  with pytest.raises(ValueError, match="difficulty"):
    tasks.generate("math", 9, "train", 1, seed=0)


def test_kinds_restrict_the_generators():
  names = tasks.kind_names("math")
  assert names == ("arithmetic", "linear", "countdown", "chain_sum")
  for e in tasks.generate("math", 2, "train", 10, seed=0, kinds=("chain_sum",)):
    terms = e["prompt"].removeprefix("Compute ").split(" + ")
    assert len(terms) == 2 + sums.EXTRA_TERMS and sum(map(int, terms)) == int(e["gold"])
  with pytest.raises(ValueError, match="chain_sum"):
    tasks.generate("code", 1, "train", 1, seed=0, kinds=("chain_sum",))
