"""The demo's tiny base model: pretraining on generated chained-sum solution traces.

``make base-model`` runs this (``python -m r1jax.main --config=experiments/base_pretrain.py``) and
copies ``<workdir>/export`` to ``r1jax/assets/demo_base_model``. The trace mix (mostly one-shot
guesses, some step-by-step solutions with slips, a few self-checking ones) makes the model weak but
not hopeless, like a real base model; see ``r1jax/sft/traces.py``. The job writes the model's card
(``r1jax/sft/model_card.py``) next to the export, and ``make base-model`` ships it only through the
card's gate. Rerunning with the same workdir resumes.
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
  # One clean cosine over fresh problems: copying the remaining terms and picking the operands
  # arrive late (after ~1,000 steps), so short runs mislead. About an hour on 2 CPU cores.
  c.corpus.num_problems = 60_000
  c.corpus.vocab_size = 512
  c.sft.update(dict(steps=3000, batch_rows=8, row_len=512, log_every=50, save_every=250))
  c.optim.update(dict(lr=2e-3, warmup_steps=100, schedule="cosine", final_lr_fraction=0.05,
                      total_steps=3000, weight_decay=0.01, grad_clip=1.0))
  # The card samples the new model at T=1 on the demo's eval problems (r1_zero.py:tiny's data).
  c.data.update(dict(datasets=("r1_procedural",), procedural_types=("math",),
                     procedural_kinds=("chain_sum",), procedural_difficulties=(1, 2, 3),
                     procedural_sizes=(250, 30, 30), procedural_seed=1, max_prompt_len=112))
  c.rollout.update(dict(max_new_tokens=256, prompts_per_chunk=8))
  c.eval.update(dict(num_problems=60, num_samples=8, temperature=1.0, pass_at=(1, 8)))
  c.rewards.num_workers = 1
  # Sections the job does not read still have to validate together.
  c.rl.num_minibatches = 1
  return c
