"""The decoder-only policy: parameter layout, init, and one pure apply function.

Parameters are a plain dict pytree. Layers of one kind are stacked on a leading `layers` axis and
run under `lax.scan`: first the dense stack (all layers of a dense model, or the first k of a
DeepSeekMoE model), then the MoE stack. Every leaf has a logical-axes tuple (:func:`param_axes`)
that the mesh rules turn into shardings, so state can be created already sharded.

:func:`forward` covers training, prefill and decoding with one code path: without a cache the
tokens attend causally to each other (within a segment, for packed rows); with a
:class:`KVCache` the new keys are written at ``cache.index`` and the tokens attend to every valid
slot up to their own; with a ``prefix`` (a read-only KVCache of B/G prompts) they also attend to
the prompt keys shared by each group of G consecutive rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from r1jax.mesh import constrain
from r1jax.models import decode_attention, layers, mla, moe, sequence_parallel
from r1jax.models.config import ModelConfig

Params = dict[str, Any]
STACKS = ("dense", "moe")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """Keys and values per stack [L, B, S, KV, Dh], which slots hold a token [B, S], next slot."""
  k: dict[str, jax.Array]
  v: dict[str, jax.Array]
  mask: jax.Array
  index: jax.Array

  @property
  def length(self) -> int:
    return self.mask.shape[1]


def _stack_sizes(cfg: ModelConfig) -> dict[str, int]:
  return {name: n for name, n in (("dense", cfg.num_dense_layers), ("moe", cfg.num_moe_layers)) if n}


def _cache_dims(cfg: ModelConfig) -> tuple[tuple[int, int], tuple[int, int]]:
  """(heads, dim) of the cached k and v; MLA caches one latent and one RoPE key per token."""
  if cfg.mla is not None:
    return (1, cfg.mla.kv_lora_rank), (1, cfg.mla.qk_rope_head_dim)
  return (cfg.num_kv_heads, cfg.head_dim), (cfg.num_kv_heads, cfg.head_dim)


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> KVCache:
  dtype = jnp.dtype(dtype or cfg.compute_dtype)
  k_dims, v_dims = _cache_dims(cfg)
  shape = lambda n, dims: (n, batch, length, *dims)
  sizes = _stack_sizes(cfg)
  return KVCache(k={s: jnp.zeros(shape(n, k_dims), dtype) for s, n in sizes.items()},
                 v={s: jnp.zeros(shape(n, v_dims), dtype) for s, n in sizes.items()},
                 mask=jnp.zeros((batch, length), bool), index=jnp.zeros((), jnp.int32))


def cache_axes(cfg: ModelConfig) -> KVCache:
  axes = ("layers", "batch", "length", "kv_heads", "head_dim")
  sizes = _stack_sizes(cfg)
  return KVCache(k={s: axes for s in sizes}, v={s: axes for s in sizes},
                 mask=("batch", "length"), index=())


# name -> (shape without the layers axis, logical axes without `layers`, init)
def _attention_spec(cfg: ModelConfig):
  d, h, kv, dh = cfg.dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  spec = {"q": ((d, h, dh), ("embed", "heads", "head_dim"), "normal"),
          "k": ((d, kv, dh), ("embed", "kv_heads", "head_dim"), "normal"),
          "v": ((d, kv, dh), ("embed", "kv_heads", "head_dim"), "normal"),
          "o": ((h, dh, d), ("heads", "head_dim", "embed"), "normal")}
  if cfg.qkv_bias:
    spec |= {"q_bias": ((h, dh), ("heads", "head_dim"), "zeros"),
             "k_bias": ((kv, dh), ("kv_heads", "head_dim"), "zeros"),
             "v_bias": ((kv, dh), ("kv_heads", "head_dim"), "zeros")}
  return spec


def _mlp_spec(d, f, mlp_axis="mlp"):
  return {"gate": ((d, f), ("embed", mlp_axis), "normal"),
          "up": ((d, f), ("embed", mlp_axis), "normal"),
          "down": ((f, d), (mlp_axis, "embed"), "normal")}


def _block_spec(cfg: ModelConfig, kind: str):
  d = cfg.dim
  attn = _attention_spec(cfg) if cfg.mla is None else mla.spec(d, cfg.num_heads, cfg.mla)
  spec = {"attn_norm": ((d,), ("act_embed",), "ones"), "attn": attn,
          "mlp_norm": ((d,), ("act_embed",), "ones")}
  if kind == "dense":
    spec["mlp"] = _mlp_spec(d, cfg.ffn_dim)
    return spec
  m = cfg.moe
  experts = {name: ((m.num_experts, *shape), ("expert", *axes), init)
             for name, (shape, axes, init) in _mlp_spec(d, m.expert_ffn_dim, "expert_mlp").items()}
  spec["moe"] = {"router": ((d, m.num_experts), ("embed", None), "normal"),
                 "router_bias": ((m.num_experts,), (None,), "zeros"), "experts": experts}
  if m.shared_ffn_dim:
    spec["moe"]["shared"] = _mlp_spec(d, m.shared_ffn_dim)
    if m.shared_gate:
      spec["moe"]["shared_gate"] = ((d, 1), ("embed", None), "normal")
  return spec


def _model_spec(cfg: ModelConfig):
  spec = {"embed": ((cfg.vocab_size, cfg.dim), ("vocab", "embed"), "normal"),
          "final_norm": ((cfg.dim,), ("act_embed",), "ones")}
  for stack, n in _stack_sizes(cfg).items():
    spec[stack] = jax.tree.map(lambda leaf, n=n: ((n, *leaf[0]), ("layers", *leaf[1]), leaf[2]),
                               _block_spec(cfg, stack), is_leaf=_is_spec_leaf)
  if not cfg.tie_embeddings:
    spec["lm_head"] = ((cfg.dim, cfg.vocab_size), ("embed", "vocab"), "normal")
  if cfg.mtp_layers:  # DeepSeek-V3 multi-token prediction modules (r1jax.models.mtp)
    d = cfg.dim
    mtp = {"enorm": ((d,), ("act_embed",), "ones"), "hnorm": ((d,), ("act_embed",), "ones"),
           "eh_proj": ((2 * d, d), (None, "embed"), "normal"), "norm": ((d,), ("act_embed",), "ones"),
           "block": _block_spec(cfg, "dense" if cfg.moe is None else "moe")}
    spec["mtp"] = jax.tree.map(
        lambda leaf: ((cfg.mtp_layers, *leaf[0]), ("layers", *leaf[1]), leaf[2]), mtp,
        is_leaf=_is_spec_leaf)
  return spec


def _is_spec_leaf(x) -> bool:
  return isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], str)


def param_axes(cfg: ModelConfig):
  """The logical axes of every parameter, as a pytree shaped like the params."""
  return jax.tree.map(lambda leaf: leaf[1], _model_spec(cfg), is_leaf=_is_spec_leaf)


def init(cfg: ModelConfig, rng: jax.Array, init_std: float = 0.02) -> Params:
  spec = _model_spec(cfg)
  leaves, treedef = jax.tree.flatten(spec, is_leaf=_is_spec_leaf)
  keys = jax.random.split(rng, len(leaves))
  def make(leaf, key):
    shape, _, kind = leaf
    if kind == "ones":
      return jnp.ones(shape, cfg.weight_dtype)
    if kind == "zeros":
      return jnp.zeros(shape, cfg.weight_dtype)
    return (init_std * jax.random.normal(key, shape, jnp.float32)).astype(cfg.weight_dtype)
  return jax.tree.unflatten(treedef, [make(leaf, key) for leaf, key in zip(leaves, keys)])


def _self_mask(cfg, tokens, segment_ids, token_mask, cache):
  """Visibility among the block's own keys (or the cache's slots), as a factored layers.Mask,
  and the cache's written slots."""
  b, t = tokens.shape
  steps = jnp.arange(t, dtype=jnp.int32)[None]
  if cache is None:
    valid = jnp.ones((b, t), bool) if segment_ids is None else segment_ids != 0
    mask, written = layers.Mask.make(valid, steps, steps, segment_ids, segment_ids,
                                     plain_causal=segment_ids is None), None
  else:
    written = decode_attention.write(cache.mask, token_mask, cache.index)
    mask = layers.Mask.make(written, jnp.reshape(cache.index, (-1, 1)) + steps,
                            jnp.arange(cache.length)[None])
  return mask, written


