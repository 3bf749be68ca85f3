import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import forward, logits


def _check_shared_prefix(cfg, params, prompts, prefix, *, group: int, length: int, seed: int = 5):
  """G completions per prompt read the prompt's prefix cache; each row must equal a full forward
  of its prompt + completion. `prompts` are the unpadded prompts the prefix was made from."""
  rows, plen = prompts.shape[0] * group, prompts.shape[1]
  completions = jax.random.randint(jax.random.key(seed), (rows, length), 0, cfg.vocab_size)
  positions = jnp.broadcast_to(plen + jnp.arange(length), (rows, length))
  shared, _, _ = forward(cfg, params, completions, positions=positions, prefix=prefix)
  for row in range(rows):
    seq = jnp.concatenate([prompts[row // group], completions[row]])[None]
    np.testing.assert_allclose(shared[row], logits(cfg, params, seq)[0, plen:], atol=1e-5,
                               rtol=1e-5)


@pytest.fixture
def check_shared_prefix():
  return _check_shared_prefix
