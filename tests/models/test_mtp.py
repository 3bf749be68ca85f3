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


def test_incremental_step_equals_mtp_logits_over_the_row():
  """`mtp.step` with a left-padded prompt prefix, a two-entry step (the second entry masked out,
  then redone) and a one-entry step gives `mtp_logits`' depth-1 logits at each position."""
  cfg = dataclasses.replace(V3, mtp_layers=1)
  params = init(cfg, jax.random.key(0), init_std=0.3)
  tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, cfg.vocab_size)
  h = trunk(cfg, params, tokens)[0]
  want = np.asarray(mtp.mtp_logits(cfg, params, tokens, h)[0])       # [2, 7, V]
  pos = jnp.broadcast_to(jnp.arange(8), (2, 8))
  step = jax.jit(mtp.step, static_argnums=0)   # eager dispatch of the block is slow
  # The prefix is left-padded by two masked-out entries (as the sampler's prompts are).
  pad = lambda x: jnp.concatenate([x[:, :2], x], axis=1)
  _, prefix = step(cfg, params, pad(h[:, :4]), pad(tokens[:, 1:5]),
                   jnp.array([[0, 0, 0, 1, 2, 3]] * 2), mtp.init_cache(cfg, 2, 6),
                   jnp.array([[False] * 2 + [True] * 4] * 2))
  cache = mtp.init_cache(cfg, 2, 4)
  cache = dataclasses.replace(cache, index=jnp.zeros((2,), jnp.int32))
  # Entry 5 is written but masked out (a rejected draft), so it is redone from index 5.
  got_4, cache = step(cfg, params, h[:, 4:6], tokens[:, 5:7], pos[:, 4:6], cache,
                      jnp.array([[True, False]] * 2), prefix)
  cache = dataclasses.replace(cache, index=cache.index - 1)
  got_56, _ = step(cfg, params, h[:, 5:7], tokens[:, 6:8], pos[:, 5:7], cache, None, prefix)
  np.testing.assert_allclose(np.asarray(got_4[:, 0]), want[:, 4], atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_56), want[:, 5:7], atol=1e-5)
