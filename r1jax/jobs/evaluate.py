"""The `evaluate` job: a policy's metrics outside the RL loop, overall and per difficulty.

The SFT job, the pipeline and the ablations use it to put SFT'd and distilled models in the same
table as RL runs: the RL loop's evaluation (`r1jax.experience.evaluate_policy`, the same eval
section), plus `summarize` over each difficulty's samples ("per task" in the paper's tables).
"""

from __future__ import annotations

from typing import Any

from r1jax.evaluate import summarize
from r1jax.experience import evaluate_policy
from r1jax.policy import load_policy


def by_difficulty(samples: list[dict[str, Any]], k: int) -> dict[int, dict[str, float]]:
  """summarize() of each difficulty's samples: pass@1 and cons@k per difficulty."""
  levels = sorted({s["difficulty"] for s in samples})
  return {d: summarize([s for s in samples if s["difficulty"] == d], k) for d in levels}


def run(exp, workdir: str) -> dict[str, Any]:
  """Metrics of `base_model` overall ("last") and per difficulty."""
  model_cfg, params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                             exp.loop.seed)
  metrics, samples = evaluate_policy(exp, model_cfg, params, tokenizer, seed=exp.loop.seed)
  return {"last": metrics, "by_difficulty": {str(d): m for d, m in
                                             by_difficulty(samples, exp.eval.num_samples).items()}}
