"""The `sft` job: cold-start SFT or distillation on trace files, from a base model to an export.

Reads the policy named by `base_model` (a Hugging Face directory, `builtin:demo`, or a random init
of `model`), trains with :func:`r1jax.sft.train.train_sft` under the experiment's mesh and
optimizer (loss on response tokens of packed rows), and writes `<workdir>/export` (weights, config
and the base model's tokenizer); its summary has eval metrics when `sft.evaluate` is set.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from r1jax import mesh as mesh_lib
from r1jax.experience import evaluate_policy
from r1jax.policy import EXPORT, export_policy, load_policy
from r1jax.sft.data import sft_rows, token_pairs
from r1jax.sft.train import train_sft


def run(exp, workdir: str) -> dict[str, Any]:
  model_cfg, params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer, exp.sft.seed,
                                             mtp_loss=True)
  rows = sft_rows(exp)
  if not rows:
    raise ValueError(f"sft.data {exp.sft.data} gave no examples; a rejection stage that kept "
                     "nothing writes an empty file (see its summary.json)")
  pairs = token_pairs(rows, tokenizer, exp.data.template)
  logging.info("SFT on %d examples (%d response tokens)", len(pairs),
               sum(len(c) for _, c in pairs))
  export = lambda params: export_policy(model_cfg, params, exp.base_model,
                                       os.path.join(workdir, EXPORT), tokenizer=exp.tokenizer,
                                       template=exp.data.template)
  params = train_sft(model_cfg, exp.sft, exp.optim, pairs, workdir, init_params=params,
                     mesh=mesh_lib.make_mesh(exp.mesh), rules=exp.mesh.rules,
                     on_save=(lambda _, p: export(p)) if exp.sft.export_every_save else None)
  summary: dict[str, Any] = {"examples": len(pairs), "steps": exp.sft.steps}
  export(params)
  if exp.sft.evaluate:
    summary["last"], _ = evaluate_policy(exp, model_cfg, params, tokenizer, seed=exp.sft.seed)
  return summary
