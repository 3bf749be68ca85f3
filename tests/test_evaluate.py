"""Evaluation metrics against hand-computed examples."""
import math

import pytest

from r1jax import evaluate


def test_pass_at_k_matches_hand_computation():
  # n=4, c=1: pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6
  assert evaluate.pass_at_k(4, 1, 2) == pytest.approx(0.5)
  assert evaluate.pass_at_k(4, 0, 3) == 0.0
  assert evaluate.pass_at_k(4, 2, 3) == 1.0          # any 3 of 4 include a correct one
  assert evaluate.pass_at_k(10, 3, 1) == pytest.approx(0.3)
  assert evaluate.pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
  with pytest.raises(ValueError, match="at least 6"):
    evaluate.pass_at_k(5, 1, 6)


def test_majority_vote_uses_most_frequent_answer_first_seen_on_ties():
  assert evaluate.majority_correct(["7", "5", "5", ""], [True, False, False, False]) is False
  assert evaluate.majority_correct(["7", "5", "7", "5"], [True, False, True, False]) is True
  assert evaluate.majority_correct(["", ""], [False, False]) is False
  assert evaluate.extracted_answer("<think>x</think> <answer>  42 </answer>") == "42"


def _sample(problem, answer, correct, length, text="", difficulty=1):
  return {"problem": problem, "completion": f"<think>{text}</think><answer>{answer}</answer>",
          "correct": correct, "length": length, "data_type": "math", "difficulty": difficulty}


def test_summarize_on_a_hand_worked_table():
  samples = [_sample("a", "3", True, 10, "wait, check"), _sample("a", "4", False, 20),
             _sample("a", "3", True, 30, "however"), _sample("a", "4", False, 40),
             _sample("b", "1", False, 50, difficulty=2), _sample("b", "1", False, 50, difficulty=2),
             _sample("b", "2", True, 70, "Verify", difficulty=2), _sample("b", "9", False, 10, difficulty=2)]
  m = evaluate.summarize(samples, k=4, pass_at=(1, 2))
  assert m["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
  assert m["cons@4"] == m["cons@k"] == pytest.approx(0.5)   # a: "3" wins the tie; b: "1" wrong
  assert m["pass@2_unbiased"] == pytest.approx((1 - 1 / 6 + 1 - 3 / 6) / 2)
  assert m["response_length/difficulty=1"] == 25 and m["response_length/difficulty=2"] == 45
  assert m["reflective_words_per_response"] == pytest.approx((3 / 4 + 1 / 4) / 2)
  assert m["reflective_response_share"] == pytest.approx((2 / 4 + 1 / 4) / 2)
  assert m["pass@1/difficulty=2"] == 0.25


def test_summarize_rejects_uneven_groups():
  with pytest.raises(ValueError, match="4 samples"):
    evaluate.summarize([_sample("a", "1", True, 1)], k=4)
