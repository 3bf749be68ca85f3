"""Routing replay through the RL loop, via the real command line on `r1_zero.py:smoke_v3`: the
rollout's experts travel in the learner batch to the old-policy, reference and learner forwards,
and the step logs `moe/replay_mismatch`."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from r1jax.models import MLAConfig, ModelConfig, MoEConfig, init, save_hf
from r1jax.models.presets import PRESETS
from r1jax.policy import load_policy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _near_tie_policy(directory) -> str:
  """smoke_v3's tiny DeepSeek-V3 shape with a router whose scores nearly tie, so the sampler's
  one-token decode and the learner's teacher-forced forward (same weights, other rounding) pick
  different experts for some tokens unless the sampler's choice is replayed."""
  preset = dict(PRESETS["deepseek-v3-tiny"])
  cfg = ModelConfig(**{**preset, "mla": MLAConfig(**preset["mla"]),
                       "moe": MoEConfig(**preset["moe"])})
  params = init(cfg, jax.random.key(0), init_std=0.3)
  params["moe"]["moe"]["router"] = params["moe"]["moe"]["router"] * 0.02
  save_hf(cfg, jax.device_get(params), str(directory))
  return str(directory)


def _first_step(workdir, base_model, replay: bool) -> dict:
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "r1jax.main", "--config=experiments/r1_zero.py:smoke_v3",
       f"--workdir={workdir}", f"--config.base_model={base_model}",
       f"--config.model.moe.routing_replay={str(replay).lower()}",
       "--config.rl.recompute_old_logprobs=true", "--config.model.compute_dtype=bfloat16",
       "--config.loop.steps=1",
       "--config.optim.total_steps=1", "--config.rl.num_generations=8",
       "--config.data.questions_per_step=2", "--config.rollout.max_new_tokens=64",
       "--config.eval.num_problems=2", "--config.loop.log_samples=0"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return json.loads(f.readline())


def test_a_policy_loaded_from_a_checkpoint_keeps_the_experiments_moe_runtime_settings(tmp_path):
  # A Hugging Face config carries no routing replay: the experiment's must survive the load.
  base = _near_tie_policy(tmp_path / "base")
  preset = dict(PRESETS["deepseek-v3-tiny"])
  wanted = ModelConfig(moe=MoEConfig(**preset["moe"], routing_replay=True, redundant_experts=2,
                                     capacity_factor=2.0))
  cfg, _, _ = load_policy(base, wanted, "char", 0)
  assert cfg.replays_routes and cfg.moe.redundant_experts == 2 and cfg.moe.capacity_factor == 2.0
  assert cfg.mla is not None and cfg.moe.n_group == preset["moe"]["n_group"]


@pytest.mark.slow
def test_replay_makes_the_learners_old_logprobs_match_the_samplers(tmp_path):
  base = _near_tie_policy(tmp_path / "base")
  replayed = _first_step(tmp_path / "replay", base, replay=True)
  fresh = _first_step(tmp_path / "fresh", base, replay=False)
  print({k: (replayed.get(k), fresh.get(k))
         for k in ("moe/replay_mismatch", "mismatch/max_abs_log_ratio", "mismatch/kl")})
  # In bfloat16 the learner's router would change some of the sampler's decisions (about 1 in
  # 300 here: the rollout is long enough for a few) ...
  assert 0 < replayed["moe/replay_mismatch"] < 0.5
  assert "moe/replay_mismatch" not in fresh
  # ... so without replay the recomputed pi_old jumps where a decision flips; with it, the
  # learner's forward uses the sampler's experts and differs by bfloat16 rounding only.
  assert replayed["mismatch/max_abs_log_ratio"] < 0.5
  assert fresh["mismatch/max_abs_log_ratio"] > 3 * replayed["mismatch/max_abs_log_ratio"]
