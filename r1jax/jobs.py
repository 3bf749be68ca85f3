"""Runs an experiment's job in a workdir: the dispatch behind ``r1jax.main``.

``rl`` is R1-Zero-style GRPO (`r1jax.train`); ``base_model`` regenerates the demo's tiny base model
from generated text (`r1jax.sft.base_model`); ``sft`` is cold-start SFT or distillation
(`r1jax.sft.job`); ``rejection`` samples and filters traces (`r1jax.rejection`); ``reward_model``
trains a Bradley-Terry reward model (`r1jax.reward_model.train`); ``evaluate`` scores a checkpoint
(`r1jax.policy_eval`); ``pipeline`` chains stages of these (`r1jax.pipeline`). Each job reads
only its own config sections.
"""

from __future__ import annotations

import importlib
import os

from absl import logging

from r1jax.experiment import Experiment

# job -> module whose run(exp, workdir) does it (imported on use: each pulls in different parts).
RUNNERS = {"sft": "r1jax.sft.job", "rejection": "r1jax.rejection",
           "reward_model": "r1jax.reward_model.train", "evaluate": "r1jax.policy_eval",
           "pipeline": "r1jax.pipeline"}


def run(exp: Experiment, workdir: str):
  os.makedirs(workdir, exist_ok=True)
  if exp.job == "rl":
    from r1jax.train import train_and_evaluate
    summary = train_and_evaluate(exp, workdir)
    logging.info("summary: %s", summary)
    return summary
  if exp.job == "base_model":
    from r1jax.sft import base_model
    return base_model.build_from_experiment(exp, workdir)
  if exp.job in RUNNERS:
    return importlib.import_module(RUNNERS[exp.job]).run(exp, workdir)
  raise ValueError(f"job {exp.job!r}: no runner; known jobs: rl, base_model, {', '.join(RUNNERS)}")
