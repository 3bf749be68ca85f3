"""When the reference is replaced: at K, 2K, ... and never with K = 0, by a copy of the policy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import models
from r1jax.rl.reference import make_reference, maybe_reset_reference, should_reset_reference


def test_reference_resets_at_k_and_not_before():
  assert [s for s in range(1000) if should_reset_reference(s, 400)] == [400, 800]
  assert not any(should_reset_reference(s, 0) for s in range(1000))
  params = {"w": jnp.arange(3.0)}
  ref = {"w": jnp.zeros(3)}
  for step in range(1, 5):
    params = {"w": params["w"] + 1}
    ref = maybe_reset_reference(step, 3, params, ref)
    want = jnp.arange(3.0) + 3 if step >= 3 else jnp.zeros(3)   # the policy after step 3
    np.testing.assert_array_equal(ref["w"], want)
  assert ref["w"] is not params["w"]                          # a copy, safe under donation


def test_reference_keeps_weights_in_the_compute_dtype_and_computes_the_same():
  cfg = models.ModelConfig(vocab_size=32, dim=16, num_layers=2, num_heads=2, num_kv_heads=1,
                           head_dim=8, ffn_dim=32, qkv_bias=True, compute_dtype="bfloat16")
  params = models.init(cfg, jax.random.key(0))
  ref = make_reference(cfg, params)
  assert ref["dense"]["mlp"]["up"].dtype == jnp.bfloat16 and ref["embed"].dtype == jnp.bfloat16
  assert ref["final_norm"].dtype == jnp.float32                  # gains and biases stay as they are
  assert ref["dense"]["attn"]["q_bias"].dtype == jnp.float32
  tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 32)
  np.testing.assert_array_equal(models.logits(cfg, ref, tokens), models.logits(cfg, params, tokens))
  moved = jax.tree.map(lambda p: p + 1, params)
  again = maybe_reset_reference(400, 400, moved, ref)
  assert again["dense"]["mlp"]["up"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(again["dense"]["mlp"]["up"],
                                moved["dense"]["mlp"]["up"].astype(jnp.bfloat16))
  f32 = make_reference(dataclasses.replace(cfg, compute_dtype="float32"), params)
  assert f32["embed"] is not params["embed"] and f32["embed"].dtype == jnp.float32
