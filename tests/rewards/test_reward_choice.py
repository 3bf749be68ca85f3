"""Multiple-choice extraction."""
import pytest

from r1jax.rewards import choice


@pytest.mark.parametrize("answer,expected", [
    ("(B)", "B"), ("B.", "B"), ("answer: b", "B"), ("\\boxed{B}", "B"), ("The answer is B", "B"),
    ("B", "B"), ("\\text{(B)}", "B"), ("I think the answer is option C.", "C"),
    ("A good choice is (D)", "D"),
    ("A or C", None), ("(A) and (C)", None), ("answer: A, answer: B", None), ("none of them", None),
])
def test_extract_choice(answer, expected):
  assert choice.extract_choice(f"<think>A? C? hmm</think><answer>{answer}</answer>") == expected


def test_score_and_fallback_to_last_boxed():
  assert choice.score("<think>x</think><answer>The answer is (B)</answer>", "B") == 1.0
  assert choice.score("<think>x</think><answer>The answer is (C)</answer>", "B") == 0.0
  assert choice.score("thinking about (A)... so \\boxed{B}", "B") == 1.0
  assert choice.score("<answer>(A) or (B)</answer>", "B") == 0.0


def test_bad_gold_is_a_clear_error():
  with pytest.raises(ValueError, match="option letter"):
    choice.score("<answer>B</answer>", "banana")
