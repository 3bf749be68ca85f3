"""Filled-only decode attention against a NumPy softmax, and the per-row cache write."""
import jax.numpy as jnp
import numpy as np

from r1jax.models.decode_attention import attend_filled, write


def _reference(q, k_new, v_new, kc, vc, cache_mask, pk, pv, pmask):
  """Per row and head: softmax over [its prompt's prefix, its valid cache slots, itself]."""
  b, _, h, dh = q.shape
  kv, g = kc.shape[2], b // pk.shape[0]
  out = np.zeros((b, 1, h, vc.shape[-1]), np.float64)
  for r in range(b):
    for head in range(h):
      j = head // (h // kv)
      keys = np.concatenate([pk[r // g][pmask[r // g], j], kc[r][cache_mask[r], j], k_new[r, :, j]])
      vals = np.concatenate([pv[r // g][pmask[r // g], j], vc[r][cache_mask[r], j], v_new[r, :, j]])
      s = keys @ q[r, 0, head] / np.sqrt(dh)
      p = np.exp(s - s.max())
      out[r, 0, head] = p @ vals / p.sum()
  return out


def test_attend_filled_equals_a_plain_softmax_and_never_reads_past_the_filled_blocks():
  rng = np.random.default_rng(0)
  b, s, h, kv, dh, block = 4, 11, 4, 2, 8, 3
  q, k_new, v_new = (rng.normal(size=(b, 1, n, dh)).astype(np.float32) for n in (h, kv, kv))
  kc, vc = (rng.normal(size=(b, s, kv, dh)).astype(np.float32) for _ in range(2))
  pk, pv = (rng.normal(size=(2, 3, kv, dh)).astype(np.float32) for _ in range(2))
  pmask = np.array([[False, True, True], [True, True, True]])
  filled = np.array([0, 3, 7, 5], np.int32)              # max 7: blocks [0, 3), [3, 6), [6, 9)
  cache_mask = np.arange(s)[None] < filled[:, None]
  cache_mask[2, 4] = False                               # a hole inside the filled part
  want = _reference(q, k_new, v_new, kc, vc, cache_mask, pk, pv, pmask)
  # Slots from the fourth block on are never read: poisoned, they would turn the output to NaN.
  kc[:, 9:], vc[:, 9:] = np.nan, np.nan
  got = attend_filled(jnp.asarray(q), k_new, v_new, kc, vc, cache_mask, jnp.asarray(filled),
                      (pk, pv, pmask), block=block)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)
  # A shared step (scalar) bound, and a last block that overlaps the one before it.
  shared = np.arange(s)[None] < np.full((b, 1), 10)
  got = attend_filled(jnp.asarray(q), k_new, v_new, np.nan_to_num(kc), np.nan_to_num(vc), shared,
                      jnp.int32(10), (pk, pv, pmask), block=4)
  want = _reference(q, k_new, v_new, np.nan_to_num(kc), np.nan_to_num(vc), shared, pk, pv, pmask)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)


def test_write_puts_each_rows_tokens_at_its_own_slot():
  cache = np.zeros((3, 5, 2), np.float32)
  new = np.arange(1, 13, dtype=np.float32).reshape(3, 2, 2)
  got = np.asarray(write(jnp.asarray(cache), new, jnp.array([0, 3, 4], jnp.int32)))
  want = cache.copy()
  want[0, 0:2], want[1, 3:5], want[2, 4] = new[0], new[1], new[2, 0]   # past the end: dropped
  np.testing.assert_array_equal(got, want)
  shared = np.asarray(write(jnp.asarray(cache), new, jnp.int32(1)))
  want = cache.copy()
  want[:, 1:3] = new
  np.testing.assert_array_equal(shared, want)
