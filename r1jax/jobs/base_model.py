"""The `base_model` job: regenerates the demo's tiny base model (`r1jax.sft.base_model.build`)
into <workdir>/export, then measures it and writes its model card next to it."""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from r1jax.data.tokenizers import load_tokenizer
from r1jax.models import load_hf
from r1jax.policy import EXPORT
from r1jax.sft import model_card
from r1jax.sft.base_model import build


def run(exp, workdir: str) -> dict[str, Any]:
  out_dir = build(exp.model, exp.corpus, exp.sft, exp.optim, workdir,
                  os.path.join(workdir, EXPORT))
  model_cfg, params = load_hf(out_dir)
  card = model_card.make_card(exp, model_cfg, params, load_tokenizer(out_dir), workdir)
  model_card.write_card(card, out_dir)
  logging.info("model card (gate %s):\n%s", "passed" if card["gate"]["passed"] else "FAILED",
               model_card.card_markdown(card))
  return {"export": out_dir, "gate_passed": card["gate"]["passed"]}
