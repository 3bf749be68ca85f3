"""The policy model: a Qwen2-shaped dense decoder with an optional DeepSeekMoE feed-forward.

`init` / `forward` / `logits` are pure functions over a plain parameter pytree, so the policy,
the reference and the old policy are three values of one type. `load_hf` / `save_hf` move
weights to and from Hugging Face safetensors checkpoints.
"""

from r1jax.models.config import ModelConfig, MoEConfig
from r1jax.models.hf import load_hf, save_hf
from r1jax.models.transformer import (KVCache, cache_axes, forward, init, init_cache, logits,
                                      param_axes, prefill, prompt_positions, trunk, head)
