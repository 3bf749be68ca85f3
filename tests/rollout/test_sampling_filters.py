"""Top-k / top-p truncation and the inverse-CDF draw, alone and through the sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import prefill
from r1jax.rollout import categorical, filtering, sample


def _reference_support(logits, top_k, top_p):
  """The kept token set per row, from a plain sort (ties at the cut-off kept)."""
  keep = np.ones_like(logits, bool)
  for r, row in enumerate(logits):
    order = np.argsort(-row, kind="stable")
    kept = order[:top_k] if top_k else order
    if top_p < 1.0:
      probs = np.exp(row[kept] - row[kept].max())
      probs /= probs.sum()
      before = np.cumsum(probs) - probs
      kept = kept[:max(1, int(np.sum(before < top_p)))]
    keep[r] = row >= row[kept].min()
  return keep


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (3, 1.0), (0, 0.5), (4, 0.8), (0, 1e-6)])
def test_truncate_matches_a_sorted_reference(top_k, top_p):
  logits = np.asarray(jax.random.normal(jax.random.key(0), (6, 50)) * 2.0)
  out = np.asarray(filtering.truncate(jnp.asarray(logits), top_k=top_k, top_p=top_p))
  keep = _reference_support(logits, top_k, top_p)
  np.testing.assert_array_equal(np.isfinite(out), keep)
  np.testing.assert_array_equal(out[keep], logits[keep])
  if top_k and top_p == 1.0:
    assert np.all(keep.sum(1) == top_k)
  if top_p < 1.0:
    assert np.all(keep.sum(1) >= 1)


def test_draw_is_the_exact_inverse_cdf():
  # A uniform grid of u gives each token a count equal to its probability mass, within 1 of it;
  # V > BLOCK exercises the two-level CDF; -inf tokens are never drawn.
  vocab, n = 300, 20000
  logits = np.array(jax.random.normal(jax.random.key(1), (vocab,)))
  logits[::7] = -np.inf
  probs = np.exp(logits - logits[np.isfinite(logits)].max())
  probs /= probs.sum()
  u = (np.arange(n) + 0.5) / n
  drawn = np.asarray(categorical.draw(jnp.broadcast_to(jnp.asarray(logits), (n, vocab)),
                                      jnp.asarray(u, jnp.float32)))
  counts = np.bincount(drawn, minlength=vocab)
  assert counts[::7].sum() == 0
  assert np.max(np.abs(counts - probs * n)) <= 1.5


def test_draw_never_returns_a_masked_token_at_the_top_of_the_range():
  logits = jnp.array([[0.0, 1.0, -jnp.inf, -jnp.inf]] * 3)
  u = jnp.array([0.0, 0.999999, np.nextafter(np.float32(1), np.float32(0))], jnp.float32)
  np.testing.assert_array_equal(np.asarray(categorical.draw(logits, u)), [0, 1, 1])


@pytest.mark.parametrize("top_k,top_p", [(3, 1.0), (0, 0.6)])
def test_sampler_support_and_frequencies_follow_the_truncated_distribution(ref, top_k, top_p):
  cfg = ref.DENSE
  params = ref.make_params(cfg)
  tokens, mask = ref.left_padded([ref.PROMPTS[0]])
  first_logits = np.asarray(prefill(cfg, params, tokens, mask)[0][0], np.float64)
  kept = np.isfinite(np.asarray(filtering.truncate(jnp.asarray(first_logits[None]),
                                                   top_k=top_k, top_p=top_p))[0])
  target = np.where(kept, np.exp(first_logits - first_logits.max()), 0.0)
  target /= target.sum()
  n = 2048
  out = sample(cfg, params, tokens, mask, jax.random.key(7), num_samples=n, max_new_tokens=1,
               top_k=top_k, top_p=top_p)
  counts = np.bincount(np.asarray(out.tokens[:, 0]), minlength=cfg.vocab_size)
  assert counts[~kept].sum() == 0
  assert kept.sum() > 1
  sigma = np.sqrt(n * target * (1 - target)) + 1
  assert np.all(np.abs(counts - n * target) < 5 * sigma)
  # Log-probs are still those of the untruncated distribution.
  full = first_logits - np.log(np.exp(first_logits - first_logits.max()).sum()) - first_logits.max()
  np.testing.assert_allclose(np.asarray(out.logprobs[:, 0]), full[np.asarray(out.tokens[:, 0])],
                             atol=1e-5)
