"""Code verifier: the execute() contract on honest programs, test formats and scoring modes."""
import json

import pytest

from r1jax.rewards import code

ADD = "def add(a, b):\n    return a + b\n"
ASSERTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add('a', 'b') == 'ab'\n"
STDIO = json.dumps([{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10"}])


@pytest.fixture
def limits(scaled):
  # The wall clock is only the sandbox's backstop: stretched to this machine as loaded now.
  return {"time_limit_s": 1.0, "memory_limit_mb": 256, "wall_limit_s": scaled(10)}


def test_asserts_all_pass(limits):
  assert code.execute(ADD, ASSERTS, **limits) == code.ExecResult(3, 3, "ok", "")


def test_asserts_partial_pass_is_failed_with_count(limits):
  program = "def add(a, b):\n    return a + b if a != -1 else 7\n"
  result = code.execute(program, ASSERTS, **limits)
  assert (result.passed, result.total, result.status) == (2, 3, "failed")


def test_stdio_pairs_compare_whitespace_tolerantly(limits):
  program = "a, b = map(int, input().split())\nprint(a + b, '  ')\nprint()\n"
  assert code.execute(program, STDIO, **limits).status == "ok"
  wrong = "a, b = map(int, input().split())\nprint(a * b)\n"
  result = code.execute(wrong, STDIO, **limits)
  assert (result.passed, result.total, result.status) == (0, 2, "failed")


def test_stdio_sys_exit_zero_is_normal_termination(limits):
  program = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\nsys.exit(0)\n"
  assert code.execute(program, STDIO, **limits).passed == 2


def test_trusted_parts_of_an_assert_run_in_the_parent(limits):
  tests = ("import math\nEPS = 1e-6\n"
           "assert abs(area(1.0) - math.pi) < EPS\n"
           "assert sorted(roots()) == [1, 2]\n"
           "assert isinstance(area(2.0), float)\n")
  spec = code.parse_tests(tests)
  assert [a.remote for a in spec.asserts] == [("area(1.0)",), ("roots()",), ("area(2.0)",)]
  program = "import math\ndef area(r):\n    return math.pi * r * r\ndef roots():\n    return {2, 1}\n"
  assert code.execute(program, tests, **limits).status == "ok"


def test_syntax_error_and_load_failure_are_crashes(limits):
  assert code.execute("def add(a, b) return a", ASSERTS, **limits).status == "crashed"
  assert code.execute("raise RuntimeError('boom')", ASSERTS, **limits).status == "crashed"


def test_statuses_for_time_memory_and_output(limits):
  assert code.execute("while True:\n    pass", ASSERTS, **limits).status == "timeout"
  hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(10 << 20))\n"
  assert code.execute(hog, ASSERTS, **limits).status == "memory"
  flood = "while True:\n    print('x' * 4096)\n"
  assert code.execute(flood, STDIO, **limits).status == "output_limit"


@pytest.mark.parametrize("tests,match", [
    ("[1, 2]", "list of"), ("[{]", "not valid JSON"), ("x = 1", "no assert"), ("assert (", "parse"),
])
def test_malformed_tests_are_clear_errors(tests, match, limits):
  with pytest.raises(ValueError, match=match):
    code.execute(ADD, tests, **limits)


def test_score_extracts_the_answer_code_and_applies_the_mode(limits):
  half = "def add(a, b):\n    return a + b if a > 0 else 0\n"
  completion = f"<think>```python\nbroken(\n```</think><answer>```python\n{half}```</answer>"
  assert code.score(completion, ASSERTS, **limits) == pytest.approx(2 / 3)
  assert code.score(completion, ASSERTS, mode="all_or_nothing", **limits) == 0.0
  assert code.score(f"<answer>```python\n{ADD}```</answer>", ASSERTS, mode="all_or_nothing",
                    **limits) == 1.0
  assert code.judge("<answer>no code</answer>", ASSERTS, **limits) == (0.0, "no_answer")
