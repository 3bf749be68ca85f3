"""SamplingConfig validation and the sampler's input checks give clear errors."""
import jax
import numpy as np
import pytest

from r1jax.config import ConfigError, from_dict
from r1jax.rollout import SamplingConfig, sample


def test_from_dict_builds_a_hashable_config():
  config = from_dict(SamplingConfig, {"eos_ids": [2, 7], "temperature": 1, "top_k": 20})
  assert config.eos_ids == (2, 7) and config.temperature == 1.0
  hash(config)


@pytest.mark.parametrize("key,value", [
    ("max_new_tokens", 0), ("temperature", -0.5), ("top_p", 0.0),
    ("top_p", 1.5), ("top_k", -1), ("cache_dtype", "int8"), ("prompts_per_chunk", 0),
    ("pad_id", -1)])
def test_bad_values_name_their_key(key, value):
  with pytest.raises(ConfigError, match=f"'sampling.{key}'"):
    from_dict(SamplingConfig, {key: value}, "sampling")


def test_sampler_rejects_ids_outside_the_vocabulary_and_bad_prompts(ref):
  cfg = ref.DENSE
  params = ref.make_params(cfg)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  rng = jax.random.key(0)
  with pytest.raises(ConfigError, match=r"eos_ids\[1\]"):
    sample(cfg, params, tokens, mask, rng, max_new_tokens=2, eos_ids=(1, cfg.vocab_size))
  with pytest.raises(ValueError, match="LEFT-padded"):
    sample(cfg, params, tokens, np.flip(mask, axis=1), rng, max_new_tokens=2)
  with pytest.raises(ConfigError, match="'num_samples': got 0"):
    sample(cfg, params, tokens, mask, rng, num_samples=0, max_new_tokens=2)
  with pytest.raises(ValueError, match="num_prompts, prompt_len"):
    sample(cfg, params, tokens, mask[:, 1:], rng, max_new_tokens=2)
