"""DeepSeek-V3 multi-token prediction (MTP): `mtp_layers` sequential modules after the main model.

Module k (1-based) predicts the token k+1 positions ahead. At position t it combines the previous
depth's hidden state h[t] (depth 0: the main model's final normalised hidden state) with the
embedding of token t+k, as h' = block(eh_proj([enorm(embed(x[t+k])), hnorm(h[t])])), and reads
logits through its own norm and the main model's output head (the embedding and head are shared,
as in V3; checkpoints store copies). Each depth is one position shorter than the one before.

The MTP loss (weighted by `mtp_loss_weight` in SFT / pretraining) is the mean over depths of the
next-token cross-entropy of each module's predictions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from r1jax.models import layers, transformer
from r1jax.models.config import ModelConfig


def _depth(params, k: int):
  """Depth k's (1-based) module parameters."""
  return jax.tree.map(lambda a: a[k - 1], params["mtp"])


def _module_input(cfg: ModelConfig, params, p, h, next_tokens):
  """eh_proj([enorm(embed(next token)), hnorm(h)]): the block input of one MTP module."""
  dtype, eps = cfg.dtype, cfg.norm_eps
  emb = params["embed"].astype(dtype)[next_tokens]
  x = jnp.concatenate([layers.rms_norm(emb, p["enorm"], eps),
                       layers.rms_norm(h.astype(dtype), p["hnorm"], eps)], axis=-1)
  return jnp.einsum("btc,cd->btd", x, p["eh_proj"].astype(dtype))


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> transformer.KVCache:
  """An empty KV cache for the depth-1 module's block (one layer, stored under 'mtp')."""
  one = transformer.init_cache(dataclasses.replace(cfg, num_layers=1, moe=None), batch, length,
                               dtype)
  return transformer.KVCache(k={"mtp": one.k["dense"][0]}, v={"mtp": one.v["dense"][0]},
                             mask=one.mask, index=one.index)


def step(cfg: ModelConfig, params, h, next_tokens, positions, cache: transformer.KVCache,
         token_mask=None, prefix: transformer.KVCache | None = None):
  """The depth-1 module run incrementally, as the main model decodes with a KV cache:
  (logits f32 [B, T, V], updated cache). Entry [b, t] combines the trunk's hidden state
  h [B, T, D] at `positions` [B, T] with the embedding of the token after it, next_tokens
  [B, T], and predicts the token after that; it attends to the cache's earlier entries (written
  from cache.index, a scalar or [B]) and to an optional read-only `prefix` (an `init_cache`
  cache of B/G prompts shared by each G consecutive rows), as `mtp_logits` does over a row."""
  p = _depth(params, 1)
  x = _module_input(cfg, params, p, h, next_tokens)
  if token_mask is None:
    token_mask = jnp.ones(next_tokens.shape, bool)
  mask, written = transformer._self_mask(cfg, next_tokens, None, token_mask, cache)  # pylint: disable=protected-access
  pre = None if prefix is None else (prefix.k["mtp"], prefix.v["mtp"], prefix.mask)
  kind = "dense" if cfg.moe is None else "moe"
  x, (k, v), _ = transformer._block(cfg, kind, p["block"], x, positions, mask,  # pylint: disable=protected-access
                                    (cache.k["mtp"], cache.v["mtp"]), pre, cache.index)
  new_cache = transformer.KVCache(k={"mtp": k}, v={"mtp": v}, mask=written,
                                  index=cache.index + next_tokens.shape[1])
  return transformer.head(cfg, params, layers.rms_norm(x, p["norm"], cfg.norm_eps)), new_cache


def mtp_logits(cfg: ModelConfig, params, tokens, h, positions=None, segment_ids=None):
  """Logits of each MTP depth: a list of float32 [B, T-k, V] for k = 1..mtp_layers, where entry
  [b, t] predicts tokens[b, t+k+1]. h: the main model's final hidden states [B, T, D] (`trunk`);
  positions / segment_ids as given to it (packed rows attend within their segment)."""
  b, t = tokens.shape
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
  kind = "dense" if cfg.moe is None else "moe"
  eps = cfg.norm_eps
  out = []
  for k in range(1, cfg.mtp_layers + 1):
    p = _depth(params, k)
    n = t - k
    x = _module_input(cfg, params, p, h[:, :n], tokens[:, k:])
    seg = None if segment_ids is None else segment_ids[:, :n]
    mask, _ = transformer._self_mask(cfg, tokens[:, :n], seg, None, None)  # pylint: disable=protected-access
    h, _, _ = transformer._block(cfg, kind, p["block"], x, positions[:, :n], mask,  # pylint: disable=protected-access
                                 None, None, None)
    out.append(transformer.head(cfg, params, layers.rms_norm(h, p["norm"], eps)))
  return out


def mtp_nll(cfg: ModelConfig, params, tokens, h, loss_mask=None, positions=None, segment_ids=None):
  """Sum over target tokens of the MTP cross-entropy, averaged over depths (0 without MTP).

  Like the main loss's sum (divided by the same token count, it is the mean MTP loss).
  loss_mask [B, T]: loss_mask[:, t] says whether the target of position t (tokens[:, t+1])
  counts; a depth-k prediction at t targets tokens[:, t+k+1] and counts where loss_mask[:, t+k]
  does and (packed rows) t and t+k+1 lie in one segment.
  """
  if not cfg.mtp_layers:
    return jnp.zeros((), jnp.float32)
  b, t = tokens.shape
  if loss_mask is None:
    loss_mask = jnp.arange(t)[None, :] < t - 1
  total = jnp.zeros((), jnp.float32)
  for k, logits in enumerate(mtp_logits(cfg, params, tokens, h, positions, segment_ids), start=1):
    n = t - k - 1                                  # predictions whose target is in the row
    weight = loss_mask[:, k:k + n]
    if segment_ids is not None:
      weight = weight & (segment_ids[:, :n] == segment_ids[:, k + 1:])
    logp = jax.nn.log_softmax(logits[:, :n], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, k + 1:, None], axis=-1)[..., 0]
    total = total + jnp.sum(jnp.where(weight, nll, 0.0))
  return total / cfg.mtp_layers
