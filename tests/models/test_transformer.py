"""The decoder: cache and shared-prefix paths equal the full forward; invariants; dtypes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.config import ConfigError, from_dict
from r1jax.models import (ModelConfig, MoEConfig, forward, init, init_cache, logits, prefill)

DENSE = ModelConfig(vocab_size=61, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                    ffn_dim=48, qkv_bias=True)
MOE = ModelConfig(vocab_size=61, dim=32, num_layers=3, num_heads=4, num_kv_heads=1, head_dim=8,
                  ffn_dim=48, moe=MoEConfig(num_experts=4, top_k=2, expert_ffn_dim=16,
                                            shared_ffn_dim=16, shared_gate=True, first_dense_layers=1))


@pytest.fixture(params=[DENSE, MOE], ids=["dense", "moe"])
def model(request):
  cfg = request.param
  return cfg, init(cfg, jax.random.key(0))


def test_prefill_plus_decode_equals_full_forward(model):
  cfg, params = model
  tokens = jax.random.randint(jax.random.key(1), (3, 9), 0, cfg.vocab_size)
  full = logits(cfg, params, tokens)
  out, cache, _ = forward(cfg, params, tokens[:, :5], cache=init_cache(cfg, 3, 12))
  steps = [out]
  for t in range(5, 9):
    out, cache, _ = forward(cfg, params, tokens[:, t:t + 1], cache=cache)
    steps.append(out)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5, rtol=1e-5)
  assert int(cache.index) == 9


def test_left_padded_prefill_matches_unpadded(model):
  cfg, params = model
  prompt = jax.random.randint(jax.random.key(2), (1, 4), 0, cfg.vocab_size)
  padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), prompt], 1)
  mask = jnp.array([[0, 0, 0, 1, 1, 1, 1]], bool)
  last, _ = prefill(cfg, params, padded, mask)
  np.testing.assert_allclose(last[0], logits(cfg, params, prompt)[0, -1], atol=1e-5, rtol=1e-5)


def test_shared_prefix_equals_full_forward_for_each_sample(model, check_shared_prefix):
  cfg, params = model
  prompts = jax.random.randint(jax.random.key(3), (2, 5), 0, cfg.vocab_size)
  mask = jnp.ones((2, 5), bool)
  _, prefix = prefill(cfg, params, prompts, mask)
  check_shared_prefix(cfg, params, prompts, prefix, group=3, length=4, seed=4)


def test_causality(model):
  cfg, params = model
  a = jax.random.randint(jax.random.key(5), (1, 8), 0, cfg.vocab_size)
  b = a.at[0, 5:].set((a[0, 5:] + 1) % cfg.vocab_size)
  np.testing.assert_allclose(logits(cfg, params, a)[0, :5], logits(cfg, params, b)[0, :5], atol=1e-6)
  assert not np.allclose(logits(cfg, params, a)[0, 5:], logits(cfg, params, b)[0, 5:])


def test_packed_segments_do_not_attend_across(model):
  cfg, params = model
  x = jax.random.randint(jax.random.key(6), (1, 4), 0, cfg.vocab_size)
  y = jax.random.randint(jax.random.key(7), (1, 3), 0, cfg.vocab_size)
  packed = jnp.concatenate([x, y], 1)
  seg = jnp.array([[1, 1, 1, 1, 2, 2, 2]])
  pos = jnp.array([[0, 1, 2, 3, 0, 1, 2]])
  out, _, _ = forward(cfg, params, packed, positions=pos, segment_ids=seg)
  np.testing.assert_allclose(out[0, :4], logits(cfg, params, x)[0], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out[0, 4:], logits(cfg, params, y)[0], atol=1e-5, rtol=1e-5)


def test_remat_and_bf16_compute():
  tokens = jax.random.randint(jax.random.key(8), (2, 6), 0, DENSE.vocab_size)
  params = init(DENSE, jax.random.key(0))
  loss = lambda cfg: jax.grad(lambda p: jnp.mean(logits(cfg, p, tokens) ** 2))(params)
  base = loss(DENSE)
  remat = loss(DENSE.__class__(**{**DENSE.__dict__, "remat": "full"}))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5), base, remat)
  bf16 = DENSE.__class__(**{**DENSE.__dict__, "compute_dtype": "bfloat16"})
  out = logits(bf16, params, tokens)
  assert out.dtype == jnp.float32 and params["embed"].dtype == jnp.float32
  np.testing.assert_allclose(out, logits(DENSE, params, tokens), atol=0.05)


def test_config_errors_name_key_and_range():
  with pytest.raises(ConfigError, match=r"model.num_kv_heads.*must divide num_heads=4"):
    from_dict(ModelConfig, {"num_heads": 4, "num_kv_heads": 3}, "model")
  with pytest.raises(ConfigError, match=r"model.moe.gating.*'softmax', 'sigmoid'"):
    from_dict(ModelConfig, {"moe": {"gating": "relu"}}, "model")
  with pytest.raises(ConfigError, match=r"'model.dimm': unknown key"):
    from_dict(ModelConfig, {"dimm": 3}, "model")
  with pytest.raises(ConfigError, match=r"model.remat.*'none', 'full', 'dots'"):
    from_dict(ModelConfig, {"remat": "some"}, "model")
