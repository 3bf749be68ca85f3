"""MTP self-speculative decoding: greedy tokens equal the plain sampler's; sampled tokens have
the policy's exact distribution (chi-square against the enumerated joint) and its log-probs."""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.config import ConfigError
from r1jax.mesh import MeshConfig, make_mesh, use_mesh
from r1jax.models import init, logits
from r1jax.rollout import filtering, sample
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.speculative import speculative_sample
from tests.models.test_mla import V3

CFG = dataclasses.replace(V3, mtp_layers=1)          # MLA + MoE + one MTP module


def test_greedy_tokens_equal_the_plain_sampler(ref):
  params = init(CFG, jax.random.key(0), init_std=0.3)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  kw = dict(max_new_tokens=12, temperature=0.0, eos_ids=(3,))
  plain = sample(CFG, params, tokens, mask, jax.random.key(1), num_samples=2, **kw)
  got, counts = speculative_sample(CFG, SamplingConfig(**kw), 2, params, tokens, mask,
                                   jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(plain.tokens))
  np.testing.assert_array_equal(np.asarray(got.lengths), np.asarray(plain.lengths))
  np.testing.assert_array_equal(np.asarray(got.finished_eos), np.asarray(plain.finished_eos))
  np.testing.assert_allclose(np.asarray(got.logprobs), np.asarray(plain.logprobs), atol=1e-4)
  assert 0 < int(counts["accepted"]) < int(counts["drafted"])   # both branches ran


def test_sampled_tokens_have_the_policy_distribution():
  """Three tokens (the first plain, the second verified, the third a kept draft's bonus) over
  16k rows: their joint matches the policy's (truncated like the sampler) by chi-square, and
  every log-prob is the policy's. Keeping every draft, or drawing rejections from p, fails."""
  temperature, top_k = 0.7, 3                      # p and q both truncated to their top 3
  cfg = dataclasses.replace(CFG, vocab_size=6)
  params = init(cfg, jax.random.key(3), init_std=0.5)
  prompt = np.array([[1, 4, 2]], np.int32)
  config = SamplingConfig(max_new_tokens=3, temperature=temperature, top_k=top_k)
  rows = 16_384
  got, counts = speculative_sample(cfg, config, rows, params, prompt, np.ones_like(prompt),
                                   jax.random.key(5))
  toks = np.asarray(got.tokens)
  assert (np.asarray(got.lengths) == 3).all()
  # The exact joint: every (a, b) continuation, teacher-forced.
  pairs = np.array(list(itertools.product(range(6), repeat=2)), np.int32)
  seqs = np.concatenate([np.repeat(prompt, len(pairs), 0), pairs], 1)
  scaled = logits(cfg, params, jnp.asarray(seqs))[:, 2:] / temperature      # [36, 3, V]
  logp = np.asarray(jax.nn.log_softmax(scaled, -1))
  probs = np.asarray(jax.nn.softmax(filtering.truncate(scaled.reshape(-1, 6), top_k=top_k),
                                    -1)).reshape(36, 3, 6)
  joint = np.einsum("pa,pb,pc->pabc", probs[:, 0], probs[:, 1], probs[:, 2])
  # Row p = (a, b) of `pairs`: keep the entry where (a, b) are the first two tokens.
  joint = joint[np.arange(36), pairs[:, 0], pairs[:, 1]].reshape(-1)        # [(a, b, c)]
  cells = toks[:, 0] * 36 + toks[:, 1] * 6 + toks[:, 2]
  observed = np.bincount(cells, minlength=216)
  expected = rows * joint
  big = expected >= 5
  assert observed[~big].sum() <= max(20, 3 * expected[~big].sum())
  chi2 = np.sum((observed[big] - expected[big]) ** 2 / expected[big])
  dof = big.sum() - 1
  assert chi2 < dof + 6 * np.sqrt(2 * dof), (chi2, dof)
  want_lp = np.stack([logp[cells // 6, 0, toks[:, 0]], logp[cells // 6, 1, toks[:, 1]],
                      logp[cells // 6, 2, toks[:, 2]]], 1)
  np.testing.assert_allclose(np.asarray(got.logprobs), want_lp, rtol=1e-5, atol=1e-5)
  rate = int(counts["accepted"]) / int(counts["drafted"])
  assert 0.05 < rate < 0.95, rate      # both branches ran


def test_refuses_what_it_does_not_cover(ref):
  tokens, mask = ref.left_padded(ref.PROMPTS)
  plain = dataclasses.replace(CFG, mtp_layers=0)
  with pytest.raises(ConfigError, match="mtp_layers"):
    speculative_sample(plain, SamplingConfig(), 1, init(plain, jax.random.key(0)), tokens, mask,
                       jax.random.key(0))
  with pytest.raises(ConfigError, match="refill_slots"):
    speculative_sample(CFG, SamplingConfig(refill_slots=2), 4, None, tokens, mask,
                       jax.random.key(0))
  with use_mesh(make_mesh(MeshConfig(ici=(8, 1, 1, 1)))), pytest.raises(ValueError, match="one device"):
    speculative_sample(CFG, SamplingConfig(), 1, None, tokens, mask, jax.random.key(0))
