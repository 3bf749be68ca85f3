"""Format reward."""
import pytest

from r1jax.rewards import fmt


@pytest.mark.parametrize("completion,expected", [
    ("<think>reasoning</think><answer>42</answer>", 1.0),
    ("  <think>a\nb</think>\n\n<answer> 42 </answer>\n  ", 1.0),
    ("<think>r</think><answer>42</answer> trailing words", 0.0),
    ("preamble <think>r</think><answer>42</answer>", 0.0),
    ("<think>r</think> middle <answer>42</answer>", 0.0),
    ("<think>r</think><answer>1</answer><answer>2</answer>", 0.0),
    ("<think>r</think><think>s</think><answer>1</answer>", 0.0),
    ("<think>a <think>b</think> c</think><answer>1</answer>", 0.0),
    ("<think>r <answer>1</answer></think><answer>1</answer>", 0.0),
    ("<answer>1</answer><think>r</think>", 0.0),
    ("<think>r</think><answer>  </answer>", 0.0),
    ("<think>r</think><answer>1", 0.0),
    ("just an answer", 0.0),
])
def test_format(completion, expected):
  assert fmt.score(completion) == expected
