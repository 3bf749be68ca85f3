"""Multi-head Latent Attention (DeepSeek-V2/V3) as pure functions over one layer's parameters.

Each token's keys and values come from one compressed latent ``c`` [kv_lora_rank] (normalised)
through per-head up-projections, plus one RoPE key ``k_pe`` [qk_rope_head_dim] shared by all heads;
queries are ``[q_nope, q_pe]`` per head, optionally through a low-rank ``q_a`` / ``q_b`` pair.

Two equal ways to attend:
  * plain: up-project the keys and values of every position and attend per head (training,
    prefill and the learner: per-head keys are smaller than the latent, so this is the cheaper
    form for long blocks; the model runs it blockwise, :func:`attend_plain` is its dense
    statement);
  * :func:`attend_absorbed` never forms per-head keys: the key up-projection is folded into the
    query (``q_nope @ W_uk`` lives in latent space) and the value up-projection into the output,
    so it reads only ``(c, k_pe)``. That is what the KV cache stores, so decode steps use it.

Cache layout: the model's :class:`KVCache` with ``k`` = latents [.., S, 1, kv_lora_rank] and
``v`` = RoPE keys [.., S, 1, qk_rope_head_dim]; a prefix is the same. Softmax runs in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.mesh import constrain
from r1jax.models import decode_attention, layers, rope_scaling
from r1jax.models.config import MLAConfig

NEG_INF = -1e30
LORA_NORM_EPS = 1e-6   # the latent norms use a fixed epsilon (not rms_norm_eps) in DeepSeek's code


def spec(d: int, heads: int, m: MLAConfig):
  """name -> (shape, logical axes, init) of one layer's attention parameters."""
  out = {}
  if m.q_lora_rank:
    out |= {"q_a": ((d, m.q_lora_rank), ("embed", None), "normal"),
            "q_a_norm": ((m.q_lora_rank,), (None,), "ones"),
            # The low ranks shard like the model dim (over fsdp): these are large at V3 size.
            "q_b": ((m.q_lora_rank, heads, m.qk_head_dim), ("embed", "heads", "head_dim"), "normal")}
  else:
    out["q"] = ((d, heads, m.qk_head_dim), ("embed", "heads", "head_dim"), "normal")
  return out | {
      "kv_a": ((d, m.kv_lora_rank + m.qk_rope_head_dim), ("embed", None), "normal"),
      "kv_a_norm": ((m.kv_lora_rank,), (None,), "ones"),
      # Per head: [key up-projection (qk_nope_head_dim) | value up-projection (v_head_dim)].
      "kv_b": ((m.kv_lora_rank, heads, m.qk_nope_head_dim + m.v_head_dim),
               ("embed", "heads", "head_dim"), "normal"),
      "o": ((heads, m.v_head_dim, d), ("heads", "head_dim", "embed"), "normal")}


def project(p, x, positions, m: MLAConfig, theta, dtype):
  """x [B,T,D] -> q_nope [B,T,H,Dn], q_pe [B,T,H,Dr] (roped), c [B,T,R] (normed), k_pe [B,T,Dr]."""
  if m.q_lora_rank:
    qa = layers.rms_norm(jnp.einsum("btd,dr->btr", x, p["q_a"].astype(dtype)), p["q_a_norm"],
                         LORA_NORM_EPS)
    q = jnp.einsum("btr,rhk->bthk", qa, p["q_b"].astype(dtype))
  else:
    q = jnp.einsum("btd,dhk->bthk", x, p["q"].astype(dtype))
  q = constrain(q, ("batch", "length", "act_heads", "head_dim"))
  if rope_scaling.softmax_factor(theta) != 1.0:   # YaRN's mscale^2 on every score (DeepSeek)
    q = q * rope_scaling.softmax_factor(theta)
  q_nope, q_pe = q[..., :m.qk_nope_head_dim], q[..., m.qk_nope_head_dim:]
  kv = jnp.einsum("btd,dr->btr", x, p["kv_a"].astype(dtype))
  c = layers.rms_norm(kv[..., :m.kv_lora_rank], p["kv_a_norm"], LORA_NORM_EPS)
  k_pe = layers.rope(kv[..., None, m.kv_lora_rank:], positions, theta)[:, :, 0]
  return q_nope, layers.rope(q_pe, positions, theta), c, k_pe


def attend_plain(p, q_nope, q_pe, c, k_pe, mask, m: MLAConfig):
  """Attention over the block's own tokens with per-head keys and values; mask [B,T,S].
  Returns [B,T,H,Dv]."""
  kv = jnp.einsum("bsr,rhk->bshk", c, p["kv_b"].astype(c.dtype))
  k_nope, v = kv[..., :m.qk_nope_head_dim], kv[..., m.qk_nope_head_dim:]
  f32 = jnp.float32
  scores = (jnp.einsum("bthk,bshk->bhts", q_nope, k_nope, preferred_element_type=f32)
            + jnp.einsum("bthk,bsk->bhts", q_pe, k_pe, preferred_element_type=f32))
  scores = jnp.where(mask[:, None], scores * m.qk_head_dim ** -0.5, NEG_INF)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  return jnp.einsum("bhts,bshk->bthk", probs, v)


