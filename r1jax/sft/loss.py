"""Next-token cross-entropy on masked targets, returned as (sum, denominator).

Returning the sum and the token count, not their ratio, keeps the mean exact when a batch is
split over micro-batches or devices: the caller divides the total sum by the total count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.models import ModelConfig, head, mtp, trunk


def token_nll(model_cfg: ModelConfig, params, batch):
  """Negative log-likelihood per position [R, L] (0 where loss_mask is False); aux carries the
  final hidden states (`hidden`) for the MTP loss."""
  h, _, aux = trunk(model_cfg, params, batch["tokens"], positions=batch["positions"],
                    segment_ids=batch["segment_ids"])
  logits = head(model_cfg, params, h)
  aux = dict(aux, hidden=h)
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
  return jnp.where(batch["loss_mask"], nll, 0.0), aux


def lm_loss(model_cfg: ModelConfig, params, batch):
  """(sum of NLL over masked targets, number of masked targets, MoE aux loss). With MTP modules
  the sum includes `mtp_loss_weight` x their NLL sum (DeepSeek-V3's MTP training objective)."""
  nll, aux = token_nll(model_cfg, params, batch)
  total = jnp.sum(nll)
  if model_cfg.mtp_layers:
    total = total + model_cfg.mtp_loss_weight * mtp.mtp_nll(
        model_cfg, params, batch["tokens"], aux["hidden"], batch["loss_mask"], batch["positions"],
        batch["segment_ids"])
  return total, jnp.sum(batch["loss_mask"]).astype(jnp.float32), aux["aux_loss"]
