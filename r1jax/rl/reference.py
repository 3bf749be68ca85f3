"""The reference policy pi_ref: made from the policy, replaced by a copy of it every K optimizer
steps (R1: K = 400), its weight matrices kept in the compute dtype (bfloat16 at scale: half the
memory of the float32 master weights, and the same forward, since the model casts at use)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.models import ModelConfig
from r1jax.models.transformer import compute_weights


def should_reset_reference(step: int, every: int) -> bool:
  """True when `step` optimizer steps are done and the reference is due (K, 2K, ...)."""
  return every > 0 and step > 0 and step % every == 0


def copy_params(params):
  """A fresh copy of a parameter pytree, safe to keep while the train state is donated."""
  return jax.tree.map(jnp.copy, params)


def make_reference(model_cfg: ModelConfig, params):
  """pi_ref from the policy's params: a copy with the weight matrices in the compute dtype."""
  return copy_params(compute_weights(model_cfg, params))


def maybe_reset_reference(step: int, every: int, params, ref_params):
  """The reference params after `step` steps: a copy of the policy in the reference's dtypes
  when due, else unchanged."""
  if not should_reset_reference(step, every):
    return ref_params
  def copy(p, r):
    # Laid out as the reference: on the device even when the policy's state is in host memory.
    p = jax.device_put(p, r.sharding)
    return p.astype(r.dtype) if p.dtype != r.dtype else jnp.copy(p)
  return jax.tree.map(copy, params, ref_params)
