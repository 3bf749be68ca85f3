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

import jax
import jax.numpy as jnp

from r1jax.models import layers, transformer
from r1jax.models.config import ModelConfig


def mtp_logits(cfg: ModelConfig, params, tokens, h, positions=None, segment_ids=None):
  """Logits of each MTP depth: a list of float32 [B, T-k, V] for k = 1..mtp_layers, where entry
  [b, t] predicts tokens[b, t+k+1]. h: the main model's final hidden states [B, T, D] (`trunk`);
  positions / segment_ids as given to it (packed rows attend within their segment)."""
  b, t = tokens.shape
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
  kind = "dense" if cfg.moe is None else "moe"
  dtype, eps = cfg.dtype, cfg.norm_eps
  out = []
  for k in range(1, cfg.mtp_layers + 1):
    p = jax.tree.map(lambda a, i=k - 1: a[i], params["mtp"])
    n = t - k
    emb = params["embed"].astype(dtype)[tokens[:, k:]]
    x = jnp.concatenate([layers.rms_norm(emb, p["enorm"], eps),
                         layers.rms_norm(h[:, :n].astype(dtype), p["hnorm"], eps)], axis=-1)
    x = jnp.einsum("btc,cd->btd", x, p["eh_proj"].astype(dtype))
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
