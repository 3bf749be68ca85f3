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
    selection = scores + p["router_bias"]
    if cfg.n_group > 1:  # V3: only experts of the topk_group groups with the best top-2 sums
      groups = selection.reshape(cfg.n_group, -1)
      group_score = np.sort(groups, axis=1)[:, -2:].sum(1)
      best = np.argsort(-group_score, kind="stable")[:cfg.topk_group]
      allowed = np.zeros_like(groups, bool)
      allowed[best] = True
      selection = np.where(allowed.reshape(-1), selection, -np.inf)
    chosen = np.argsort(-selection, kind="stable")[:cfg.top_k]
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
    "deepseek_v3_groups": MoEConfig(num_experts=8, top_k=3, expert_ffn_dim=8, shared_ffn_dim=8,
                                    gating="sigmoid", routed_scale=2.5, n_group=4, topk_group=2),
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


@pytest.mark.parametrize("ici,skewed", [((1, 1, 8, 1), False), ((2, 1, 4, 1), False),
                                        ((1, 2, 2, 2), False), ((1, 1, 8, 1), True)],
                         ids=["e8", "d2e4", "f2e2t2", "e8-skewed"])
def test_expert_parallel_all_to_all_equals_loop_and_gradients(ici, skewed):
  cfg = CASES["qwen2moe"]
  p = _layer(cfg, bias_seed=3)
  if skewed:  # every token picks experts 0 and 1 (one owner): several capacity rounds, no drops
    p["router_bias"] = jnp.array([10.0, 10.0] + [0.0] * 6)
  # 16 tokens per device when skewed: 32 copies to one owner, capacity 8 per round -> 4 rounds.
  x = jax.random.normal(jax.random.key(4), (8, 16 if skewed else 4, 16))
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=ici))
  loss = lambda p, x: jnp.sum(jnp.sin(moe.moe_ffn(p, x, cfg, jnp.float32)[0]))
  with mesh_lib.use_mesh(mesh):
    y = jax.jit(lambda p, x: moe.moe_ffn(p, x, cfg, jnp.float32)[0])(p, x)
    g_sharded = jax.jit(jax.grad(loss))(p, x)
  np.testing.assert_allclose(y.reshape(-1, 16), reference_moe(p, np.asarray(x).reshape(-1, 16), cfg),
                             atol=1e-5, rtol=1e-4)
  g_local = jax.grad(loss)(p, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), g_sharded, g_local)


def test_balance_bias_moves_towards_uniform_load():
  bias = jnp.zeros((2, 4))
  load = jnp.array([[10.0, 0.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
  new = moe.balance_bias_update(bias, load, 0.1)
  np.testing.assert_allclose(new, [[-0.1, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_group_limited_routing_stays_in_the_best_groups():
  cfg = CASES["deepseek_v3_groups"]
  p = _layer(cfg, bias_seed=5)
  x = jax.random.normal(jax.random.key(6), (64, 16))
  _, ids, _, _ = moe.route(p, x, cfg)
  groups = np.asarray(ids) // (cfg.num_experts // cfg.n_group)
  assert max(len(set(row)) for row in groups.tolist()) <= cfg.topk_group
  # Without the group limit some tokens would have used a third group.
  free = MoEConfig(**{**cfg.__dict__, "n_group": 1, "topk_group": 1})
  _, free_ids, _, _ = moe.route(p, x, free)
  free_groups = np.asarray(free_ids) // (cfg.num_experts // cfg.n_group)
  assert max(len(set(row)) for row in free_groups.tolist()) > cfg.topk_group


def test_replayed_experts_are_used_and_mismatch_is_measured():
  cfg = CASES["deepseek_sigmoid"]
  p = _layer(cfg, bias_seed=7)
  x = jax.random.normal(jax.random.key(8), (2, 6, 16))
  y, aux = moe.moe_ffn(p, x, cfg, jnp.float32)
  assert float(aux["replay_mismatch"]) == 0.0
  _, again = moe.moe_ffn(p, x, cfg, jnp.float32, aux["expert_ids"])
  assert float(again["replay_mismatch"]) == 0.0
  replay = (aux["expert_ids"] + 1) % cfg.num_experts  # shift every choice: all top_k sets differ
  y2, aux2 = moe.moe_ffn(p, x, cfg, jnp.float32, replay)
  np.testing.assert_array_equal(aux2["expert_ids"], replay)
  assert 0.0 < float(aux2["replay_mismatch"]) <= 1.0
  assert not np.allclose(y, y2)


def test_bad_group_config_is_named():
  from r1jax.config import ConfigError
  with pytest.raises(ConfigError, match=r"n_group.*must divide num_experts=8"):
    MoEConfig(num_experts=8, n_group=3).validate()
  with pytest.raises(ConfigError, match=r"topk_group.*fewer than top_k=6"):
    MoEConfig(num_experts=8, top_k=6, n_group=4, topk_group=2).validate()


def test_experts_that_do_not_divide_the_expert_axes_are_an_error():
  cfg = MoEConfig(num_experts=6, top_k=2, expert_ffn_dim=8)
  p = _layer(cfg)
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=(1, 1, 4, 1)), jax.devices()[:4])
  with mesh_lib.use_mesh(mesh), pytest.raises(ValueError, match=r"num_experts=6 does not divide.*'expert'.*size 4"):
    moe.moe_ffn(p, jnp.ones((4, 2, 16)), cfg, jnp.float32)


def test_capacity_rounds_bound_the_all_to_all_buffer():
  """The expert-parallel program holds no [shards, n * top_k, D] buffer, only capacity-sized ones."""
  cfg = CASES["qwen2moe"]
  p = _layer(cfg)
  x = jnp.ones((64, 8, 16))
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=(1, 1, 8, 1)))
  def shapes(c):
    with mesh_lib.use_mesh(mesh):
      text = jax.jit(lambda p, x: moe.moe_ffn(p, x, c, jnp.float32)[0]).lower(p, x).as_text()
    return text
  per_device = 64 * 8 // 8 * cfg.top_k                 # copies per device: 128
  worst = f"tensor<8x{per_device}x16xf32>"
  assert worst in shapes(MoEConfig(**{**cfg.__dict__, "capacity_factor": 0.0}))
  bounded = shapes(cfg)                                 # capacity 1.25 x 128 / 8 -> 24 per owner
  assert worst not in bounded and "tensor<8x24x16xf32>" in bounded


def test_long_rows_run_in_pieces_equal_to_whole(monkeypatch):
  cfg = CASES["deepseek_v3_groups"]
  p = _layer(cfg, bias_seed=9)
  x = jax.random.normal(jax.random.key(10), (2, 10, 16))
  whole, aux = moe.moe_ffn(p, x, cfg, jnp.float32)
  monkeypatch.setattr(moe.layers, "MLP_CHUNK", 4)   # pieces of 4, 4 and 2 positions
  pieces, aux2 = moe.moe_ffn(p, x, cfg, jnp.float32)
  np.testing.assert_allclose(pieces, whole, atol=1e-6, rtol=1e-6)
  np.testing.assert_array_equal(aux2["expert_ids"], aux["expert_ids"])
