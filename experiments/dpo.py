"""DPO after rejection sampling: sample k answers per prompt from a policy, keep the verified and
the failed ones, then DPO the same policy on (verified, failed) pairs against itself frozen.

``python -m r1jax.main --config=experiments/dpo.py:<variant> --workdir=DIR``; the `dpo` job alone
runs with ``--config.job=dpo --config.dpo.data=DIR/rejection/traces.jsonl``.

Variants:
  tiny    the shipped tiny base model on chained sums, CPU, a few minutes
  smoke   a step or two of each stage, for the tests
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment, sibling

tiny = sibling(__file__, "r1_zero").tiny


def stages(*, k: int, problems: int, steps: int, lr: float):
  return ("rejection", "dpo"), {
      "rejection": {"job": "rejection", "set": {"rejection": {
          "num_samples": k, "num_problems": problems, "write_failed": True}}},
      "dpo": {"job": "dpo", "set": {
          "dpo": {"data": "stage:rejection", "steps": steps},
          "optim": {"lr": lr, "schedule": "constant", "total_steps": steps,
                    "weight_decay": 0.0}}},
  }


def get_config(arg: str = "tiny") -> config_dict.ConfigDict:
  variant = arg or "tiny"
  c = config_dict.ConfigDict(dataclasses.asdict(Experiment()))
  tiny(c)
  c.job = "pipeline"
  c.rejection.prompts_per_batch = 8
  c.dpo.update(dict(beta=0.1, batch_pairs=8, row_len=384, log_every=10))
  if variant == "tiny":
    c.pipeline.order, c.pipeline.stages = stages(k=8, problems=64, steps=40, lr=1e-5)
  elif variant == "smoke":
    c.data.procedural_sizes = (60, 8, 8)
    c.rollout.max_new_tokens = 64
    c.dpo.update(dict(batch_pairs=2, log_every=1))
    c.pipeline.order, c.pipeline.stages = stages(k=4, problems=8, steps=2, lr=1e-4)
  else:
    raise ValueError(f"unknown variant {variant!r}; known: tiny, smoke")
  return c
