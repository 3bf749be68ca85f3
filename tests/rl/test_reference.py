"""When the reference is replaced: at K, 2K, ... and never with K = 0, by a copy of the policy."""

import jax.numpy as jnp
import numpy as np

from r1jax.rl.reference import maybe_reset_reference, should_reset_reference


def test_reference_resets_at_k_and_not_before():
  assert [s for s in range(1000) if should_reset_reference(s, 400)] == [400, 800]
  assert not any(should_reset_reference(s, 0) for s in range(1000))
  params = {"w": jnp.arange(3.0)}
  ref = {"w": jnp.zeros(3)}
  for step in range(1, 5):
    params = {"w": params["w"] + 1}
    ref = maybe_reset_reference(step, 3, params, ref)
    want = jnp.arange(3.0) + 3 if step >= 3 else jnp.zeros(3)   # the policy after step 3
    np.testing.assert_array_equal(ref["w"], want)
  assert ref["w"] is not params["w"]                          # a copy, safe under donation
