"""One step's token per row: the draw and its log-prob, per the sampler's log-prob convention.

Randomness is one uniform per row and step from ``fold_in(row_key, step)``; `step` may differ
per row (refilled slots are at different steps), so a row's tokens depend only on its own key
and step, never on which slot or batch it was decoded in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.rollout import categorical, filtering
from r1jax.rollout.config import SamplingConfig


def _uniforms(row_keys, steps):
  steps = jnp.broadcast_to(jnp.asarray(steps, jnp.int32), row_keys.shape)
  keys = jax.vmap(jax.random.fold_in)(row_keys, steps)
  return jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys)


def next_token(config: SamplingConfig, logits, row_keys, steps):
  """(token [B] int32, its log-prob [B] f32) from logits [B, V]; steps: a scalar or [B]."""
  if config.temperature == 0:
    scaled = logits
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  else:
    scaled = logits / config.temperature
    support = filtering.truncate(scaled, top_k=config.top_k, top_p=config.top_p)
    token = categorical.draw(support, _uniforms(row_keys, steps))
  picked = jnp.take_along_axis(scaled, token[:, None], axis=-1)[:, 0]
  return token, picked - jax.nn.logsumexp(scaled, axis=-1)
