"""The policy model: a Qwen2-shaped dense decoder with an optional DeepSeekMoE feed-forward,
optional Multi-head Latent Attention and multi-token prediction (the DeepSeek-V2 / V3 shapes).

`init` / `forward` / `logits` are pure functions over a plain parameter pytree, so the policy,
the reference and the old policy are three values of one type. `load_hf` / `save_hf` move
weights to and from Hugging Face safetensors checkpoints (Qwen2, Qwen2-MoE, DeepSeek-V2 / V3).
"""

from r1jax.models.config import MLAConfig, ModelConfig, MoEConfig
from r1jax.models.hf import load_hf, save_hf
from r1jax.models.transformer import (KVCache, cache_axes, forward, init, init_cache, logits,
                                      param_axes, prefill, prompt_positions, trunk, head)
