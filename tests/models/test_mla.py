"""MLA and the V3-shaped decoder: absorbed == plain attention, cache/prefix paths == full forward."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.config import ConfigError, from_dict
from r1jax.models import ModelConfig, init, init_cache
from r1jax.models import forward as _forward, logits as _logits, prefill as _prefill
from r1jax.models import mla
from r1jax.models.config import MLAConfig, MoEConfig

V3 = ModelConfig(vocab_size=61, dim=32, num_layers=3, num_heads=4, num_kv_heads=4, head_dim=8,
                 ffn_dim=48, mla=MLAConfig(kv_lora_rank=16, q_lora_rank=12, qk_nope_head_dim=8,
                                           qk_rope_head_dim=4, v_head_dim=6),
                 moe=MoEConfig(num_experts=8, top_k=2, expert_ffn_dim=16, shared_ffn_dim=16,
                               first_dense_layers=1, gating="sigmoid", routed_scale=2.5,
                               n_group=4, topk_group=2))
V2_LITE = dataclasses.replace(V3, mla=dataclasses.replace(V3.mla, q_lora_rank=0), moe=None)
# Jitted once per shape: op-by-op dispatch of the whole model is what makes eager tests slow.
forward = jax.jit(_forward, static_argnums=0)
logits = jax.jit(_logits, static_argnums=0)
prefill = jax.jit(_prefill, static_argnums=0)


@pytest.fixture(params=[V3, V2_LITE], ids=["v3", "no_q_lora_dense"])
def model(request):
  cfg = request.param
  return cfg, init(cfg, jax.random.key(0), init_std=0.2)


def test_absorbed_equals_plain():
  m = V3.mla
  p = jax.tree.map(lambda a: a[0], init(V3, jax.random.key(1), init_std=0.3)["dense"]["attn"])
  x = jax.random.normal(jax.random.key(2), (2, 7, V3.dim))
  pos = jnp.broadcast_to(jnp.arange(7), (2, 7))
  q_nope, q_pe, c, k_pe = mla.project(p, x, pos, m, V3.rope_theta, jnp.float32)
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((7, 7), bool)), (2, 7, 7))
  plain = mla.attend_plain(p, q_nope, q_pe, c, k_pe, mask, m)
  absorbed = mla.attend_absorbed(p, q_nope, q_pe, c, k_pe, mask, m)
  assert plain.shape == (2, 7, V3.num_heads, m.v_head_dim)
  np.testing.assert_allclose(absorbed, plain, atol=1e-5, rtol=1e-5)


def test_decode_with_latent_cache_equals_full_forward(model):
  cfg, params = model
  tokens = jax.random.randint(jax.random.key(3), (2, 9), 0, cfg.vocab_size)
  full = logits(cfg, params, tokens)
  cache = init_cache(cfg, 2, 12)
  # The cache holds the latent and the RoPE key, not per-head keys and values.
  assert cache.k["dense"].shape[-2:] == (1, cfg.mla.kv_lora_rank)
  assert cache.v["dense"].shape[-2:] == (1, cfg.mla.qk_rope_head_dim)
  out, cache, _ = forward(cfg, params, tokens[:, :5], cache=cache)
  steps = [out]
  for t in range(5, 9):
    out, cache, _ = forward(cfg, params, tokens[:, t:t + 1], cache=cache)
    steps.append(out)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_shared_prefix_equals_full_forward(model, check_shared_prefix):
  cfg, params = model
  prompts = jax.random.randint(jax.random.key(4), (2, 5), 0, cfg.vocab_size)
  padded = jnp.concatenate([jnp.zeros((2, 2), jnp.int32), prompts], 1)
  mask = jnp.array([[0, 0, 1, 1, 1, 1, 1]] * 2, bool)
  last, prefix = prefill(cfg, params, padded, mask)
  np.testing.assert_allclose(last, logits(cfg, params, prompts)[:, -1], atol=1e-5, rtol=1e-5)
  check_shared_prefix(cfg, params, prompts, prefix, group=2, length=3)


def test_mla_config_errors():
  with pytest.raises(ConfigError, match=r"model.mla.qk_rope_head_dim.*even"):
    from_dict(ModelConfig, {"mla": {"qk_rope_head_dim": 3}}, "model")
  with pytest.raises(ConfigError, match=r"model.mla.kv_lora_rank.*allowed range"):
    from_dict(ModelConfig, {"mla": {"kv_lora_rank": 0}}, "model")
