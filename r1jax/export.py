"""Writing a trained policy as a Hugging Face directory that `load_policy` reads back.

Every stage of a multi-stage run hands its result to the next this way: weights and config via
`save_hf`, plus the tokenizer files of the model it started from, so `tokenizer=""` keeps working.
"""

from __future__ import annotations

import jax

from r1jax.models import ModelConfig, save_hf
from r1jax.policy import resolve


def export_policy(model_cfg: ModelConfig, params, base_model: str, out_dir: str) -> str:
  """Saves params to `out_dir` with the tokenizer of `base_model` (a directory or builtin name)."""
  save_hf(model_cfg, jax.device_get(params), out_dir,
          tokenizer_from=resolve(base_model) if base_model else None)
  return out_dir
