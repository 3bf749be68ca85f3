"""The paper's evaluation protocol: unbiased pass@k against a brute-force count and NumPy's form,
thinking tokens, the local benchmark readers, and `evaluate` on small benchmark files through
the real command line (experiments/eval_r1.py:tiny)."""
import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from r1jax.data import benchmarks
from r1jax.data.schema import DataError
from r1jax.evaluate import extracted_answer, pass_at_k, summarize, thinking_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _brute_pass_at_k(correct, k):
  """The share of all k-subsets of the samples that hold a correct one."""
  subsets = list(itertools.combinations(correct, k))
  return sum(any(s) for s in subsets) / len(subsets)


def _numpy_pass_at_k(n, c, k):
  """Chen et al.'s numerically stable product form."""
  if n - c < k:
    return 1.0
  return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_unbiased_pass_at_k_matches_counting_and_numpy(n):
  for c in range(n + 1):
    correct = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
      assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(correct, k), abs=1e-12)
      assert pass_at_k(n, c, k) == pytest.approx(_numpy_pass_at_k(n, c, k), abs=1e-12)
  # Large n, where the counting is out of reach: the two closed forms still agree.
  assert pass_at_k(64, 5, 16) == pytest.approx(_numpy_pass_at_k(64, 5, 16), rel=1e-12)


def test_thinking_text_and_its_mean_by_difficulty():
  assert thinking_text("<think>a b</think><answer>1</answer>") == "a b"
  assert thinking_text("a b</think><answer>1</answer>") == "a b"    # opened by the prompt
  assert thinking_text("<think>still going") == "still going"        # the budget ran out
  samples = [{"problem": p, "completion": "<answer>1</answer>", "correct": True, "length": 9,
              "data_type": "math", "difficulty": d, "thinking_tokens": t}
             for p, d, t in (("a", 1, 10), ("a", 1, 20), ("b", 2, 40), ("b", 2, 60))]
  out = summarize(samples, 2)
  assert out["thinking_tokens"] == pytest.approx(32.5)
  assert out["thinking_tokens/difficulty=1"] == pytest.approx(15.0)
  assert out["thinking_tokens/difficulty=2"] == pytest.approx(50.0)


