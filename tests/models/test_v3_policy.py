"""A tiny DeepSeek-V3-shaped policy (MLA, grouped sigmoid routing, MTP, routing replay) runs the
R1-Zero loop end to end through the real command line, and its export reads back as DeepSeek-V3."""
import json
import os
import subprocess
import sys

import pytest

from r1jax.models import load_hf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_smoke_v3_runs_end_to_end_and_exports(tmp_path):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "r1jax.main", "--config=experiments/r1_zero.py:smoke_v3",
       f"--workdir={tmp_path}", "--config.loop.steps=1", "--config.optim.total_steps=1",
       "--config.rl.num_generations=4", "--config.data.questions_per_step=2",
       "--config.rollout.max_new_tokens=16", "--config.eval.num_problems=2",
       "--config.loop.log_samples=0"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 1
  cfg, params = load_hf(tmp_path / "export")
  assert cfg.mla is not None and cfg.mtp_layers == 1 and cfg.moe.n_group == 4
  assert json.loads((tmp_path / "export" / "config.json").read_text())["model_type"] == "deepseek_v3"
  assert "mtp" in params
