"""Blockwise (flash) attention equals the dense attention it replaces: values and gradients,
with causal masks, packed segments, a KV cache with left-padded slots and a shared prefix, at
lengths that are not multiples of the tile."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import layers
from r1jax.models.layers import Mask

B, T, H, KV, DH = 4, 11, 4, 2, 8


def _qkv(seed, s=T, b=B):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(ks[0], (b, T, H, DH)), jax.random.normal(ks[1], (b, s, KV, DH)),
          jax.random.normal(ks[2], (b, s, KV, DH)))


def _causal():
  steps = jnp.arange(T)[None]
  return Mask.make(jnp.ones((B, T), bool), steps, steps, plain_causal=True)


def _segments():
  seg = jnp.array([[1] * 5 + [2] * 4 + [0] * 2, [1] * 11, [1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 0],
                   [0] + [1] * 10])
  steps = jnp.arange(T)[None]
  return Mask.make(seg != 0, steps, steps, seg, seg)


def _cache(s=16, index=3):
  """T new tokens written at `index` of an S-slot cache whose earlier slots are partly empty."""
  rng = np.random.default_rng(0)
  before = jnp.asarray(rng.random((B, s)) < 0.6) & (jnp.arange(s) < index)[None]
  token_mask = jnp.asarray(np.arange(T)[None] >= np.array([[0], [2], [5], [0]]))
  written = jax.lax.dynamic_update_slice(before, token_mask, (0, index))
  return Mask.make(written, index + jnp.arange(T)[None], jnp.arange(s)[None])


CASES = {"causal": (_causal, T), "segments": (_segments, T), "cache": (_cache, 16)}


def _prefix(seed, bp=2, p=7):
  ks = jax.random.split(jax.random.key(seed), 2)
  pmask = jnp.arange(p)[None] >= jnp.array([[0], [3]])            # left-padded prompts
  return (jax.random.normal(ks[0], (bp, p, KV, DH)), jax.random.normal(ks[1], (bp, p, KV, DH)),
          pmask)


@pytest.mark.parametrize("with_prefix", [False, True], ids=["own", "prefix"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block", [4, 16])
def test_blockwise_equals_dense_values_and_gradients(case, with_prefix, block):
  make, s = CASES[case]
  mask = make()
  q, k, v = _qkv(1, s)
  prefix = _prefix(2) if with_prefix else None
  # Queries that see no key at all are padding whose output is never read: leave them out.
  seen = mask.dense().any(-1) | with_prefix          # the prefix is visible to every query
  weights = jax.random.normal(jax.random.key(3), (B, T, H, DH)) * seen[..., None, None]

  def loss(fn, q, k, v, pk, pv):
    pre = None if prefix is None else (pk, pv, prefix[2])
    return jnp.sum(fn(q, k, v, pre) * weights)

  dense = lambda q, k, v, pre: layers.attend(q, k, v, mask.dense(), pre)
  blockwise = lambda q, k, v, pre: layers.attend(q, k, v, mask, pre, block=block)
  pk, pv = (prefix[0], prefix[1]) if prefix else (jnp.zeros(()), jnp.zeros(()))
  want, got = dense(q, k, v, prefix), blockwise(q, k, v, prefix)
  np.testing.assert_allclose(got * seen[..., None, None], want * seen[..., None, None],
                             atol=2e-5, rtol=2e-5)
  argnums = (1, 2, 3, 4, 5) if prefix else (1, 2, 3)
  g_want = jax.grad(loss, argnums)(dense, q, k, v, pk, pv)
  g_got = jax.jit(jax.grad(loss, argnums), static_argnums=0)(blockwise, q, k, v, pk, pv)
  for a, b in zip(g_got, g_want):
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=5e-5)


def test_dense_mask_matches_numpy_restatement():
  mask = _segments()
  seg = np.asarray(mask.key_seg)
  t = np.arange(T)
  want = (t[None, None, :] <= t[None, :, None]) & (seg[:, :, None] == seg[:, None, :]) & (
      seg[:, None, :] != 0)
  np.testing.assert_array_equal(mask.dense(), want)


def test_long_sequences_take_the_blockwise_path_without_dense_scores():
  """Past BLOCK the default path never holds the [T, S] scores: the compiled program's scratch
  memory is below one layer's dense float32 scores."""
  t = 8 * layers.BLOCK + 5
  steps = jnp.arange(t)[None]
  mask = Mask.make(jnp.ones((1, t), bool), steps, steps)
  q = jax.ShapeDtypeStruct((1, t, 2, 8), jnp.float32)
  kv = jax.ShapeDtypeStruct((1, t, 1, 8), jnp.float32)
  dense_scores = 2 * t * t * 4
  for fn in (lambda q, k, v: layers.attend(q, k, v, mask),
             jax.grad(lambda q, k, v: jnp.sum(layers.attend(q, k, v, mask)), (0, 1, 2))):
    temp = jax.jit(fn).lower(q, kv, kv).compile().memory_analysis().temp_size_in_bytes
    assert temp < dense_scores / 8, (temp, dense_scores)
  dense = jax.jit(lambda q, k, v: layers.attend(q, k, v, mask.dense())).lower(q, kv, kv).compile()
  assert dense.memory_analysis().temp_size_in_bytes >= dense_scores   # the check can fail


@pytest.mark.parametrize("with_prefix", [False, True], ids=["own", "prefix"])
def test_grouped_decode_step_equals_the_widened_one(with_prefix):
  """The decode step used on a mesh (KV heads kept as a batch axis) equals the single-device
  one (block-diagonal widened queries)."""
  q, k, v = _qkv(5, 9)
  q = q[:, :1]
  new = jax.random.normal(jax.random.key(6), (2, B, 1, KV, DH))
  cache_mask = jnp.arange(9)[None] >= jnp.array([[0], [2], [4], [8]])
  prefix = _prefix(7) if with_prefix else None
  want = layers.attend_step(q, new[0], new[1], k, v, cache_mask, prefix)
  got = layers._attend_step_grouped(q, new[0], new[1], k, v, cache_mask, prefix)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
