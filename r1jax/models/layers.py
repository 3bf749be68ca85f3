"""Transformer building blocks as pure functions over parameter dicts.

RMSNorm, rotary embeddings (Qwen's rotate-half layout), grouped-query attention over a block of
"own" keys (the current tokens, or a KV cache) plus an optional read-only shared prefix, and a
SwiGLU MLP. The shared prefix is how G samples of one prompt attend to that prompt's KV once:
queries are grouped [prompts, G, ...] against prefix keys [prompts, ...], so the prompt's cache is
neither recomputed nor copied G times. Softmax runs in float32 whatever the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.mesh import constrain

NEG_INF = -1e30


def rms_norm(x, weight, eps):
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return (y * weight.astype(jnp.float32)).astype(x.dtype)


def rope(x, positions, theta):
  """Rotary embedding on [B, T, heads, head_dim] at integer positions [B, T]."""
  half = x.shape[-1] // 2
  freq = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / x.shape[-1]))
  angles = positions.astype(jnp.float32)[..., None] * freq          # [B, T, half]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def project_qkv(params, x, positions, num_kv_heads, theta, dtype):
  """Returns q [B,T,H,Dh], k and v [B,T,KV,Dh] with rotary embeddings applied to q and k."""
  def proj(name):
    y = jnp.einsum("btd,dhk->bthk", x, params[name].astype(dtype))
    if f"{name}_bias" in params:
      y = y + params[f"{name}_bias"].astype(dtype)
    return y
  q, k, v = proj("q"), proj("k"), proj("v")
  q = constrain(rope(q, positions, theta), ("batch", "length", "act_heads", "head_dim"))
  k = constrain(rope(k, positions, theta), ("batch", "length", "kv_heads", "head_dim"))
  v = constrain(v, ("batch", "length", "kv_heads", "head_dim"))
  return q, k, v


def _scores(q, k):
  """q [B,T,KV,R,Dh] . k [B,S,KV,Dh] -> [B,KV,R,T,S] in float32."""
  return jnp.einsum("btkrd,bskd->bkrts", q, k, preferred_element_type=jnp.float32)


def attend(q, k, v, mask, prefix=None):
  """Grouped-query attention.

  q: [B, T, H, Dh]; k, v: [B, S, KV, Dh]; mask: [B, T, S] bool (True = may attend).
  prefix: optional (pk, pv, pmask) with pk, pv [Bp, P, KV, Dh] and pmask [Bp, P], shared by the
    G = B // Bp consecutive rows of each prompt.
  Returns [B, T, H, Dh].
  """
  b, t, h, dh = q.shape
  kv = k.shape[2]
  q = (q * (dh ** -0.5)).reshape(b, t, kv, h // kv, dh)
  scores = jnp.where(mask[:, None, None], _scores(q, k), NEG_INF)
  if prefix is not None:
    pk, pv, pmask = prefix
    bp = pk.shape[0]
    qg = q.reshape(bp, b // bp, t, kv, h // kv, dh)
    pscores = jnp.einsum("bgtkrd,bpkd->bgkrtp", qg, pk, preferred_element_type=jnp.float32)
    pscores = jnp.where(pmask[:, None, None, None, None, :], pscores, NEG_INF)
    scores = jnp.concatenate([pscores.reshape(b, kv, h // kv, t, -1), scores], axis=-1)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  if prefix is not None:
    p_len = pk.shape[1]
    pprobs = probs[..., :p_len].reshape(bp, b // bp, kv, h // kv, t, p_len)
    out = jnp.einsum("bgkrtp,bpkd->bgtkrd", pprobs, pv).reshape(b, t, kv, h // kv, dh)
    out = out + jnp.einsum("bkrts,bskd->btkrd", probs[..., p_len:], v)
  else:
    out = jnp.einsum("bkrts,bskd->btkrd", probs, v)
  return out.reshape(b, t, h, dh)


def attend_step(q, k_new, v_new, k_cache, v_cache, cache_mask, prefix=None):
  """`attend` for one new token per row (a decode step) against the cache as it was before it.

  q, k_new, v_new: [B, 1, H or KV, Dh], the step's own query, key and value; k_cache, v_cache
  [B, S, KV, Dh] with cache_mask [B, S] (True = a valid earlier slot); prefix as in `attend`.
  Returns [B, 1, H, Dh], equal to `attend` over the cache with the new token written into it.

  Two layout choices keep the step from copying the cache, which on CPU costs more than the
  step's attention itself: the new token is attended to separately, so the cache update that the
  caller writes is the cache's only writer (reading the updated cache made XLA duplicate the
  update per consumer, each into a fresh copy); and each query head is widened to KV*Dh with
  zeros outside its own group's slice (a block-diagonal query), so keys are read by an
  elementwise multiply-reduce and values by a plain batched matmul in their stored layout, where
  the grouped einsums of `attend` transpose the whole cache to [B, KV, S, Dh]. The zeros cost KV
  times the multiply-adds, free here: the step is bound by reading the cache.
  """
  b, _, h, dh = q.shape
  kv = k_cache.shape[2]
  own = (jnp.arange(h) // (h // kv))[:, None] == jnp.arange(kv)[None, :]        # [H, KV]
  wide = jnp.where(own[:, :, None], (q[:, 0] * (dh ** -0.5))[:, :, None, :], 0)  # [B, H, KV, Dh]
  f32 = jnp.float32
  scores = jnp.sum((k_cache[:, None] * wide[:, :, None]).astype(f32), axis=(3, 4))  # [B, H, S]
  scores = jnp.where(cache_mask[:, None, :], scores, NEG_INF)
  self_score = jnp.sum((k_new[:, 0, None] * wide).astype(f32), axis=(2, 3))[..., None]
  parts = [scores, self_score]
  if prefix is not None:
    pk, pv, pmask = prefix
    bp, p_len = pk.shape[:2]
    pscores = jnp.einsum("bqkd,bpkd->bqp", wide.reshape(bp, -1, kv, dh), pk,
                         preferred_element_type=f32)
    parts.insert(0, jnp.where(pmask[:, None, :], pscores, NEG_INF).reshape(b, h, p_len))
  probs = jax.nn.softmax(jnp.concatenate(parts, axis=-1), axis=-1).astype(v_cache.dtype)
  s_len = k_cache.shape[1]
  out = jnp.einsum("bhs,bskd->bhkd", probs[..., -1 - s_len:-1], v_cache)
  out = out + probs[..., -1:, None] * v_new[:, 0, None]
  if prefix is not None:
    out = out + jnp.einsum("bqp,bpkd->bqkd", probs[..., :p_len].reshape(bp, -1, p_len),
                           pv).reshape(b, h, kv, dh)
  out = jnp.sum(jnp.where(own[:, :, None], out, 0), axis=2)
  return out[:, None]


def output_projection(params, attn_out, dtype):
  return jnp.einsum("bthk,hkd->btd", attn_out, params["o"].astype(dtype))


def swiglu(params, x, dtype):
  gate = jnp.einsum("btd,df->btf", x, params["gate"].astype(dtype))
  up = jnp.einsum("btd,df->btf", x, params["up"].astype(dtype))
  hidden = constrain(jax.nn.silu(gate) * up, ("batch", "length", "act_mlp"))
  return jnp.einsum("btf,fd->btd", hidden, params["down"].astype(dtype))