def _block(cfg: ModelConfig, kind: str, p, x, positions, mask, kv, prefix, index, replay=None,
           decode_block=0):
  dtype = cfg.dtype
  h = layers.rms_norm(x, p["attn_norm"], cfg.norm_eps)
  if cfg.mla is not None:
    out, kv = mla.attention(p["attn"], h, positions, mask, kv, prefix, index, cfg.mla,
                            cfg.rope, dtype)
    return _block_ffn(cfg, kind, p, x + out, replay, kv)
  q, k, v = layers.project_qkv(p["attn"], h, positions, cfg.num_kv_heads, cfg.rope, dtype)
  if prefix is not None:
    prefix = (prefix[0].astype(dtype), prefix[1].astype(dtype), prefix[2])
  if kv is not None:
    ck, cv = kv
    k, v = k.astype(ck.dtype), v.astype(cv.dtype)
    kv = (decode_attention.write(ck, k, index), decode_attention.write(cv, v, index))
    if k.shape[1] == 1:  # decode step: the cache as it was, plus this token
      earlier = mask.dense()[:, 0] & (jnp.arange(ck.shape[1]) != jnp.reshape(index, (-1, 1)))
      if decode_block:   # only the filled blocks: every earlier slot lies below `index`
        out = decode_attention.attend_filled(q, k, v, ck, cv, earlier, index, prefix,
                                             block=decode_block)
      else:
        out = layers.attend_step(q, k.astype(dtype), v.astype(dtype), ck.astype(dtype),
                                 cv.astype(dtype), earlier, prefix)
    else:
      out = sequence_parallel.attend(q, kv[0].astype(dtype), kv[1].astype(dtype), mask,
                                     prefix)
  else:
    out = sequence_parallel.attend(q, k, v, mask, prefix)   # split by position on request
  x = x + layers.output_projection(p["attn"], out, dtype)
  return _block_ffn(cfg, kind, p, x, replay, kv)


