"""Corrections for the sampler-vs-learner mismatch: importance weights and the mismatch metrics.

The sampler and the learner compute pi_old with different programs (a cached decode, sometimes
another dtype or engine), so their log-probs of the same tokens differ. With
`recompute_old_logprobs` the learner's forward gives pi_old and the batch keeps the sampler's
log-probs beside it; each token's policy term is then weighted by w = pi_old / pi_sampler,
truncated at the cap (TIS: min(w, C)) or masked beyond it (MIS: w where w <= C, else 0).
"""

from __future__ import annotations

import jax.numpy as jnp

from r1jax.rl.losses import kl_estimate


def importance_weights(old_logp, sampler_logp, mode: str, cap: float, clamp: float = 20.0):
  """Per-token weights [N, T] of `mode` ("none", "tis", "mis"); constants of the parameters."""
  w = jnp.exp(jnp.clip(old_logp - sampler_logp, -clamp, clamp))
  if mode == "none":
    return jnp.ones_like(w)
  if mode == "tis":
    return jnp.minimum(w, cap)
  if mode == "mis":
    return jnp.where(w <= cap, w, 0.0)
  raise ValueError(f"is_correction: got {mode!r}; allowed values: 'none', 'tis', 'mis'")


def mismatch_metrics(old_logp, sampler_logp, mask, mode: str, cap: float,
                     clamp: float = 20.0) -> dict[str, jnp.ndarray]:
  """Over the loss tokens: the k3 estimate of KL(pi_sampler || pi_old), the largest
  |log(pi_old / pi_sampler)|, the mean importance weight and the fraction of tokens above the
  cap."""
  mask = mask.astype(bool)
  tokens = jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)
  old_logp = jnp.where(mask, old_logp, 0.0)
  sampler_logp = jnp.where(mask, sampler_logp, 0.0)
  mean = lambda x: jnp.sum(jnp.where(mask, x, 0.0)) / tokens
  log_ratio = old_logp - sampler_logp
  return {
      "mismatch/kl": mean(kl_estimate(sampler_logp, old_logp, "k3", clamp)),
      "mismatch/max_abs_log_ratio": jnp.max(jnp.where(mask, jnp.abs(log_ratio), 0.0)),
      "is/weight_mean": mean(importance_weights(old_logp, sampler_logp, mode, cap, clamp)),
      "is/above_cap_frac": mean((log_ratio > jnp.log(cap)).astype(jnp.float32)),
  }
