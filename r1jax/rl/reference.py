"""When the reference policy pi_ref is replaced: by a copy of the policy every K optimizer steps
(R1: K = 400)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def should_reset_reference(step: int, every: int) -> bool:
  """True when `step` optimizer steps are done and the reference is due (K, 2K, ...)."""
  return every > 0 and step > 0 and step % every == 0


def copy_params(params):
  """A fresh copy of a parameter pytree, safe to keep while the train state is donated."""
  return jax.tree.map(jnp.copy, params)


def maybe_reset_reference(step: int, every: int, params, ref_params):
  """The reference params after `step` steps: a copy of the policy when due, else unchanged."""
  return copy_params(params) if should_reset_reference(step, every) else ref_params
