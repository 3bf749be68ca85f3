"""Next-token cross-entropy on masked targets, returned as (sum, denominator).

Returning the sum and the token count, not their ratio, keeps the mean exact when a batch is
split over micro-batches or devices: the caller divides the total sum by the total count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.models import ModelConfig, forward


def token_nll(model_cfg: ModelConfig, params, batch):
  """Negative log-likelihood per position [R, L] (0 where loss_mask is False)."""
  logits, _, aux = forward(model_cfg, params, batch["tokens"], positions=batch["positions"],
                           segment_ids=batch["segment_ids"])
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
  return jnp.where(batch["loss_mask"], nll, 0.0), aux


def lm_loss(model_cfg: ModelConfig, params, batch):
  """(sum of NLL over masked targets, number of masked targets, MoE aux loss)."""
  nll, aux = token_nll(model_cfg, params, batch)
  return jnp.sum(nll), jnp.sum(batch["loss_mask"]).astype(jnp.float32), aux["aux_loss"]
