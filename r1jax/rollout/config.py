"""Sampling hyperparameters for the rollout engine.

`SamplingConfig` is frozen and hashable: it is a static argument of the jitted decode loop, so one
config compiles once per prompt-batch shape. `validate()` runs when an experiment is loaded (via
:func:`r1jax.config.from_dict`) and again in :func:`r1jax.rollout.sample`; errors name the key and
the allowed range. Checks that need the model (ids inside the vocabulary) are in
:meth:`SamplingConfig.validate_for`.
"""

from __future__ import annotations

import dataclasses

from r1jax.config import ConfigError, check_choice, check_range

CACHE_DTYPES = (None, "float32", "bfloat16", "float16")
ATTENTION = ("filled", "full")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How the sampler draws; how many samples per prompt is the caller's argument (G in RL, k in
  evaluation), not part of this config."""
  max_new_tokens: int = 256
  temperature: float = 1.0         # 0 = greedy
  top_p: float = 1.0               # 1 = off
  top_k: int = 0                   # 0 = off
  eos_ids: tuple[int, ...] = ()
  pad_id: int = 0
  cache_dtype: str | None = None   # None = the model's compute dtype
  share_prefix: bool = True        # False prefills every sample's copy of the prompt (baseline)
  prompts_per_chunk: int = 32      # sample_chunks: prompts decoded together (memory bound)
  # filled: each decode step reads the cache in kv_block-slot blocks up to the highest filled
  # slot; full: the whole max_new_tokens cache every step (the baseline).
  attention: str = "filled"
  kv_block: int = 256
  # 0 = one cache slot per row; N = N slots per sampler call, each taking the call's next
  # waiting (prompt, sample) row when its row ends (continuous batching; needs filled attention).
  refill_slots: int = 0

  def validate(self):
    check_range("max_new_tokens", self.max_new_tokens, 1)
    check_range("temperature", self.temperature, 0.0)
    check_range("top_p", self.top_p, 0.0, 1.0, low_open=True)
    check_range("top_k", self.top_k, 0)
    if not isinstance(self.eos_ids, tuple):
      raise ConfigError("eos_ids", f"got {self.eos_ids!r}; must be a tuple of token ids")
    for i, eos in enumerate(self.eos_ids):
      check_range(f"eos_ids[{i}]", eos, 0)
    check_range("pad_id", self.pad_id, 0)
    check_choice("cache_dtype", self.cache_dtype, CACHE_DTYPES)
    check_choice("share_prefix", self.share_prefix, (True, False))
    check_range("prompts_per_chunk", self.prompts_per_chunk, 1)
    check_choice("attention", self.attention, ATTENTION)
    check_range("kv_block", self.kv_block, 1)
    check_range("refill_slots", self.refill_slots, 0)
    if self.refill_slots and self.attention != "filled":
      raise ConfigError("refill_slots", f"got {self.refill_slots} with attention="
                        f"{self.attention!r}; refilled slots need attention='filled' "
                        "(or refill_slots=0)")

  @property
  def logprob_temperature(self) -> float:
    """The temperature of the distribution the sampled log-probs are of (greedy reports T=1)."""
    return self.temperature or 1.0

  def validate_for(self, vocab_size: int):
    """validate(), plus the token ids must lie inside the model's vocabulary."""
    self.validate()
    for i, eos in enumerate(self.eos_ids):
      check_range(f"eos_ids[{i}]", eos, 0, vocab_size - 1)
    check_range("pad_id", self.pad_id, 0, vocab_size - 1)
