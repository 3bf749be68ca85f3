"""The `reward_model` job: trains a Bradley-Terry reward model on the pairs of
`reward_model.data` (or the synthetic set), reports pairwise accuracy on held-out pairs before and
after, and writes `<workdir>/export`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import logging

from r1jax import mesh as mesh_lib
from r1jax.metrics import MetricsWriter
from r1jax.policy import EXPORT, load_policy, resolve
from r1jax.reward_model import model as rm
from r1jax.reward_model.preferences import read_pairs, synthetic_pairs
from r1jax.reward_model.train import encode_pairs, pairwise_accuracy, train_reward_model


def run(exp, workdir: str) -> dict[str, Any]:
  """Returns {"accuracy_before", "accuracy_after", ...}."""
  cfg = exp.reward_model
  model_cfg, policy_params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                                    cfg.seed)
  pairs = read_pairs(cfg.data) if cfg.data else synthetic_pairs(cfg.num_pairs, cfg.seed)
  order = np.random.default_rng(cfg.seed).permutation(len(pairs))
  heldout = max(1, int(len(pairs) * cfg.heldout_fraction))
  if heldout >= len(pairs):
    raise ValueError(f"{len(pairs)} preference pairs leave none for training after holding out "
                     f"{heldout}")
  encoded = encode_pairs(pairs, tokenizer, exp.data.template, cfg.max_len)
  test = {k: v[order[:heldout]] for k, v in encoded.items()}
  train = {k: v[order[heldout:]] for k, v in encoded.items()}
  params = {"trunk": policy_params, "head": rm.init_head(model_cfg)}
  before = pairwise_accuracy(model_cfg, params, test)
  writer = MetricsWriter(workdir)
  params, losses = train_reward_model(model_cfg, cfg, exp.optim, params, train, writer,
                                      mesh=mesh_lib.make_mesh(exp.mesh), rules=exp.mesh.rules)
  writer.close()
  summary = {"pairs": len(pairs), "heldout": heldout, "accuracy_before": before,
             "accuracy_after": pairwise_accuracy(model_cfg, params, test),
             "first_loss": losses[0], "last_loss": losses[-1]}
  rm.save(model_cfg, params, os.path.join(workdir, EXPORT),
          resolve(exp.base_model) if exp.base_model else None)
  logging.info("reward model: held-out pairwise accuracy %.3f -> %.3f", before,
               summary["accuracy_after"])
  return summary
