"""Redundant copies of hot experts: the placement, the dispatch that splits a hot expert's
tokens between its copies, and the expert-parallel layer's output (and gradient) unchanged by
them on an 8-device mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import mesh as mesh_lib
from r1jax.config import ConfigError
from r1jax.models import moe
from r1jax.models.expert_placement import (Placement, device_loads, expert_counts, imbalance,
                                           place_experts)
from tests.models.test_moe import CASES, _layer

SKEWED = np.array([900, 500, 60, 40, 30, 20, 10, 5], float)   # tokens per expert


def test_placement_copies_the_hottest_experts_onto_the_least_loaded_devices():
  pl = place_experts(SKEWED, shards=4, redundant=1)
  assert pl.slots.shape == (4, 3)
  np.testing.assert_array_equal(pl.slots[:, :2], np.arange(8).reshape(4, 2))   # own experts stay
  assert pl.copies[0] >= pl.copies[1] >= 2 and pl.copies.sum() + (pl.slots < 0).sum() == 12
  for d, row in enumerate(pl.slots):
    held = row[row >= 0].tolist()
    assert len(set(held)) == len(held), f"device {d} holds an expert twice"
  before = place_experts(SKEWED, shards=4, redundant=0)
  # Tokens per device, restated: each expert's tokens split evenly between the slots holding it.
  flat = pl.slots.reshape(-1)
  want = np.array([sum(SKEWED[e] / (flat == e).sum() for e in row if e >= 0) for row in pl.slots])
  np.testing.assert_allclose(device_loads(SKEWED, pl), want)
  np.testing.assert_allclose(device_loads(SKEWED, before), SKEWED.reshape(4, 2).sum(1))
  assert device_loads(SKEWED, pl).sum() == pytest.approx(SKEWED.sum())
  assert imbalance(device_loads(SKEWED, pl)) < 0.6 * imbalance(device_loads(SKEWED, before))


def test_a_rollouts_routing_statistics_count_its_fed_tokens_per_layer():
  rng = np.random.default_rng(1)
  ids = rng.integers(0, 8, (2, 3, 5, 2))                # [layers, rows, T, k]
  mask = np.arange(5)[None] < np.array([5, 2, 0])[:, None]
  want = np.zeros((2, 8), int)
  for layer, row, t, j in np.ndindex(*ids.shape):       # the plain loop
    if mask[row, t]:
      want[layer, ids[layer, row, t, j]] += 1
  np.testing.assert_array_equal(expert_counts(ids, mask, 8), want)


def test_bad_placement_requests_are_named():
  with pytest.raises(ConfigError, match="moe.redundant_experts"):
    place_experts(SKEWED, shards=4, redundant=-1)
  with pytest.raises(ConfigError, match="moe.num_experts.*3 expert-parallel"):
    place_experts(SKEWED, shards=3, redundant=1)


def test_a_hot_experts_copies_share_its_tokens_evenly():
  pl = place_experts(SKEWED, shards=4, redundant=2)
  ids = jnp.asarray(np.random.default_rng(0).choice(8, (64, 2), p=SKEWED / SKEWED.sum()))
  phys = np.asarray(moe._to_copies(ids, jnp.asarray(pl.replicas), jnp.asarray(pl.copies)))
  np.testing.assert_array_equal(pl.slots.reshape(-1)[phys], ids)     # a slot holding the expert
  for e in range(8):
    used = np.bincount(phys[np.asarray(ids) == e], minlength=pl.slots.size)
    used = used[pl.replicas[e, :pl.copies[e]]]
    assert used.max() - used.min() <= 1, (e, used)


@pytest.mark.parametrize("ici", [(2, 1, 4, 1), (1, 1, 8, 1)], ids=["d2e4", "e8"])
def test_redundant_copies_leave_the_expert_parallel_layer_unchanged(ici):
  cfg = CASES["qwen2moe"]
  p = _layer(cfg, bias_seed=3)
  p["router_bias"] = jnp.array([10.0, 10.0] + [0.0] * 6)   # experts 0 and 1 take every token
  x = jax.random.normal(jax.random.key(4), (8, 8, 16))
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig(ici=ici))
  shards = mesh.shape["expert"]
  _, aux = moe.moe_ffn(p, x, cfg, jnp.float32)
  pl = place_experts(np.asarray(aux["expert_load"]), shards=shards, redundant=1)
  assert pl.copies[0] > 1 and pl.copies[1] > 1
  # The busiest device receives fewer token copies: owners before, slots' devices after.
  ids = aux["expert_ids"].reshape(-1, cfg.top_k)
  phys = moe._to_copies(ids, jnp.asarray(pl.replicas), jnp.asarray(pl.copies))
  before = np.bincount(np.asarray(ids).reshape(-1) // (8 // shards), minlength=shards)
  after = np.bincount(np.asarray(phys).reshape(-1) // pl.per_device, minlength=shards)
  assert after.sum() == before.sum() and after.max() < before.max()
  loss = lambda p, x, pl: jnp.sum(jnp.sin(moe.moe_ffn(p, x, cfg, jnp.float32, placement=pl)[0]))
  with mesh_lib.use_mesh(mesh):
    y_plain = jax.jit(lambda p, x: moe.moe_ffn(p, x, cfg, jnp.float32)[0])(p, x)
    y_copies = jax.jit(lambda p, x: moe.moe_ffn(p, x, cfg, jnp.float32, placement=pl)[0])(p, x)
    g_plain = jax.jit(jax.grad(loss))(p, x, None)
    g_copies = jax.jit(jax.grad(lambda p, x: loss(p, x, pl)))(p, x)
  np.testing.assert_allclose(y_copies, y_plain, atol=1e-6, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               g_copies, g_plain)
  # Any consistent placement gives the same output: here every device's slots in another order.
  shuffled = Placement.of(np.roll(pl.slots, 1, axis=1))
  with mesh_lib.use_mesh(mesh):
    y_shuffled = jax.jit(lambda p, x: moe.moe_ffn(p, x, cfg, jnp.float32,
                                                  placement=shuffled)[0])(p, x)
  np.testing.assert_allclose(y_shuffled, y_plain, atol=1e-6, rtol=1e-6)
