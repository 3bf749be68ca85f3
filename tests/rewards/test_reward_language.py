"""Language-consistency reward."""
import pytest

from r1jax.rewards import language


def test_pure_english_and_pure_chinese():
  assert language.consistency("<think>We add the two numbers.</think><answer>3</answer>") == 1.0
  assert language.consistency("<think>我们把两个数相加</think><answer>3</answer>", "zh") == 1.0
  assert language.consistency("<think>我们把两个数相加</think><answer>3</answer>", "en") == 0.0


def test_mixed_is_the_fraction_of_words():
  # 3 English words + 5 Han characters (each one a word)
  value = language.consistency("<think>first we compute 结果是多少</think>", "en")
  assert value == pytest.approx(3 / 8)


def test_math_and_code_are_not_counted():
  text = ("<think>so $\\alpha + \\beta = \\gamma$ and \\(x^2\\) and ```python\nprint('你好')\n```"
          " and `变量` done 42</think><answer>1</answer>")
  assert language.consistency(text, "en") == 1.0


def test_empty_cot_earns_nothing_and_result_is_deterministic():
  assert language.consistency("<think> $x$ 123 </think><answer>1</answer>") == 0.0
  text = "<think>mixed 中文 text Привет</think>"
  assert language.consistency(text) == language.consistency(text) == pytest.approx(2 / 5)


def test_unknown_language_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown target language"):
    language.consistency("<think>x</think>", "xx")