def _block_ffn(cfg: ModelConfig, kind: str, p, x, replay, kv):
  """The block's second half (after the attention residual): (x, kv, MoE aux or None)."""
  x = constrain(x, ("batch", "length", "act_embed"))
  h = layers.rms_norm(x, p["mlp_norm"], cfg.norm_eps)
  if kind == "dense":
    y, aux = layers.swiglu(p["mlp"], h, cfg.dtype), None
  else:
    y, aux = moe.moe_ffn(p["moe"], h, cfg.moe, cfg.dtype, replay)
  x = constrain(x + y, ("batch", "length", "act_embed"))
  return x, kv, aux


def _gathered(cfg: ModelConfig, stack: str, p):
  """One layer's weights gathered along `embed` (FSDP): each device then multiplies its own
  rows by whole weights, where weights split along the contraction would make XLA all-reduce
  every activation across the mesh instead. Split only by the model-parallel axes remains."""
  axes = param_axes(cfg)[stack]
  return jax.tree.map(lambda w, ax: constrain(w, tuple(None if a == "embed" else a for a in ax[1:])),
                      p, axes)


def _remat(cfg: ModelConfig, fn):
  if cfg.remat == "none":
    return fn
  policy = None if cfg.remat == "full" else jax.checkpoint_policies.dots_with_no_batch_dims_saveable
  return jax.checkpoint(fn, policy=policy)


def unstack_layers(tree):
  """Params or a KVCache with each stack as a tuple of per-layer pytrees instead of [L, ...].

  :func:`trunk` accepts either form. Decoding loops call it once on the params and caches they
  carry: the layers are then unrolled with static indices, so no step copies a layer's weights
  or cache slab out of (and back into) the stacked arrays, as `lax.scan` over them does.
  """
  split = lambda stacked: tuple(jax.tree.map(lambda a, i=i: a[i], stacked)
                                for i in range(jax.tree.leaves(stacked)[0].shape[0]))
  if isinstance(tree, KVCache):
    return KVCache(k={s: tuple(split(a)) for s, a in tree.k.items()},
                   v={s: tuple(split(a)) for s, a in tree.v.items()}, mask=tree.mask, index=tree.index)
  return {name: split(value) if name in STACKS else value for name, value in tree.items()}


