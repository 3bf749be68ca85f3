"""Transformer building blocks as pure functions over parameter dicts.

RMSNorm, rotary embeddings (Qwen's rotate-half layout), grouped-query attention over a block of
"own" keys (the current tokens, or a KV cache) plus an optional read-only shared prefix, and a
SwiGLU MLP. The shared prefix is how G samples of one prompt attend to that prompt's KV once:
queries are grouped [prompts, G, ...] against prefix keys [prompts, ...], so the prompt's cache is
neither recomputed nor copied G times. Softmax runs in float32 whatever the compute dtype.

Long sequences take memory-efficient paths: attention in [BLOCK x BLOCK] tiles with an online
softmax and a recomputing backward (`flash_attention`, under a factored `Mask`; there each row
reads its prompt's prefix keys), the MLP in rematerialised pieces along the sequence.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from r1jax.mesh import (constrain, current_mesh, current_rules, length_axes, logical_spec,
                        row_axes)
from r1jax.models import rope_scaling

NEG_INF = -1e30


def rms_norm(x, weight, eps):
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return (y * weight.astype(jnp.float32)).astype(x.dtype)


def rope(x, positions, theta):
  """Rotary embedding on [B, T, heads, head_dim] at integer positions [B, T]; `theta` is the base
  (plain RoPE) or a `rope_scaling.Rope` (a checkpoint's context extension: YaRN, ...)."""
  freq, scale = rope_scaling.frequencies(theta, x.shape[-1], positions)
  angles = positions.astype(jnp.float32)[..., None] * freq          # [B, T, half]
  cos = (jnp.cos(angles) * scale)[:, :, None, :]
  sin = (jnp.sin(angles) * scale)[:, :, None, :]
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


def attend(q, k, v, mask, prefix=None, *, block: int | None = None):
  """Grouped-query attention.

  q: [B, T, H, Dh]; k, v: [B, S, KV, Dh]; mask: a factored :class:`Mask` or a dense [B, T, S]
    bool array (True = may attend).
  prefix: optional (pk, pv, pmask) with pk, pv [Bp, P, KV, Dh] and pmask [Bp, P], shared by the
    G = B // Bp consecutive rows of each prompt.
  block: tile length of the blockwise path; by default it is taken when a factored mask is
    given and a sequence is longer than BLOCK (the dense path's [B, H, T, P+T] float32 scores
    are then what limits memory). On GPU a plain causal self-attention in 16-bit goes to the
    fused cuDNN kernel instead.
  Returns [B, T, H, Dh].
  """
  t = q.shape[1]
  if isinstance(mask, Mask):
    longest = max(t, k.shape[1], 0 if prefix is None else prefix[0].shape[1])
    if (mask.plain_causal and prefix is None and block is None and jax.default_backend() == "gpu"
        and q.dtype in (jnp.bfloat16, jnp.float16)):
      return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
    if block is not None or longest > BLOCK:
      return _attend_blockwise(q, k, v, mask, prefix, block or BLOCK)
    mask = mask.dense()
  return _attend_dense(q, k, v, mask, prefix)


def _attend_blockwise(q, k, v, mask, prefix, block):
  """`attend` by `flash_attention`: the own keys and the shared prefix are two blockwise
  attentions merged by their log-sum-exps."""
  b, t, h, dh = q.shape
  kv, dv = k.shape[2], v.shape[-1]
  q = (q * (dh ** -0.5)).reshape(b, t, kv, h // kv, dh)
  out, lse = flash_attention(q, k, v, mask, block)
  if prefix is not None:
    pk, pv, pmask = prefix
    g = b // pk.shape[0]
    # Each row gets its prompt's keys (P per row and layer, small beside T): the rows' queries
    # stay where they lie, where grouping them [Bp, G*T] would reshard a batch split by rows.
    rows = lambda x: jnp.repeat(x, g, axis=0)
    p_out, p_lse = flash_attention(q, rows(pk), rows(pv),
                                   Mask.make(rows(pmask), query_seg=jnp.zeros((b, t), jnp.int32)),
                                   block)
    total = jnp.logaddexp(lse, p_lse)
    weight = lambda part: jnp.einsum("bkrt->btkr", jnp.exp(part - total))[..., None]
    out = weight(lse) * out + weight(p_lse) * p_out
  return out.astype(v.dtype).reshape(b, t, h, dv)


def _attend_dense(q, k, v, mask, prefix=None):
  """`attend` with the whole [B, KV, R, T, P+T] float32 score array (short sequences)."""
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

  On a mesh the grouped form (`_attend_step_grouped`) is used: there the cache may be split by
  KV head, and the widened query below would sum over that split axis (an all-reduce of every
  row's scores over the whole cache, per layer and step).

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
  if current_mesh() is not None and current_mesh().size > 1:
    return _attend_step_grouped(q, k_new, v_new, k_cache, v_cache, cache_mask, prefix)
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


def _attend_step_grouped(q, k_new, v_new, k_cache, v_cache, cache_mask, prefix=None):
  """`attend_step` with queries grouped [B, KV, R, Dh] by their KV head: every product keeps the
  KV axis as a batch axis, so a cache split by KV head is read where it lies."""
  b, _, h, dh = q.shape
  kv, dv, s_len = k_cache.shape[2], v_cache.shape[-1], k_cache.shape[1]
  f32 = jnp.float32
  qg = (q[:, 0] * (dh ** -0.5)).reshape(b, kv, h // kv, dh)
  scores = jnp.einsum("bkrd,bskd->bkrs", qg, k_cache, preferred_element_type=f32)
  parts = [jnp.where(cache_mask[:, None, None, :], scores, NEG_INF),
           jnp.einsum("bkrd,bkd->bkr", qg, k_new[:, 0], preferred_element_type=f32)[..., None]]
  if prefix is not None:
    pk, pv, pmask = prefix
    bp, p_len = pk.shape[:2]
    pscores = jnp.einsum("bgkrd,bpkd->bgkrp", qg.reshape(bp, b // bp, kv, h // kv, dh), pk,
                         preferred_element_type=f32)
    pscores = jnp.where(pmask[:, None, None, None, :], pscores, NEG_INF)
    parts.insert(0, pscores.reshape(b, kv, h // kv, p_len))
  probs = jax.nn.softmax(jnp.concatenate(parts, axis=-1), axis=-1).astype(v_cache.dtype)
  out = jnp.einsum("bkrs,bskd->bkrd", probs[..., -1 - s_len:-1], v_cache)
  out = out + probs[..., -1:] * v_new[:, 0, :, None, :]
  if prefix is not None:
    pprobs = probs[..., :p_len].reshape(bp, b // bp, kv, h // kv, p_len)
    out = out + jnp.einsum("bgkrp,bpkd->bgkrd", pprobs, pv).reshape(b, kv, h // kv, dv)
  return out.reshape(b, 1, h, dv)


def output_projection(params, attn_out, dtype):
  return jnp.einsum("bthk,hkd->btd", attn_out, params["o"].astype(dtype))


# Positions per piece of the feed-forward on long sequences: its [T, ffn] hidden activations,
# a layer's largest, are then live one piece at a time, in the backward pass too.
MLP_CHUNK = 4096


def swiglu(params, x, dtype):
  """SwiGLU over [B, T, D]. Past MLP_CHUNK positions, on a mesh whose model-parallel axes leave
  the hidden units whole, it runs in rematerialised pieces along T, each device on its own rows
  (and its own positions under sequence parallelism) in `shard_map`, so the weights' gradient is
  summed over devices once, not once per piece. The feed-forward is position-wise: the pieces
  compute exactly the whole."""
  t, mesh = x.shape[1], current_mesh()
  if t <= MLP_CHUNK or mesh is None or mesh.size == 1:
    return _swiglu(params, x, dtype)
  whole = logical_spec(("mlp",), params["gate"].shape[1:], mesh, current_rules())[0] is None
  axes, seq = row_axes(x.shape[0]), length_axes(t)   # own rows, and own positions if split
  if not whole or not axes + seq:
    return _swiglu(params, x, dtype)

  def local(params, x):
    params = jax.tree.map(lambda w: jax.lax.pcast(w, axes + seq, to="varying"), params)
    piece = jax.checkpoint(functools.partial(_swiglu, dtype=dtype, constrained=False))
    return jnp.concatenate([piece(params, x[:, i:i + MLP_CHUNK])
                            for i in range(0, x.shape[1], MLP_CHUNK)], axis=1)
  rows = PartitionSpec(axes or None, seq or None)
  weights = {k: params[k] for k in ("gate", "up", "down")}
  return jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), rows),
                       out_specs=rows)(weights, x)


def _swiglu(params, x, dtype, constrained=True):
  gate = jnp.einsum("btd,df->btf", x, params["gate"].astype(dtype))
  up = jnp.einsum("btd,df->btf", x, params["up"].astype(dtype))
  hidden = jax.nn.silu(gate) * up
  if constrained:
    hidden = constrain(hidden, ("batch", "length", "act_mlp"))
  return jnp.einsum("btf,fd->btd", hidden, params["down"].astype(dtype))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Mask:
  """Which keys each query sees, in factored form instead of a dense [B, T, S] array.

  Key s is visible to query t of row b iff key_valid[b, s], key_pos[b, s] <= query_pos[b, t]
  (causality; non-causal masks give both zeros) and key_seg[b, s] == query_seg[b, t] (packed
  segments; zeros when unused). The factors are O(B (T + S)), so a blockwise attention builds
  each block's mask on the fly. `plain_causal` (static) marks the mask of T tokens attending
  causally to each other with every key valid: a fused kernel's own causal mask.
  """
  key_valid: jax.Array                       # [B, S] bool
  query_pos: jax.Array                       # [B, T] int32
  key_pos: jax.Array                         # [B, S] int32
  query_seg: jax.Array                       # [B, T] int32
  key_seg: jax.Array                         # [B, S] int32
  plain_causal: bool = dataclasses.field(default=False, metadata=dict(static=True))

  @classmethod
  def make(cls, key_valid, query_pos=None, key_pos=None, query_seg=None, key_seg=None,
           plain_causal=False) -> "Mask":
    b, s = key_valid.shape
    t = (query_pos if query_pos is not None else query_seg).shape[-1]
    full = lambda x, n: jnp.broadcast_to(jnp.zeros((), jnp.int32) if x is None
                                         else jnp.asarray(x, jnp.int32), (b, n))
    return cls(key_valid.astype(bool), full(query_pos, t), full(key_pos, s), full(query_seg, t),
               full(key_seg, s), plain_causal)

  def dense(self) -> jax.Array:
    """The [B, T, S] bool mask these factors describe."""
    return _visible(self.query_pos, self.query_seg, self.key_pos, self.key_seg, self.key_valid)


def _visible(qpos, qseg, kpos, kseg, kvalid):
  """[B, Tq, Sk] visibility from the factors of a query block and a key block."""
  return (kvalid[:, None, :] & (kpos[:, None, :] <= qpos[:, :, None])
          & (kseg[:, None, :] == qseg[:, :, None]))


# Query and key block lengths of the blockwise path: one block's f32 scores are
# [B, KV, R, 512, 512], 1 MiB per row and head.
BLOCK = 512


def _pad_to(x, axis, size, value=0):
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, pad, constant_values=value) if size != x.shape[axis] else x


def _blocks(x, axis, n):
  """Splits `axis` into n equal blocks and moves the block index to the front (for lax.scan)."""
  shape = x.shape[:axis] + (n, x.shape[axis] // n) + x.shape[axis + 1:]
  return jnp.moveaxis(x.reshape(shape), axis, 0)


def _unblocks(x, axis):
  """Inverse of `_blocks`: [n, ...] with block length at `axis` -> the joined axis."""
  x = jnp.moveaxis(x, 0, axis)
  return x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2:])


def _block_scores(qb, kb, qm, km):
  """Masked f32 scores [B, KV, R, tq, sk] of a query block against a key block."""
  s = jnp.einsum("btkrd,bskd->bkrts", qb, kb, preferred_element_type=jnp.float32)
  # An additive [B, tq, sk] bias built inside the loop (the barrier keeps XLA from computing
  # every tile's mask ahead of the loops, [T x S] at once).
  qm, km = jax.lax.optimization_barrier((qm, km))
  return s + jnp.where(_visible(*qm, *km), 0.0, NEG_INF)[:, None, None]


def _flash_forward(q, k, v, qm, km, tq, sk):
  """out [B, T, KV, R, Dv] f32 and log-sum-exp [B, KV, R, T] f32, one [tq x sk] tile at a time
  with the online softmax (running max m, normaliser l, unnormalised output acc)."""
  b, t, kv, r, _ = q.shape
  dv = v.shape[-1]
  kblocks = (_blocks(k, 1, k.shape[1] // sk), _blocks(v, 1, v.shape[1] // sk),
             tuple(_blocks(x, 1, x.shape[1] // sk) for x in km))

  def one_query_block(args):
    qb, qmb = args

    def one_key_block(carry, kblk):
      m, l, acc = carry
      kb, vb, kmb = kblk
      s = _block_scores(qb, kb, qmb, kmb)
      m_new = jnp.maximum(m, jnp.max(s, axis=-1))
      p = jnp.exp(s - m_new[..., None])
      scale = jnp.exp(m - m_new)
      acc = acc * scale[..., None] + jnp.einsum("bkrts,bskd->bkrtd", p.astype(vb.dtype), vb,
                                                preferred_element_type=jnp.float32)
      return (m_new, l * scale + jnp.sum(p, axis=-1), acc), None

    init = (jnp.full((b, kv, r, tq), NEG_INF, jnp.float32), jnp.zeros((b, kv, r, tq), jnp.float32),
            jnp.zeros((b, kv, r, tq, dv), jnp.float32))
    (m, l, acc), _ = jax.lax.scan(one_key_block, init, kblocks)
    return jnp.einsum("bkrtd->btkrd", acc / l[..., None]), m + jnp.log(l)

  nq = t // tq
  out, lse = jax.lax.map(one_query_block, (_blocks(q, 1, nq), tuple(_blocks(x, 1, nq) for x in qm)))
  return _unblocks(out, 1), _unblocks(lse, 3)


def _flash_backward(q, k, v, qm, km, out, lse, d_out, d_lse, tq, sk):
  """Gradients of (out, lse) w.r.t. q, k, v, recomputing each tile's probabilities from lse:
  ds = p * (dp - rowsum(d_out * out) + d_lse), dq = ds k, dk = ds^T q, dv = p^T d_out."""
  t, s = q.shape[1], k.shape[1]
  delta = jnp.einsum("btkrd,btkrd->bkrt", d_out, out) - d_lse
  qblocks = (_blocks(q, 1, t // tq), _blocks(d_out, 1, t // tq), _blocks(lse, 3, t // tq),
             _blocks(delta, 3, t // tq), tuple(_blocks(x, 1, t // tq) for x in qm))

  def one_key_block(d_q, kblk):
    kb, vb, kmb = kblk

    def one_query_block(carry, qblk):
      dk, dv = carry
      qb, dob, lseb, deltab, qmb = qblk
      p = jnp.exp(_block_scores(qb, kb, qmb, kmb) - lseb[..., None])
      dp = jnp.einsum("btkrd,bskd->bkrts", dob, vb, preferred_element_type=jnp.float32)
      ds = p * (dp - deltab[..., None])
      dv = dv + jnp.einsum("bkrts,btkrd->bskd", p, dob)
      dk = dk + jnp.einsum("bkrts,btkrd->bskd", ds, qb, preferred_element_type=jnp.float32)
      return (dk, dv), jnp.einsum("bkrts,bskd->btkrd", ds, kb, preferred_element_type=jnp.float32)

    zeros = (jnp.zeros(kb.shape, jnp.float32), jnp.zeros(vb.shape, jnp.float32))
    (dk, dv), dq_blocks = jax.lax.scan(one_query_block, zeros, qblocks)
    return d_q + _unblocks(dq_blocks, 1), (dk, dv)

  kblocks = (_blocks(k, 1, s // sk), _blocks(v, 1, s // sk), tuple(_blocks(x, 1, s // sk) for x in km))
  d_q, (dk, dv) = jax.lax.scan(one_key_block, jnp.zeros(q.shape, jnp.float32), kblocks)
  return d_q, _unblocks(dk, 1), _unblocks(dv, 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _flash(q, k, v, qm, km, tq, sk):
  return _flash_forward(q, k, v, qm, km, tq, sk)


def _flash_fwd(q, k, v, qm, km, tq, sk):
  out, lse = _flash_forward(q, k, v, qm, km, tq, sk)
  return (out, lse), (q, k, v, qm, km, out, lse)


def _flash_bwd(tq, sk, res, grads):
  q, k, v, qm, km, out, lse = res
  d_out, d_lse = grads
  dq, dk, dv = _flash_backward(q, k, v, qm, km, out, lse, d_out.astype(jnp.float32),
                               d_lse.astype(jnp.float32), tq, sk)
  none = lambda xs: tuple(None for _ in xs)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), none(qm), none(km)


_flash.defvjp(_flash_fwd, _flash_bwd)


def flash_attention(q, k, v, mask: Mask, block: int = BLOCK):
  """Blockwise attention of grouped queries q [B, T, KV, R, Dh] (already scaled) over k [B, S,
  KV, Dh], v [B, S, KV, Dv] under a factored `mask`: (out [B, T, KV, R, Dv] f32, log-sum-exp
  [B, KV, R, T] f32), never holding more than one [tq x sk] tile of scores per row and head.

  Exact against the dense softmax for every query with a visible key (a query that sees no key
  gets an average of values, as the dense path's uniform softmax, but over different keys: such
  rows are padding, never read). The backward pass recomputes each tile from the saved
  log-sum-exp (the flash-attention recipe), so training memory is O(T + S) per row and head.
  """
  t, s = q.shape[1], k.shape[1]
  tq, sk = min(block, t), min(block, s)
  tp, sp = -(-t // tq) * tq, -(-s // sk) * sk
  qm = tuple(_pad_to(x, 1, tp) for x in (mask.query_pos, mask.query_seg))
  km = (_pad_to(mask.key_pos, 1, sp), _pad_to(mask.key_seg, 1, sp),
        _pad_to(mask.key_valid, 1, sp, False))
  out, lse = _flash(_pad_to(q, 1, tp), _pad_to(k, 1, sp), _pad_to(v, 1, sp), qm, km, tq, sk)
  return out[:, :t], lse[..., :t]
