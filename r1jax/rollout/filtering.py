"""Top-k and top-p (nucleus) truncation of a row-wise categorical distribution.

Both act on tempered logits [B, V] and return them with every token outside the support set to
-inf, in the order Hugging Face applies them (temperature, then top-k, then top-p on the
renormalised top-k distribution). Ties at the cut-off are kept, so the support can be a little
larger than k tokens or than the smallest set reaching mass p. Only the sampling distribution is
truncated: log-probs are always taken from the untruncated tempered logits (see sampler.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _descending(logits, top_k: int):
  """The largest `top_k` logits per row (all of them when top_k is 0), sorted descending."""
  vocab = logits.shape[-1]
  k = vocab if top_k <= 0 else min(top_k, vocab)
  if k == vocab:
    return -jnp.sort(-logits, axis=-1)
  return jax.lax.top_k(logits, k)[0]


def truncate(logits, *, top_k: int = 0, top_p: float = 1.0):
  """Logits [B, V] with tokens outside the top-k / top-p support set to -inf (static k, p)."""
  k_on = 0 < top_k < logits.shape[-1]
  if not k_on and top_p >= 1.0:
    return logits
  ranked = _descending(logits, top_k)                          # [B, K]
  cutoff = ranked[:, -1]
  if top_p < 1.0:
    probs = jax.nn.softmax(ranked, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # Keep the smallest prefix whose mass reaches top_p; the first token always stays.
    keep = jnp.maximum(jnp.sum(mass_before < top_p, axis=-1), 1)
    cutoff = jnp.take_along_axis(ranked, keep[:, None] - 1, axis=-1)[:, 0]
  return jnp.where(logits >= cutoff[:, None], logits, -jnp.inf)