def _unrolled(layer, x, stack_params, caches, prefixes, replay=None):
  """Runs a stack given as per-layer tuples (see :func:`unstack_layers`), aux stacked like scan's."""
  num = len(stack_params)
  ck, cv = (caches[0] or (None,) * num), (caches[1] or (None,) * num)
  pk, pv = (prefixes[0] or (None,) * num), (prefixes[1] or (None,) * num)
  new_k, new_v, auxes = [], [], []
  for i in range(num):
    kv = None if ck[i] is None else (ck[i], cv[i])
    x, kv, aux = layer(x, stack_params[i], kv, pk[i], pv[i], None if replay is None else replay[i])
    if kv is not None:
      new_k.append(kv[0])
      new_v.append(kv[1])
    auxes.append(aux)
  aux = None if auxes[0] is None else jax.tree.map(lambda *a: jnp.stack(a), *auxes)
  return x, tuple(new_k) or None, tuple(new_v) or None, aux


def trunk(cfg: ModelConfig, params: Params, tokens, *, positions=None, segment_ids=None,
          token_mask=None, cache: KVCache | None = None, prefix: KVCache | None = None,
          expert_ids=None, decode_block: int = 0):
  """Final normalised hidden states [B, T, D], the updated cache, and MoE aux outputs.

  cache.index may be [B] int32, a slot per row (rows at different steps). decode_block: for
  one-token decode steps, attend in blocks of this many cache slots, only up to the highest
  filled one (`decode_attention.attend_filled`; MLA layers read the whole cache).

  expert_ids: optional [num_moe_layers, B, T, top_k] routing replay (as recorded by the sampler,
  aux["expert_ids"]): the MoE layers use these experts instead of routing afresh.
  aux: aux_loss, expert_load (of the last MoE layer), expert_ids [num_moe_layers, B, T, top_k]
  (None without MoE) and replay_mismatch (share of decisions that routing would have changed;
  per token, averaged over the MoE layers, in replay_mismatch_tokens [B, T], None without MoE).
  """
  b, t = tokens.shape
  if token_mask is None:
    token_mask = jnp.ones((b, t), bool)
  if positions is None:
    start = 0 if cache is None else cache.index
    positions = jnp.broadcast_to(start + jnp.arange(t, dtype=jnp.int32), (b, t))
  mask, written = _self_mask(cfg, tokens, segment_ids, token_mask, cache)
  x = constrain(params["embed"].astype(cfg.dtype)[tokens], ("batch", "length", "act_embed"))
  aux_loss = jnp.zeros((), jnp.float32)
  expert_load = routes = mismatch_tokens = None
  mismatch = jnp.zeros((), jnp.float32)
  new_k, new_v = {}, {}
  for stack in _stack_sizes(cfg):
    def layer(x, p, kv, pk, pv, replay, stack=stack):
      p = _gathered(cfg, stack, p)
      pre = None if pk is None else (pk, pv, prefix.mask)
      return _block(cfg, stack, p, x, positions, mask, kv, pre,
                    None if cache is None else cache.index, replay, decode_block)
    def body(carry, layer_in, layer=layer):
      x, ck_all, cv_all, i = carry
      p, pk, pv, replay = layer_in
      kv = None
      if ck_all is not None:
        kv = (ck_all[i], cv_all[i])
      x, kv, aux = layer(x, p, kv, pk, pv, replay)
      if kv is not None:
        ck_all = jax.lax.dynamic_update_index_in_dim(ck_all, kv[0], i, 0)
        cv_all = jax.lax.dynamic_update_index_in_dim(cv_all, kv[1], i, 0)
      return (x, ck_all, cv_all, i + 1), aux
    caches = (None, None) if cache is None else (cache.k[stack], cache.v[stack])
    pre = (None, None) if prefix is None else (prefix.k[stack], prefix.v[stack])
    replay = expert_ids if stack == "moe" else None
    if isinstance(params[stack], tuple):
      x, ck, cv, aux = _unrolled(_remat(cfg, layer), x, params[stack], caches, pre, replay)
    else:
      (x, ck, cv, _), aux = jax.lax.scan(_remat(cfg, body), (x, *caches, jnp.int32(0)),
                                         (params[stack], *pre, replay))
    new_k[stack], new_v[stack] = ck, cv
    if aux is not None:
      aux_loss = aux_loss + jnp.sum(aux["aux_loss"])
      expert_load = aux["expert_load"]
      routes, mismatch = aux["expert_ids"], jnp.mean(aux["replay_mismatch"])
      mismatch_tokens = jnp.mean(aux["replay_mismatch_tokens"], 0)
  h = layers.rms_norm(x, params["final_norm"], cfg.norm_eps)
  new_cache = None
  if cache is not None:
    new_cache = KVCache(k=new_k, v=new_v, mask=written, index=cache.index + t)
  return h, new_cache, {"aux_loss": aux_loss, "expert_load": expert_load, "expert_ids": routes,
                        "replay_mismatch": mismatch, "replay_mismatch_tokens": mismatch_tokens}