def _write(root, name, rows):
  folder = root / "r1_benchmarks" / name
  folder.mkdir(parents=True, exist_ok=True)
  with open(folder / "test.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def _benchmark_files(root):
  # Sums in the demo model's own phrasing, so that some answers are right.
  _write(root, "math500", [{"problem": "Compute 2 + 3", "answer": "5", "level": 1,
                            "unique_id": "t/1"},
                           {"problem": "Compute 9 + 8 + 7", "solution": "so \\boxed{24}",
                            "level": 3}])
  _write(root, "aime", [{"id": "2024-I-1", "problem": "Compute 1 + 2 + 3", "answer": 6},
                        {"problem": "Compute 4 + 4", "answer": "8"}])
  _write(root, "gpqa", [{"Question": "2+2?", "Correct Answer": "4", "Incorrect Answer 1": "3",
                         "Incorrect Answer 2": "5", "Incorrect Answer 3": "6"},
                        {"Question": "1+1?", "Correct Answer": "2", "Incorrect Answer 1": "7",
                         "Incorrect Answer 2": "8", "Incorrect Answer 3": "9"}])
  stdin = json.dumps([{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}])
  _write(root, "livecodebench", [
      {"question_id": "q1", "question_content": "Print a+b.", "public_test_cases": stdin,
       "private_test_cases": [{"input": "1 1\n", "output": "2\n"}], "difficulty": "easy"},
      {"question_id": "q2", "question_content": "Print a*b.", "public_test_cases": stdin.replace(
          "5", "6"), "difficulty": "hard"},
      {"question_id": "q3", "question_content": "def f(x):", "difficulty": "medium",
       "public_test_cases": [{"input": "1", "output": "2", "testtype": "functional"}]}])


def test_benchmark_files_become_examples(tmp_path):
  _benchmark_files(tmp_path)
  math, _ = benchmarks.load("math500", str(tmp_path))
  assert [(e["gold"], e["difficulty"]) for e in math] == [("5", 1), ("24", 3)]
  aime, _ = benchmarks.load("aime", str(tmp_path))
  assert [(e["gold"], e["source_id"]) for e in aime] == [("6", "aime/2024-I-1"), ("8", "aime/1")]
  gpqa, _ = benchmarks.load("gpqa", str(tmp_path))
  for example, right in zip(gpqa, ("4", "2")):
    assert example["data_type"] == "stem"
    assert f"{example['gold']}) {right}\n" in example["prompt"] + "\n"   # the gold letter's option
  assert gpqa == benchmarks.load("gpqa", str(tmp_path))[0]                # the same order each time
  code, skipped = benchmarks.load("livecodebench", str(tmp_path))
  assert skipped == 1 and [e["difficulty"] for e in code] == [1, 3]
  assert json.loads(code[0]["gold"]) == [{"input": "2 3\n", "output": "5\n"},
                                        {"input": "1 1\n", "output": "2\n"}]
  with pytest.raises(DataError, match=r"benchmark aime: no test.jsonl .* 'problem' and 'answer'"):
    benchmarks.load("aime", str(tmp_path / "elsewhere"))
  _write(tmp_path, "livecodebench", [{"question_content": "x", "public_test_cases": "[]",
                                      "difficulty": "extreme"}])
  with pytest.raises(DataError, match="no tests"):
    benchmarks.load("livecodebench", str(tmp_path))


def test_paper_preset_is_the_papers_protocol():
  import importlib.util

  from r1jax import experiment
  spec = importlib.util.spec_from_file_location("eval_r1", f"{ROOT}/experiments/eval_r1.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  exp = experiment.load(module.get_config("paper"))
  assert exp.job == "evaluate"
  assert (exp.eval.temperature, exp.eval.top_p, exp.eval.max_new_tokens) == (0.6, 0.95, 32_768)
  assert exp.eval.num_samples == 64 and exp.eval.pass_at == (1, 64)
  assert exp.benchmarks.names == ("aime", "math500", "gpqa", "livecodebench")
  with pytest.raises(Exception, match=r"benchmarks.names\[0\].*'math500'"):
    config = module.get_config("paper")
    config.benchmarks.names = ("math5000",)
    experiment.load(config)


@pytest.mark.slow
def test_evaluate_job_runs_the_protocol_on_local_benchmarks(tmp_path):
  manual = tmp_path / "manual"
  _benchmark_files(manual)
  workdir = tmp_path / "run"
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "r1jax.main", f"--config={ROOT}/experiments/eval_r1.py:tiny",
       f"--workdir={workdir}", f"--config.data.manual_dir={manual}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(workdir / "summary.json"))
  assert summary["protocol"] == {"k": 4, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 96,
                                 "template": "r1_zero"}
  assert list(summary["benchmarks"]) == ["aime", "math500", "gpqa", "livecodebench"]
  samples = [json.loads(line) for line in open(workdir / "samples.jsonl")]
  for name, result in summary["benchmarks"].items():
    mine = [s for s in samples if s["benchmark"] == name]
    assert len(mine) == 4 * result["problems"]
    by_problem = {}
    for s in mine:
      by_problem.setdefault(s["source_id"], []).append(s)
    assert all(len(group) == 4 for group in by_problem.values())
    # Every figure restated from the samples.
    pass1 = np.mean([np.mean([s["correct"] for s in g]) for g in by_problem.values()])
    pass4 = np.mean([_numpy_pass_at_k(4, sum(s["correct"] for s in g), 4)
                     for g in by_problem.values()])
    thinking = np.mean([np.mean([s["thinking_tokens"] for s in g]) for g in by_problem.values()])
    metrics = result["metrics"]
    assert metrics["pass@1"] == pytest.approx(pass1)
    assert metrics["pass@4_unbiased"] == pytest.approx(pass4)
    assert metrics["thinking_tokens"] == pytest.approx(thinking)
    for s in mine:
      assert 0 <= s["thinking_tokens"] <= s["length"] + 1
    votes = []
    for g in by_problem.values():
      answers = [extracted_answer(s["completion"]) for s in g]
      counted = {a: answers.count(a) for a in answers if a}
      votes.append(bool(counted) and g[answers.index(max(counted, key=lambda a: (
          counted[a], -answers.index(a))))]["correct"])
    assert metrics["cons@k"] == pytest.approx(np.mean(votes))
  assert max(summary["benchmarks"][b]["metrics"]["pass@1"] for b in ("aime", "math500")) > 0
  assert summary["benchmarks"]["livecodebench"]["skipped"] == 1
  assert sorted(summary["benchmarks"]["math500"]["by_difficulty"]) == ["1", "3"]
  table = open(workdir / "benchmarks.md").read()
  for row in ("| English | GPQA Diamond (Pass@1) |", "| Code | LiveCodeBench (Pass@1) |",
              "| Math | AIME (Cons@4) |", "| Math | MATH-500 (Pass@4) |", "level 3"):
    assert row in table
  assert table.index("GPQA") < table.index("LiveCodeBench") < table.index("AIME")
  assert os.path.getsize(workdir / "thinking_tokens.png") > 1000
  assert not math.isnan(summary["benchmarks"]["aime"]["metrics"]["thinking_tokens"])
