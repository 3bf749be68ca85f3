"""The evaluate job's per-difficulty table: summarize() over each difficulty's own samples."""
import pytest

from r1jax.jobs.evaluate import by_difficulty


def _sample(problem, correct, difficulty, answer):
  return {"problem": problem, "completion": f"<think>x</think><answer>{answer}</answer>",
          "correct": correct, "length": 3, "data_type": "math", "difficulty": difficulty}


def test_each_difficulty_is_summarised_on_its_own_problems():
  samples = [_sample("a", True, 1, "3"), _sample("a", False, 1, "4"),
             _sample("b", False, 2, "5"), _sample("b", False, 2, "5"),
             _sample("c", True, 2, "7"), _sample("c", True, 2, "7")]
  table = by_difficulty(samples, k=2)
  assert sorted(table) == [1, 2]
  assert table[1]["pass@1"] == pytest.approx(0.5) and table[1]["cons@k"] == 1.0
  assert table[2]["pass@1"] == pytest.approx(0.5) and table[2]["cons@k"] == pytest.approx(0.5)
