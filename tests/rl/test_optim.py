"""AdamW schedule, clipping, and which leaves the optimizer may touch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl.config import OptimConfig
from r1jax.rl.optim import learning_rate_schedule, make_optimizer, trainable_mask



def test_warmup_then_constant():
  lr = learning_rate_schedule(OptimConfig(lr=1e-3, warmup_steps=10))
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(5000)], [0.0, 5e-4, 1e-3, 1e-3], rtol=1e-6)
  assert float(learning_rate_schedule(OptimConfig(lr=2e-3))(0)) == pytest.approx(2e-3)


def test_warmup_then_cosine_to_final_fraction():
  cfg = OptimConfig(lr=1e-3, warmup_steps=10, schedule="cosine", total_steps=110,
                    final_lr_fraction=0.1)
  lr = learning_rate_schedule(cfg)
  mid = 1e-4 + 0.5 * (1e-3 - 1e-4)                     # halfway through the cosine
  np.testing.assert_allclose([lr(5), lr(10), lr(60), lr(110), lr(500)],
                             [5e-4, 1e-3, mid, 1e-4, 1e-4], rtol=1e-5)


def _params_and_grads():
  """A parameter tree named like the model's MoE stack (the optimizer decides by leaf name)."""
  keys = iter(jax.random.split(jax.random.key(0), 8))
  normal = lambda *shape: jax.random.normal(next(keys), shape)
  params = {"embed": normal(16, 8), "final_norm": jnp.ones(8),
            "moe": {"attn_norm": jnp.ones((2, 8)), "attn": {"q": normal(2, 8, 2, 4)},
                    "moe": {"router": normal(2, 8, 4), "router_bias": normal(2, 4)}}}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.01), params)
  return params, grads


def _first_update(tx, grads, params):
  return jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(grads, params)


def test_router_bias_is_neither_updated_nor_decayed():
  params, grads = _params_and_grads()
  tx = make_optimizer(OptimConfig(lr=0.1, weight_decay=0.5))
  updates, _ = _first_update(tx, grads, params)
  assert float(jnp.abs(updates["moe"]["moe"]["router_bias"]).max()) == 0.0
  assert float(jnp.abs(updates["moe"]["moe"]["router"]).min()) > 0
  mask = trainable_mask(params)
  assert mask["moe"]["moe"]["router_bias"] is False and mask["moe"]["moe"]["router"] is True


def test_weight_decay_skips_norms_only():
  params, _ = _params_and_grads()
  zero = jax.tree.map(jnp.zeros_like, params)
  tx = make_optimizer(OptimConfig(lr=0.1, weight_decay=0.5, grad_clip=0.0))
  updates, _ = _first_update(tx, zero, params)           # zero gradient: only decay moves
  np.testing.assert_allclose(updates["embed"], -0.1 * 0.5 * params["embed"], rtol=1e-6)
  assert float(jnp.abs(updates["final_norm"]).max()) == 0.0
  assert float(jnp.abs(updates["moe"]["attn_norm"]).max()) == 0.0
  np.testing.assert_allclose(updates["moe"]["attn"]["q"], -0.05 * params["moe"]["attn"]["q"],
                             rtol=1e-6)


def test_gradients_clipped_to_global_norm():
  params = {"w": jnp.ones(4)}
  grads = {"w": jnp.full(4, 10.0)}                         # global norm 20 -> 0.5 per entry
  # A large Adam eps makes the first update depend on the gradient's scale: g / (|g| + eps).
  cfg = OptimConfig(lr=1.0, b1=0.0, b2=0.0, eps=10.0, weight_decay=0.0, grad_clip=1.0)
  updates, _ = _first_update(make_optimizer(cfg), grads, params)
  np.testing.assert_allclose(updates["w"], -0.5 / 10.5, rtol=1e-5)
  unclipped = OptimConfig(lr=1.0, b1=0.0, b2=0.0, eps=10.0, weight_decay=0.0, grad_clip=0.0)
  updates, _ = _first_update(make_optimizer(unclipped), grads, params)
  np.testing.assert_allclose(updates["w"], -10.0 / 20.0, rtol=1e-5)
