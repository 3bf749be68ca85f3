"""Every learner option beyond GRPO set from flags on the real command line: one optimizer step
of the smoke run per flag set, each set combining several options (few launches: the suite's
time is counted)."""
import os
import subprocess
import sys

import pytest

from r1jax.metrics import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "experiments", "r1_zero.py") + ":smoke"
ONE_STEP = ("loop.steps=1", "optim.total_steps=1")

FLAG_SETS = {
    "gspo-tis-seq-sum-overlong-ddof": (
        "rl.policy_loss=gspo", "rl.eps_low=0.0003", "rl.eps_high=0.0004",
        "rl.recompute_old_logprobs=true", "rl.is_correction=tis", "rl.is_cap=2.0",
        "rl.aggregation=seq-mean-token-sum", "rl.std_ddof=1", "rl.overlong_buffer=16",
        "rl.overlong_max_length=48"),
    "cispo-mis-refill-kl-in-reward": (
        "rl.policy_loss=cispo", "rl.eps_high=4.0", "rl.recompute_old_logprobs=true",
        "rl.is_correction=mis", "rl.aggregation=token-mean", "rl.dynamic_sampling=true",
        "rl.dynamic_sampling_max_rounds=2", "rl.kl_placement=reward", "rl.kl_coef=0.01"),
}


@pytest.mark.parametrize("name", FLAG_SETS)
def test_learner_options_run_from_flags(name, tmp_path):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  args = [sys.executable, "-m", "r1jax.main", f"--config={SMOKE}", f"--workdir={tmp_path}",
          *[f"--config.{o}" for o in ONE_STEP + FLAG_SETS[name]]]
  proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  [record] = read_jsonl(tmp_path / "metrics.jsonl")
  # The sampler and the learner's recomputed pi_old are one policy in float32: they agree to
  # rounding, token for token (a shifted or misaligned recompute would differ by whole nats).
  assert abs(record["mismatch/kl"]) < 1e-4        # k3 of ~0 log-ratios: rounding either side
  assert record["mismatch/max_abs_log_ratio"] < 1e-2
  assert 0.9 < record["is/weight_mean"] <= 1.0 + 1e-3
  assert record["grad_norm"] > 0
  if "rl.dynamic_sampling=true" in FLAG_SETS[name]:
    assert 1 <= record["dynamic_sampling/rounds"] <= 2
    assert (record["dynamic_sampling/informative_groups"]
            + record["dynamic_sampling/filled_groups"]) == 8        # questions_per_step
