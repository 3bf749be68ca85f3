"""The `control` job: the base model evaluated where an RL run evaluates equals a real lr-0 run."""
import json
import os
import subprocess
import sys

import pytest

from r1jax.jobs.control import evaluation_steps
from r1jax.metrics import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "experiments", "r1_zero.py") + ":smoke"
SHORT = ("--config.loop.steps=2", "--config.optim.total_steps=2", "--config.loop.eval_every=1")


def _main(workdir, *flags):
  proc = subprocess.run([sys.executable, "-m", "r1jax.main", f"--config={SMOKE}",
                         f"--workdir={workdir}", *SHORT, *flags],
                        cwd=ROOT, env=dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc


@pytest.mark.parametrize("steps, every, per_rollout, expected", [
    (60, 10, 2, [0, 10, 20, 30, 40, 50, 60]),
    (3, 2, 1, [0, 2, 3]),
    (10, 3, 4, [0, 4, 8, 10]),       # a rollout that crosses a boundary evaluates after it
    (5, 0, 2, [0, 5]),               # no periodic evaluation: first and last only
])
def test_evaluation_steps_follow_the_loop(steps, every, per_rollout, expected):
  assert evaluation_steps(steps, every, per_rollout) == expected


@pytest.mark.slow
def test_control_job_equals_a_real_learning_rate_zero_run(tmp_path):
  _main(tmp_path / "lr0", "--config.optim.lr=0.0")
  _main(tmp_path / "control", "--config.job=control")
  real = read_jsonl(tmp_path / "lr0" / "eval.jsonl")
  computed = read_jsonl(tmp_path / "control" / "eval.jsonl")
  assert [r["step"] for r in real] == [0, 1, 2]
  assert computed == real                                   # every metric, exactly
  summary = json.load(open(tmp_path / "control" / "summary.json"))
  assert summary["rollouts"] == 0 and summary["last"] == json.load(
      open(tmp_path / "lr0" / "summary.json"))["last"]
  assert not os.path.exists(tmp_path / "control" / "metrics.jsonl") or not read_jsonl(
      tmp_path / "control" / "metrics.jsonl")               # nothing was trained


def test_control_job_refuses_dynamic_sampling(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "r1jax.main", f"--config={SMOKE}",
                         f"--workdir={tmp_path}", "--config.job=control",
                         "--config.rl.dynamic_sampling=true"],
                        cwd=ROOT, env=dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2
  assert "rl.dynamic_sampling" in proc.stderr and "control job" in proc.stderr