def compute_weights(cfg: ModelConfig, params: Params) -> Params:
  """The weight matrices cast to the compute dtype, norm gains and biases left as they are.

  The model casts every weight at its use, so a forward over this copy equals one over `params`
  exactly; it is what mixed precision keeps beside float32 master weights (a bfloat16
  reference, the sampler's decode weights) and what the train step gathers, at half the bytes.
  """
  def cast(path, x):
    name = str(getattr(path[-1], "key", path[-1]))
    return x if name.endswith(("norm", "bias")) else x.astype(cfg.dtype)
  return jax.tree_util.tree_map_with_path(cast, params)


def head_weight(cfg: ModelConfig, params: Params):
  """The [D, V] vocabulary projection (the embedding's transpose when tied)."""
  return params["embed"].T if cfg.tie_embeddings else params["lm_head"]


def head(cfg: ModelConfig, params: Params, h):
  """Vocabulary logits in float32 from hidden states."""
  w = head_weight(cfg, params)
  out = jnp.einsum("btd,dv->btv", h, w.astype(h.dtype), preferred_element_type=jnp.float32)
  return constrain(out, ("batch", "length", "act_vocab"))


def forward(cfg: ModelConfig, params: Params, tokens, **kwargs):
  """(logits f32 [B, T, V], updated cache or None, aux). kwargs as in :func:`trunk`."""
  h, cache, aux = trunk(cfg, params, tokens, **kwargs)
  return head(cfg, params, h), cache, aux


def logits(cfg: ModelConfig, params: Params, tokens) -> jax.Array:
  """Teacher-forced logits, float32 [batch, time, vocab], positions 0..T-1, causal."""
  return forward(cfg, params, tokens)[0]


def prompt_positions(prompt_mask) -> jax.Array:
  """Positions of left-padded prompts: 0 at each prompt's first real token (pads clamp to 0)."""
  return jnp.maximum(jnp.cumsum(prompt_mask.astype(jnp.int32), axis=1) - 1, 0)


def prefill(cfg: ModelConfig, params: Params, prompt_tokens, prompt_mask, cache_dtype=None):
  """Runs left-padded prompts [B, P] once: (logits of the last position [B, V], prompt KVCache).

  The returned cache is what G samples of each prompt share as their read-only ``prefix``; the
  next token's position is ``prompt_mask.sum(1)``.
  """
  b, p = prompt_tokens.shape
  cache = init_cache(cfg, b, p, cache_dtype)
  h, cache, _ = trunk(cfg, params, prompt_tokens, positions=prompt_positions(prompt_mask),
                      token_mask=prompt_mask.astype(bool), cache=cache)
  return head(cfg, params, h[:, -1:])[:, 0], cache   # only the last position's logits
