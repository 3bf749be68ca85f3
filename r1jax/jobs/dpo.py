"""The `dpo` job: DPO of a policy on pairs of a verified and a failed answer to the same prompt.

Reads `dpo.data` (a rejection run's traces.jsonl, written with `rejection.write_failed=true`, so
its failed samples lie beside it), pairs each prompt's verified answers with its failed ones,
trains the policy named by `base_model` against itself frozen as the reference
(:func:`r1jax.dpo.train.train_dpo`), and writes `<workdir>/export` as the sft job does.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from r1jax import mesh as mesh_lib
from r1jax.config import ConfigError
from r1jax.dpo.pairs import preference_pairs
from r1jax.dpo.train import train_dpo
from r1jax.jobs.rejection import FAILED
from r1jax.policy import EXPORT, export_policy, load_policy
from r1jax.sft.data import read_traces, token_pairs


def run(exp, workdir: str) -> dict[str, Any]:
  cfg = exp.dpo
  if not cfg.data:
    raise ConfigError("dpo.data", "is empty; name a rejection run's traces.jsonl (a pipeline "
                      "stage: 'stage:NAME') written with rejection.write_failed=true")
  failed = os.path.join(os.path.dirname(cfg.data), FAILED)
  if not os.path.exists(failed):
    raise ConfigError("dpo.data", f"has no {FAILED} beside it ({failed}); run its rejection job "
                      "with rejection.write_failed=true")
  pairs = preference_pairs(read_traces(cfg.data), read_traces(failed), cfg.max_pairs_per_prompt)
  if not pairs:
    raise ValueError(f"no prompt in {cfg.data} has both a verified and a failed answer; sample "
                     "more (rejection.num_samples, rejection.num_problems)")
  model_cfg, params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer, cfg.seed)
  prompts = [{"prompt": p["prompt"], "completion": p[side]} for side in ("chosen", "rejected")
             for p in pairs]
  ids = token_pairs(prompts, tokenizer, exp.data.template)
  triples = [(ids[i][0], ids[i][1], ids[len(pairs) + i][1]) for i in range(len(pairs))]
  logging.info("DPO on %d pairs from %d prompts", len(pairs), len({p["prompt"] for p in pairs}))
  params, logged = train_dpo(model_cfg, cfg, exp.optim, triples, workdir, init_params=params,
                             mesh=mesh_lib.make_mesh(exp.mesh), rules=exp.mesh.rules)
  export_policy(model_cfg, params, exp.base_model, os.path.join(workdir, EXPORT),
                tokenizer=exp.tokenizer, template=exp.data.template)
  return {"pairs": len(pairs), "steps": cfg.steps, "first_loss": logged[0]["loss"],
          "last_loss": logged[-1]["loss"], "reward_accuracy": logged[-1]["reward_accuracy"]}
