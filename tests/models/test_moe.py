"""MoE: the sorted ragged_dot dispatch and the expert-parallel shard_map path equal a per-token loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import mesh as mesh_lib
from r1jax.models import ModelConfig, MoEConfig, init
from r1jax.models import moe


def _silu(x):
  return x / (1 + np.exp(-x))


def reference_moe(p, x, cfg: MoEConfig):
  """A plain per-token loop restating the DeepSeekMoE / Qwen2-MoE feed-forward in NumPy."""
  p = jax.tree.map(np.asarray, p)
  out = np.zeros_like(x)
  for n, tok in enumerate(x):
    logits = tok @ p["router"]
    scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() \
        if cfg.gating == "softmax" else 1 / (1 + np.exp(-logits))
    chosen = np.argsort(-(scores + p["router_bias"]), kind="stable")[:cfg.top_k]
    w = scores[chosen]
    if cfg.norm_top_k:
      w = w / w.sum()
    for e, we in zip(chosen, w * cfg.routed_scale):
      ex = {k: v[e] for k, v in p["experts"].items()}
      out[n] += we * ((_silu(tok @ ex["gate"]) * (tok @ ex["up"])) @ ex["down"])
    if cfg.shared_ffn_dim:
      s = p["shared"]
      shared = (_silu(tok @ s["gate"]) * (tok @ s["up"])) @ s["down"]
      if cfg.shared_gate:
        shared = shared / (1 + np.exp(-(tok @ p["shared_gate"])))
      out[n] += shared
  return out


CASES = {
    "qwen2moe": MoEConfig(num_experts=8, top_k=2, expert_ffn_dim=8, shared_ffn_dim=12,
                          shared_gate=True, norm_top_k=False),
    "deepseek_sigmoid": MoEConfig(num_experts=8, top_k=3, expert_ffn_dim=8, shared_ffn_dim=8,
                                  gating="sigmoid", routed_scale=2.5),
}


def _layer(cfg: MoEConfig, bias_seed=None):
  model = ModelConfig(vocab_size=16, dim=16, num_layers=1, num_heads=2, num_kv_heads=2,
                      head_dim=8, ffn_dim=16, moe=cfg)
  p = jax.tree.map(lambda a: a[0], init(model, jax.random.key(0), init_std=0.3)["moe"]["moe"])
  if bias_seed is not None:
    p["router_bias"] = 0.3 * jax.random.normal(jax.random.key(bias_seed), p["router_bias"].shape)
  return p


@pytest.mark.parametrize("name", CASES)
def test_dropless_dispatch_equals_per_token_loop(name):
  cfg = CASES[name]
  p = _layer(cfg, bias_seed=1)
  x = jax.random.normal(jax.random.key(2), (3, 5, 16))
  y, aux = moe.moe_ffn(p, x, cfg, jnp.float32)
  np.testing.assert_allclose(y.reshape(15, 16), reference_moe(p, np.asarray(x).reshape(15, 16), cfg),
                             atol=1e-5, rtol=1e-4)
  assert float(aux["expert_load"].sum()) == 15 * cfg.top_k


@pytest.mark.parametrize("ici", [(1, 1, 8, 1), (2, 1, 4, 1), (1, 2, 2, 2)])
def test_expert_parallel_all_to_all_equals_loop_and_gradients(ici):
  cfg = CASES["qwen2moe"]
  p = _layer(cfg, bias_seed=3)
  x = jax.random.normal(jax.random.key(4), (8, 4, 16))
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=ici))
  loss = lambda p, x: jnp.sum(jnp.sin(moe.moe_ffn(p, x, cfg, jnp.float32)[0]))
  with mesh_lib.use_mesh(mesh):
    y = jax.jit(lambda p, x: moe.moe_ffn(p, x, cfg, jnp.float32)[0])(p, x)
    g_sharded = jax.jit(jax.grad(loss))(p, x)
  np.testing.assert_allclose(y.reshape(32, 16), reference_moe(p, np.asarray(x).reshape(32, 16), cfg),
                             atol=1e-5, rtol=1e-4)
  g_local = jax.grad(loss)(p, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), g_sharded, g_local)


def test_balance_bias_moves_towards_uniform_load():
  bias = jnp.zeros((2, 4))
  load = jnp.array([[10.0, 0.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
  new = moe.balance_bias_update(bias, load, 0.1)
  np.testing.assert_allclose(new, [[-0.1, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
