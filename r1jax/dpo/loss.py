"""The DPO loss (Rafailov et al. 2023) on summed completion log-probs, as (sum, denominator).

Per pair: -log sigmoid(beta * ((logp_chosen - ref_chosen) - (logp_rejected - ref_rejected))).
The sum over pairs and the pair count, not their ratio, keep the mean exact over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.models import ModelConfig
from r1jax.sft.loss import token_nll


def sequence_logps(model_cfg: ModelConfig, params, rows):
  """(log-prob of each row's completion tokens, summed [R]; MoE aux loss). `rows` are packed
  rows (`r1jax.sft.packing.pack`) whose loss_mask covers the completion only."""
  nll, aux = token_nll(model_cfg, params, rows)
  return -jnp.sum(nll, axis=-1), aux["aux_loss"]


def dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta: float):
  """(sum of the per-pair losses, number of pairs, {"reward_accuracy", "reward_margin"} summed
  over pairs). The implicit reward margin is beta times the difference of log-ratios."""
  margin = beta * ((logp_chosen - ref_chosen) - (logp_rejected - ref_rejected))
  # softplus(-m) = -log sigmoid(m), without the overflow of log(sigmoid) for large |m|.
  total = jnp.sum(jax.nn.softplus(-margin))
  stats = {"reward_accuracy": jnp.sum(margin > 0).astype(jnp.float32),
           "reward_margin": jnp.sum(margin)}
  return total, jnp.asarray(margin.shape[0], jnp.float32), stats
