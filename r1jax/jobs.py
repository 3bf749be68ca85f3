"""Runs an experiment's job in a workdir: the dispatch behind ``r1jax.main``.

``rl`` is R1-Zero-style GRPO (`r1jax.train`); ``base_model`` regenerates the demo's tiny base model
from generated text (`r1jax.sft.base_model`). Each job reads only its own config sections.
"""

from __future__ import annotations

import os

from absl import logging

from r1jax.experiment import Experiment


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
  raise ValueError(f"job {exp.job!r}: no runner; known jobs: rl, base_model")
