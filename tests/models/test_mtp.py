"""Multi-token prediction: packed rows score each segment as alone; the SFT loss adds its weight."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import init, mtp, trunk
from r1jax.sft.loss import lm_loss, token_nll
from tests.models.test_mla import V3

CFG = dataclasses.replace(V3, mtp_layers=2, mtp_loss_weight=0.3)


@pytest.mark.slow
def test_packed_segments_equal_separate_rows_and_sft_loss_adds_weighted_mtp():
  params = init(CFG, jax.random.key(0), init_std=0.2)
  a = jax.random.randint(jax.random.key(1), (1, 7), 0, CFG.vocab_size)
  b = jax.random.randint(jax.random.key(2), (1, 6), 0, CFG.vocab_size)
  packed = jnp.concatenate([a, b], 1)
  seg = jnp.array([[1] * 7 + [2] * 6])
  pos = jnp.array([list(range(7)) + list(range(6))])
  # loss_mask[t]: the target tokens[t + 1] counts (not across the segment boundary).
  mask = jnp.array([[True] * 6 + [False] + [True] * 5 + [False]])
  batch = {"tokens": packed, "targets": jnp.roll(packed, -1, 1), "positions": pos,
           "segment_ids": seg, "loss_mask": mask}

  @jax.jit
  def run(p):  # one compilation for every quantity checked below
    got = mtp.mtp_nll(CFG, p, packed, trunk(CFG, p, packed, positions=pos, segment_ids=seg)[0],
                      mask, pos, seg)
    alone = sum(mtp.mtp_nll(CFG, p, x, trunk(CFG, p, x)[0]) for x in (a, b))
    total, count, _ = lm_loss(CFG, p, batch)
    grads = jax.grad(lambda p: lm_loss(CFG, p, batch)[0])(p)
    main = jnp.sum(token_nll(CFG, p, batch)[0])
    return got, alone, total, count, main, grads

  got, alone, total, count, main, grads = run(params)
  np.testing.assert_allclose(float(got), float(alone), rtol=1e-5)
  np.testing.assert_allclose(float(total - main), 0.3 * float(got), rtol=1e-4)
  assert float(count) == 11
  assert float(jnp.abs(grads["mtp"]["eh_proj"]).sum()) > 0
