"""Answer extraction shared by the verifiers."""
from r1jax.rewards import extract


def test_last_answer_block_and_nested_boxed_braces():
  text = "<answer>1</answer> x <answer>\\boxed{\\frac{1}{2}} and \\boxed{\\frac{3}{\\sqrt{4}}}</answer>"
  assert extract.answer_block(text).startswith("\\boxed{\\frac{1}{2}}")
  assert extract.final_answer(text) == "\\frac{3}{\\sqrt{4}}"


def test_unclosed_boxed_is_ignored():
  assert extract.last_boxed("\\boxed{1} \\boxed{2") == "1"
  assert extract.final_answer("plain text") is None


def test_fenced_code_takes_the_last_python_block_of_the_answer():
  text = ("<think>```python\nthink = 1\n```</think><answer>```text\nno\n```\n"
          "```python\nfirst = 1\n```\n```py\nsecond = 2\n```</answer>")
  assert extract.fenced_code(extract.answer_region(text)) == "second = 2\n"
  assert extract.fenced_code("no code") is None
