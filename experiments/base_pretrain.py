"""The demo's tiny base model: pretraining on generated chained-sum solution traces.

``make base-model`` runs this (``python -m r1jax.main --config=experiments/base_pretrain.py``) and
copies ``<workdir>/export`` to ``r1jax/assets/demo_base_model``. The trace mix (mostly one-shot
guesses, some step-by-step solutions with slips, a few self-checking ones) makes the model weak but
not hopeless, like a real base model; see ``r1jax/sft/traces.py``.
"""

import dataclasses

from ml_collections import config_dict

from r1jax.experiment import Experiment


def get_config(arg: str = "") -> config_dict.ConfigDict:
  del arg
  c = config_dict.ConfigDict(dataclasses.asdict(Experiment()))
  c.job = "base_model"
  c.model.update(dict(vocab_size=512, dim=128, num_layers=4, num_heads=4, num_kv_heads=2,
                      head_dim=32, ffn_dim=384, max_seq_len=512))
  c.corpus.num_problems = 20_000
  c.corpus.vocab_size = 512
  c.sft.update(dict(steps=1000, batch_rows=8, row_len=512, log_every=50, save_every=200))
  c.optim.update(dict(lr=2e-3, warmup_steps=100, schedule="cosine", final_lr_fraction=0.1,
                      total_steps=1000, weight_decay=0.01, grad_clip=1.0))
  # Sections the job does not read still have to validate together.
  c.rl.num_minibatches = 1
  return c
