"""Evaluating a policy outside the RL loop: k samples per eval problem, scored, summarized.

The SFT job, the pipeline and the ablations use it to put SFT'd and distilled models in the same
table as RL runs. It is the RL trainer's evaluation (same `sample_and_score`, same `summarize`,
same eval section), plus per-difficulty tables: `summarize` over each difficulty's samples.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax

from r1jax import mesh as mesh_lib
from r1jax.data.pipeline import load_examples, make_batch
from r1jax.data.tokenizers import Tokenizer
from r1jax.evaluate import summarize
from r1jax.models import ModelConfig
from r1jax.policy import load_policy, sampling_for
from r1jax.rewards.service import RewardService
from r1jax.rl.experience import Scored, sample_and_score


def scored_samples(scored: Scored, batch, k: int) -> list[dict[str, Any]]:
  """The per-sample records `summarize` reads, from k scored samples per prompt of `batch`."""
  lengths = scored.arrays["completion_mask"].sum(1)
  return [{"problem": i // k, "completion": text,
           "correct": scored.rewards.components["accuracy"][i] >= 1.0, "length": int(lengths[i]),
           "data_type": batch["data_type"][i // k], "difficulty": int(batch["difficulty"][i // k])}
          for i, text in enumerate(scored.texts)]


def by_difficulty(samples: list[dict[str, Any]], k: int) -> dict[int, dict[str, float]]:
  """summarize() of each difficulty's samples: pass@1 and cons@k per difficulty ("per task")."""
  levels = sorted({s["difficulty"] for s in samples})
  return {d: summarize([s for s in samples if s["difficulty"] == d], k) for d in levels}


def evaluate_policy(exp, model_cfg: ModelConfig, params, tokenizer: Tokenizer, *,
                    seed: int = 0) -> tuple[dict[str, float], list[dict[str, Any]]]:
  """(metrics as in the RL loop's eval.jsonl, per-sample records) on `exp.eval`'s problems."""
  cfg = exp.eval
  examples = load_examples(exp.data, cfg.split, tokenizer=tokenizer)[:cfg.num_problems]
  batch = make_batch(examples, tokenizer, template=exp.data.template,
                     max_prompt_len=exp.data.max_prompt_len)
  sampling = sampling_for(exp.rollout, tokenizer, num_samples=cfg.num_samples,
                          temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens)
  mesh = mesh_lib.make_mesh(exp.mesh)
  rewards = RewardService(exp.rewards)
  try:
    with mesh_lib.use_mesh(mesh, exp.mesh.rules):
      params = jax.device_put(params)
      scored = sample_and_score(model_cfg, params, batch, jax.random.key(seed), sampling,
                                tokenizer, rewards)
  finally:
    rewards.close()
  samples = scored_samples(scored, batch, cfg.num_samples)
  metrics = summarize(samples, cfg.num_samples, cfg.pass_at)
  metrics["cons@k"] = metrics[f"cons@{cfg.num_samples}"]
  return metrics, samples


def run(exp, workdir: str) -> dict[str, Any]:
  """The `evaluate` job: metrics of `base_model` overall and per difficulty -> summary.json."""
  model_cfg, params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                             exp.loop.seed)
  metrics, samples = evaluate_policy(exp, model_cfg, params, tokenizer, seed=exp.loop.seed)
  summary = {"last": metrics, "by_difficulty": {str(d): m for d, m in
                                                by_difficulty(samples, exp.eval.num_samples).items()}}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  return summary
