"""Decode-step attention that reads only the filled part of a KV cache, and per-row cache writes.

A decode step feeds one token per row. :func:`attend_filled` reads the cache in fixed-size blocks
of slots and stops after the last block below ``max(filled)``, so the bytes a step reads grow with
how far the rows have written, not with the cache's allocated length (``max_new_tokens``). The
blocks, the shared prompt prefix and the step's own token are merged by an online softmax
(running max, normaliser and unnormalised output, as in flash attention), in float32.

:func:`write` puts new keys at one shared slot (every row at the same step) or at a slot per row
(rows at different steps: the sampler's refilled slots).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def write(cache, new, index):
  """`cache` [B, S, ...] with `new` [B, T, ...] written from slot `index` (a scalar shared by all
  rows, or [B] int32 per row; per-row slots past the end are dropped)."""
  if jnp.ndim(index) == 0:
    return jax.lax.dynamic_update_slice(cache, new, (0, index) + (0,) * (cache.ndim - 2))
  b, t = new.shape[:2]
  slots = index[:, None] + jnp.arange(t, dtype=index.dtype)
  return cache.at[jnp.arange(b)[:, None], slots].set(new, mode="drop")


def _fold(state, scores, weighted_values):
  """One online-softmax update: `scores` [..., S] f32 and `weighted_values(p)` = p @ values."""
  m, l, acc = state
  m_new = jnp.maximum(m, jnp.max(scores, axis=-1))
  p = jnp.exp(scores - m_new[..., None])
  scale = jnp.exp(m - m_new)
  return m_new, l * scale + jnp.sum(p, axis=-1), acc * scale[..., None] + weighted_values(p)


def attend_filled(q, k_new, v_new, k_cache, v_cache, cache_mask, filled, prefix=None, *,
                  block: int):
  """Attention of one new token per row over its earlier cache slots, its prompt prefix and
  itself, reading the cache only up to the block holding slot ``max(filled) - 1``.

  q [B, 1, H, Dh]; k_new, v_new [B, 1, KV, Dh]: the step's own query, key and value; k_cache,
  v_cache [B, S, KV, Dh] with cache_mask [B, S] (True = a valid earlier slot); filled: a scalar or
  [B] int32 with every valid slot of row b below filled[b] (the caller's promise: slots at or past
  max(filled) are never read). prefix: (pk, pv, pmask) as in `layers.attend`, shared by the
  G = B // Bp consecutive rows of each entry. Queries are grouped [B, KV, R, Dh] by their KV head,
  so a cache split by KV head is read where it lies. Returns [B, 1, H, Dv], equal to
  `layers.attend_step` up to float rounding.
  """
  b, _, h, dh = q.shape
  s_len, kv, dv = k_cache.shape[1], k_cache.shape[2], v_cache.shape[-1]
  f32 = jnp.float32
  qg = (q[:, 0] * (dh ** -0.5)).reshape(b, kv, h // kv, dh)
  # Start from the step's own token, always visible: max = its score, normaliser 1.
  m = jnp.einsum("bkrd,bkd->bkr", qg, k_new[:, 0], preferred_element_type=f32)
  state = (m, jnp.ones_like(m),
           jnp.broadcast_to(v_new[:, 0, :, None, :].astype(f32), (b, kv, h // kv, dv)))
  if prefix is not None:
    pk, pv, pmask = prefix
    bp = pk.shape[0]
    grouped = qg.reshape(bp, b // bp, kv, h // kv, dh)
    scores = jnp.einsum("bgkrd,bpkd->bgkrp", grouped, pk, preferred_element_type=f32)
    scores = jnp.where(pmask[:, None, None, None, :], scores, NEG_INF).reshape(b, kv, h // kv, -1)
    state = _fold(state, scores, lambda p: jnp.einsum(
        "bgkrp,bpkd->bgkrd", p.reshape(bp, b // bp, *p.shape[1:]).astype(pv.dtype), pv,
        preferred_element_type=f32).reshape(b, kv, h // kv, dv))
  block = min(block, s_len)

  def one_block(i, state):
    # The last block is moved back to end at S; slots it shares with block i-1 are masked.
    first = jnp.minimum(i * block, s_len - block)
    slots = first + jnp.arange(block)
    kb = jax.lax.dynamic_slice_in_dim(k_cache, first, block, axis=1)
    vb = jax.lax.dynamic_slice_in_dim(v_cache, first, block, axis=1)
    valid = jax.lax.dynamic_slice_in_dim(cache_mask, first, block, axis=1) & (slots >= i * block)
    scores = jnp.einsum("bkrd,bskd->bkrs", qg, kb, preferred_element_type=f32)
    scores = jnp.where(valid[:, None, None, :], scores, NEG_INF)
    return _fold(state, scores, lambda p: jnp.einsum("bkrs,bskd->bkrd", p.astype(vb.dtype), vb,
                                                     preferred_element_type=f32))

  blocks = (jnp.max(filled) + block - 1) // block
  m, l, acc = jax.lax.fori_loop(0, blocks, one_block, state)
  return (acc / l[..., None]).astype(v_cache.dtype).reshape(b, 1, h, dv)
