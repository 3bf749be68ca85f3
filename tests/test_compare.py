"""`python -m r1jax.report --compare` on hand-written run directories: one table whose figures are
restated here from the files, one figure, and a sweep directory standing for its points."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_run(path, *, pass1, kl, steps=20, wall=12.0):
  """A run's files as r1jax.train writes them: eval every 10 steps, training metrics per step."""
  os.makedirs(path)
  with open(os.path.join(path, "eval.jsonl"), "w") as f:
    for i, p in enumerate(pass1):
      f.write(json.dumps({"step": 10 * i, "pass@1": p, "cons@k": p + 0.1,
                          "response_length": 50.0 + i}) + "\n")
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    for step in range(1, steps + 1):
      f.write(json.dumps({"step": step, "reward/mean": step / steps, "approx_kl/ref": kl * step,
                          "entropy": 1.0 / step}) + "\n")
  with open(os.path.join(path, "summary.json"), "w") as f:
    json.dump({"steps": steps, "wall_time_s": wall}, f)


def _compare(*args):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "r1jax.report", "--compare", *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc


def _rows(markdown):
  lines = [line for line in markdown.splitlines() if line.startswith("| ")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  return {cells[0]: dict(zip(header[1:], cells[1:])) for cells in
          ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def test_compare_two_runs_and_a_sweep(tmp_path):
  _fake_run(tmp_path / "a", pass1=[0.2, 0.5, 0.4], kl=0.001)
  _fake_run(tmp_path / "b", pass1=[0.2, 0.3, 0.6], kl=0.01, wall=30.0)
  _compare(str(tmp_path / "a"), str(tmp_path / "b"), f"--out={tmp_path / 'out'}")
  rows = _rows(open(tmp_path / "out" / "compare.md").read())
  assert sorted(rows) == ["a", "b"]
  a, b = rows["a"], rows["b"]
  assert (a["pass@1 first"], a["pass@1 last"], a["pass@1 best"]) == ("0.200", "0.400", "0.500")
  assert (b["pass@1 last"], b["cons@k last"], b["length last"]) == ("0.600", "0.700", "52.000")
  # The training signals at the end: the mean over the last 10% of the 20 steps (steps 19, 20).
  assert float(a["KL end"]) == pytest.approx(np.mean([0.001 * 19, 0.001 * 20]), rel=1e-3)
  assert float(b["reward end"]) == pytest.approx(np.mean([19 / 20, 20 / 20]), abs=1e-3)
  assert float(b["entropy end"]) == pytest.approx(np.mean([1 / 19, 1 / 20]), abs=1e-3)
  assert (a["steps"], b["wall s"]) == ("20", "30")
  assert os.path.getsize(tmp_path / "out" / "compare.png") > 5000

  # A sweep directory: its points are the runs; the default output goes beside them.
  sweep = tmp_path / "sweep"
  _fake_run(sweep / "kl0_clip0.2", pass1=[0.1, 0.2], kl=0.0)
  _fake_run(sweep / "kl0.01_clip0.2", pass1=[0.1, 0.3], kl=0.01)
  proc = _compare(str(sweep))
  assert sorted(_rows(proc.stdout)) == ["kl0.01_clip0.2", "kl0_clip0.2"]
  assert os.path.exists(sweep / "compare" / "compare.md")