def attend_absorbed(p, q_nope, q_pe, c, k_pe, mask, m: MLAConfig, prefix=None):
  """The same attention read from latents only; optionally also over a shared prefix.

  c [B,S,R], k_pe [B,S,Dr], mask [B,T,S]; prefix: (pc [Bp,P,R], pk_pe [Bp,P,Dr], pmask [Bp,P])
  shared by the G = B // Bp consecutive rows of each prompt. Returns [B,T,H,Dv].
  """
  w = p["kv_b"].astype(c.dtype)
  w_uk, w_uv = w[..., :m.qk_nope_head_dim], w[..., m.qk_nope_head_dim:]
  q_lat = jnp.einsum("bthk,rhk->bthr", q_nope, w_uk)          # the key up-projection, absorbed
  f32 = jnp.float32
  scale = m.qk_head_dim ** -0.5
  scores = (jnp.einsum("bthr,bsr->bhts", q_lat, c, preferred_element_type=f32)
            + jnp.einsum("bthk,bsk->bhts", q_pe, k_pe, preferred_element_type=f32))
  scores = jnp.where(mask[:, None], scores * scale, NEG_INF)
  b, t, h, _ = q_nope.shape
  if prefix is not None:
    pc, pk, pmask = prefix
    bp, p_len = pc.shape[:2]
    group = lambda a: a.reshape(bp, b // bp, *a.shape[1:])
    pscores = (jnp.einsum("bgthr,bpr->bghtp", group(q_lat), pc, preferred_element_type=f32)
               + jnp.einsum("bgthk,bpk->bghtp", group(q_pe), pk, preferred_element_type=f32))
    pscores = jnp.where(pmask[:, None, None, None, :], pscores * scale, NEG_INF)
    scores = jnp.concatenate([pscores.reshape(b, h, t, p_len), scores], axis=-1)
  probs = jax.nn.softmax(scores, axis=-1).astype(c.dtype)
  if prefix is not None:
    pprobs = probs[..., :p_len].reshape(bp, b // bp, h, t, p_len)
    out_lat = jnp.einsum("bghtp,bpr->bgthr", pprobs, pc).reshape(b, t, h, -1)
    out_lat = out_lat + jnp.einsum("bhts,bsr->bthr", probs[..., p_len:], c)
  else:
    out_lat = jnp.einsum("bhts,bsr->bthr", probs, c)
  return jnp.einsum("bthr,rhk->bthk", out_lat, w_uv)           # the value up-projection, absorbed


def _keys_values(p, c, k_pe, m: MLAConfig):
  """Per-head keys [.., S, H, Dqk] and values [.., S, H, Dv] up-projected from latents."""
  kv = jnp.einsum("bsr,rhk->bshk", c, p["kv_b"].astype(c.dtype))
  k_nope, v = kv[..., :m.qk_nope_head_dim], kv[..., m.qk_nope_head_dim:]
  k_rope = jnp.broadcast_to(k_pe[:, :, None], (*k_nope.shape[:3], m.qk_rope_head_dim))
  return jnp.concatenate([k_nope, k_rope], axis=-1), v


def attention(p, x, positions, mask, kv, prefix, index, m: MLAConfig, theta, dtype):
  """One MLA sub-layer: (output [B,T,D] before the residual, updated (latent, rope-key) cache).

  mask: the model's factored `layers.Mask` over the block's own keys, or over the cache slots
  when there is a cache. kv: None or this layer's (latents
  [B,S,1,R], rope keys [B,S,1,Dr]); the block's latents are written at `index`. prefix: None or
  (latents [Bp,P,1,R], rope keys [Bp,P,1,Dr], mask [Bp,P]).

  A decode step (one token per row, with a cache) attends in the absorbed form, reading only
  latents. Everything else (training, the learner's prefix-shared forward, prefill) up-projects
  keys and values and runs the model's blockwise attention (`layers.attend`), whose memory stays
  O(T + S) per row and head at any length.
  """
  q_nope, q_pe, c, k_pe = project(p, x, positions, m, theta, dtype)
  if prefix is not None:
    prefix = (prefix[0][:, :, 0].astype(dtype), prefix[1][:, :, 0].astype(dtype), prefix[2])
  if kv is not None:
    ck, cv = kv
    kv = (decode_attention.write(ck, c[:, :, None].astype(ck.dtype), index),
          decode_attention.write(cv, k_pe[:, :, None].astype(cv.dtype), index))
    c, k_pe = kv[0][:, :, 0].astype(dtype), kv[1][:, :, 0].astype(dtype)
  if kv is not None and x.shape[1] == 1:
    dense = mask.dense() if hasattr(mask, "dense") else mask
    out = attend_absorbed(p, q_nope, q_pe, c, k_pe, dense, m, prefix)
  else:
    k, v = _keys_values(p, c, k_pe, m)
    if prefix is not None:
      prefix = (*_keys_values(p, prefix[0], prefix[1], m), prefix[2])
    q = jnp.concatenate([q_nope, q_pe], axis=-1)
    out = layers.attend(q, k, v, mask, prefix, block=layers.BLOCK)
  return jnp.einsum("bthk,hkd->btd", out, p["o"].astype(dtype)), kv
