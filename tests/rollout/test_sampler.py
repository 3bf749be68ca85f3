"""The sampler against full forward passes: greedy tokens, exact log-probs, EOS and padding."""
import jax
import numpy as np
import pytest

from r1jax.models import logits
from r1jax.rollout import sample
from r1jax.rollout.sampler import rollout_jit

G = 2
STEPS = 7


@pytest.fixture(scope="module", params=["DENSE", "MOE"])
def model(request, ref):
  cfg = getattr(ref, request.param)
  return cfg, ref.make_params(cfg)


def test_greedy_is_repeated_argmax_of_full_forward(ref, model):
  cfg, params = model
  tokens, mask = ref.left_padded(ref.PROMPTS)
  out = sample(cfg, params, tokens, mask, jax.random.key(0), num_samples=G, max_new_tokens=STEPS,
               temperature=0.0)
  seqs = [list(ref.PROMPTS[r // G]) for r in range(len(ref.PROMPTS) * G)]
  width = max(map(len, seqs)) + STEPS
  for _ in range(STEPS):  # right-padded rows: causal attention never sees the padding
    batch = np.array([s + [0] * (width - len(s)) for s in seqs], np.int32)
    full = np.asarray(logits(cfg, params, batch))
    for r, s in enumerate(seqs):
      s.append(int(np.argmax(full[r, len(s) - 1])))
  np.testing.assert_array_equal(np.asarray(out.tokens), np.array([s[-STEPS:] for s in seqs]))
  assert np.all(np.asarray(out.lengths) == STEPS)
  # Temperature 0: log-probs of the raw logits.
  forced = ref.teacher_forced_logits(cfg, params, ref.PROMPTS, out, G)
  for r, lg in enumerate(forced):
    want = np.take_along_axis(ref.log_softmax(lg), np.asarray(out.tokens[r])[:, None], 1)[:, 0]
    np.testing.assert_allclose(np.asarray(out.logprobs[r]), want, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_teacher_forced_tempered_logprobs(ref, model, temperature):
  cfg, params = model
  tokens, mask = ref.left_padded(ref.PROMPTS)
  # top_k truncates sampling only; log-probs stay those of the untruncated tempered distribution.
  out = sample(cfg, params, tokens, mask, jax.random.key(1), num_samples=G, max_new_tokens=STEPS,
               temperature=temperature, top_k=5 if temperature != 1.0 else 0)
  forced = ref.teacher_forced_logits(cfg, params, ref.PROMPTS, out, G)
  for r, lg in enumerate(forced):
    n = len(lg)
    want = np.take_along_axis(ref.log_softmax(lg / temperature),
                              np.asarray(out.tokens[r, :n])[:, None], 1)[:, 0]
    np.testing.assert_allclose(np.asarray(out.logprobs[r, :n]), want, atol=1e-5, rtol=0)


def test_eos_padding_and_finish_reasons(ref):
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE, init_std=0.5)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  eos, pad = (3, 17), 39
  out = sample(cfg, params, tokens, mask, jax.random.key(2), num_samples=8, max_new_tokens=12,
               eos_ids=eos, pad_id=pad)
  toks, lps = np.asarray(out.tokens), np.asarray(out.logprobs)
  lengths, finished = np.asarray(out.lengths), np.asarray(out.finished_eos)
  assert finished.any() and (~finished).any(), "the seed should give both finish reasons"
  for r in range(toks.shape[0]):
    n = lengths[r]
    body = toks[r, :n]
    assert not np.isin(body[:-1], eos).any(), "generation continued past an EOS"
    assert finished[r] == (body[-1] in eos)
    assert finished[r] or n == 12
    assert np.all(toks[r, n:] == pad) and np.all(lps[r, n:] == 0.0)
    assert np.all(lps[r, :n] < 0.0)
  assert out.finish_reasons() == ["eos" if f else "length" for f in finished]
  np.testing.assert_array_equal(np.asarray(out.mask()), np.arange(12)[None] < lengths[:, None])
  # The log-probs of an EOS-truncated rollout still match the full forward pass.
  forced = ref.teacher_forced_logits(cfg, params, ref.PROMPTS, out, 8)
  for r, lg in enumerate(forced):
    want = np.take_along_axis(ref.log_softmax(lg), toks[r, :len(lg), None], 1)[:, 0]
    np.testing.assert_allclose(lps[r, :len(lg)], want, atol=1e-5)


def test_loop_stops_early_when_every_row_has_finished(ref):
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  greedy = sample(cfg, params, tokens, mask, jax.random.key(0), num_samples=1, max_new_tokens=4,
                  temperature=0.0)
  first = np.asarray(greedy.tokens[:, 0])
  # Every prompt's greedy first token is an EOS: all rows end after one token.
  out = sample(cfg, params, tokens, mask, jax.random.key(0), num_samples=1, max_new_tokens=4,
               temperature=0.0, eos_ids=tuple(sorted(set(first.tolist()))))
  np.testing.assert_array_equal(np.asarray(out.lengths), 1)
  assert np.asarray(out.finished_eos).all()
  np.testing.assert_array_equal(np.asarray(out.tokens[:, 1:]), 0)


def test_samples_differ_within_a_group_and_repeat_with_the_seed(ref):
  # Near-uniform weights, so the samples spread out.
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE, init_std=0.05)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  kw = dict(num_samples=4, max_new_tokens=6)
  a = sample(cfg, params, tokens, mask, jax.random.key(3), **kw)
  b = sample(cfg, params, tokens, mask, jax.random.key(3), **kw)
  c = sample(cfg, params, tokens, mask, jax.random.key(4), **kw)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
  groups = np.asarray(a.tokens).reshape(len(ref.PROMPTS), 4, -1)
  for group in groups:
    assert len({tuple(row) for row in group}) == 4


def test_shared_prefix_equals_separate_prefill(ref):
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  kw = dict(num_samples=3, max_new_tokens=6, eos_ids=(3,))
  shared = sample(cfg, params, tokens, mask, jax.random.key(5), **kw)
  separate = sample(cfg, params, tokens, mask, jax.random.key(5), share_prefix=False, **kw)
  np.testing.assert_array_equal(np.asarray(shared.tokens), np.asarray(separate.tokens))
  np.testing.assert_array_equal(np.asarray(shared.lengths), np.asarray(separate.lengths))
  # float32 rounding only: grouped and per-row prefix products sum in different orders
  np.testing.assert_allclose(np.asarray(shared.logprobs), np.asarray(separate.logprobs), atol=1e-6,
                             rtol=2e-6)


def test_bfloat16_cache_stays_close_to_the_exact_logprobs(ref):
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  out = sample(cfg, params, tokens, mask, jax.random.key(6), num_samples=G, max_new_tokens=5,
               cache_dtype="bfloat16")
  forced = ref.teacher_forced_logits(cfg, params, ref.PROMPTS, out, G)
  for r, lg in enumerate(forced):
    want = np.take_along_axis(ref.log_softmax(lg), np.asarray(out.tokens[r])[:, None], 1)[:, 0]
    np.testing.assert_allclose(np.asarray(out.logprobs[r]), want, atol=2e-2)


def test_compiles_once_per_shape(ref):
  cfg, params = ref.DENSE, ref.make_params(ref.DENSE)
  tokens, mask = ref.left_padded(ref.PROMPTS)
  kw = dict(num_samples=2, max_new_tokens=3)
  sample(cfg, params, tokens, mask, jax.random.key(0), **kw)
  before = rollout_jit._cache_size()
  other = ref.make_params(ref.DENSE, seed=1)
  for seed in range(3):
    sample(cfg, other, tokens, mask, jax.random.key(seed), **kw)
  assert rollout_jit._cache_size() == before
