"""Shared-prefix completion log-probs equal full-sequence teacher forcing, values and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import models
from r1jax.rl.logprobs import completion_logprobs

CFG = models.ModelConfig(vocab_size=64, dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
                         head_dim=8, ffn_dim=64)
BP, G, P, T = 2, 3, 6, 5
PROMPT_LENGTHS = (6, 3)


def _data(seed=0):
  rng = np.random.default_rng(seed)
  prompt_tokens = np.zeros((BP, P), np.int32)
  prompt_mask = np.zeros((BP, P), bool)
  half = CFG.vocab_size // 2
  for i, n in enumerate(PROMPT_LENGTHS):                       # left-padded
    prompt_tokens[i, P - n:] = rng.integers(1, half, n)
    prompt_mask[i, P - n:] = True
  # Completions use the other half of the vocabulary, so prompt-token embeddings get gradient
  # only through the prompt's (shared) computation.
  completions = rng.integers(half, CFG.vocab_size, (BP * G, T)).astype(np.int32)
  return prompt_tokens, prompt_mask, completions


def reference_logprobs(params, prompt_tokens, completions, temperature):
  """Logits of each unpadded [prompt; completion] sequence (one batch of G per prompt, no
  prefix cache), read at the completion's positions."""
  logps, entropies = [], []
  for p, n in enumerate(PROMPT_LENGTHS):
    group = completions[p * G:(p + 1) * G]
    seqs = jnp.concatenate([jnp.broadcast_to(prompt_tokens[p, P - n:], (G, n)), group], axis=1)
    logz = jax.nn.log_softmax(models.logits(CFG, params, seqs)[:, n - 1:n - 1 + T] / temperature)
    logps.append(jnp.take_along_axis(logz, group[..., None], -1)[..., 0])
    entropies.append(-jnp.sum(jnp.exp(logz) * logz, -1))
  return jnp.concatenate(logps), jnp.concatenate(entropies)


@pytest.fixture(scope="module")
def params():
  return models.init(CFG, jax.random.key(0), init_std=0.2)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_concatenated_sequences(params, temperature):
  prompt_tokens, prompt_mask, completions = _data()
  logp, entropy = jax.jit(completion_logprobs, static_argnums=0,
                          static_argnames=("temperature", "return_entropy"))(
      CFG, params, prompt_tokens, prompt_mask, completions, temperature=temperature,
      return_entropy=True)
  want_logp, want_entropy = jax.jit(reference_logprobs, static_argnums=3)(
      params, prompt_tokens, completions, temperature)
  np.testing.assert_allclose(logp, want_logp, atol=1e-5, rtol=0)
  np.testing.assert_allclose(entropy, want_entropy, atol=1e-5, rtol=0)
  assert logp.shape == (BP * G, T) and logp.dtype == jnp.float32


def test_gradient_flows_through_the_shared_prompt(params):
  prompt_tokens, prompt_mask, completions = _data(seed=1)
  weights = jnp.asarray(np.random.default_rng(2).normal(size=(BP * G, T)), jnp.float32)
  ours = jax.jit(jax.grad(lambda p: jnp.sum(weights * completion_logprobs(
      CFG, p, prompt_tokens, prompt_mask, completions))))(params)
  want = jax.jit(jax.grad(lambda p: jnp.sum(weights * reference_logprobs(
      p, prompt_tokens, completions, 1.0)[0])))(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4, err_msg=jax.tree_util.keystr(path))
  prompt_only = np.unique(prompt_tokens[prompt_mask])
  assert float(jnp.abs(ours["embed"][prompt_only]).min()) > 0


def test_rows_must_be_groups_of_prompts(params):
  prompt_tokens, prompt_mask, completions = _data()
  with pytest.raises(ValueError, match="need G rows per prompt"):
    completion_logprobs(CFG, params, prompt_tokens, prompt_mask, completions[:5])


@pytest.mark.parametrize("chunk,block", [(1, 2), (3, 4)])
def test_chunked_vocabulary_and_blockwise_attention_match(params, monkeypatch, chunk, block):
  """Log-probs, entropies and gradients with the logits `chunk` positions at a time and the
  attention (prefill over the cache, completions over the shared prefix) in blockwise tiles
  equal the whole-sequence reference (computed first, on the dense path)."""
  from r1jax.models import layers
  from r1jax.rl import logprobs
  prompt_tokens, prompt_mask, completions = _data(seed=3)
  weights = jnp.asarray(np.random.default_rng(4).normal(size=(BP * G, T)), jnp.float32)

  def loss(fn, p):
    logp, entropy = fn(p)
    return jnp.sum(weights * logp) + jnp.sum(weights * entropy)

  ref = lambda p: reference_logprobs(p, prompt_tokens, completions, 0.7)
  want, want_grad = ref(params), jax.grad(functools.partial(loss, ref))(params)
  monkeypatch.setattr(logprobs, "CHUNK", chunk)
  monkeypatch.setattr(layers, "BLOCK", block)
  ours = lambda p: completion_logprobs(CFG, p, prompt_tokens, prompt_mask, completions,
                                       temperature=0.7, return_entropy=True)
  got, got_grad = jax.jit(ours)(params), jax.jit(jax.grad(functools.partial(loss, ours)))(params)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=0)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got_grad), jax.tree.leaves(want_grad)):
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=2e-4, err_msg=jax.tree_util.keystr(path))


def test_sharded_chunks_sum_the_projection_gradient_once():
  """On a mesh each device scores its own rows: the vocabulary projection's gradient crosses
  devices once per step, not once per chunk, and equals the single-device gradient."""
  from r1jax.mesh import MeshConfig, make_mesh, use_mesh
  from r1jax.plan import hlo
  from r1jax.rl.logprobs import chunked_token_stats
  params = models.init(CFG, jax.random.key(0))
  h = jax.random.normal(jax.random.key(1), (8, 10, CFG.dim))
  tokens = jax.random.randint(jax.random.key(2), (8, 10), 0, CFG.vocab_size)
  loss = lambda p: jnp.sum(sum(chunked_token_stats(CFG, p, h, tokens, 0.9, chunk=2)))
  mesh = make_mesh(MeshConfig(ici=(2, 2, 1, 2)))

  def sharded(p):
    with use_mesh(mesh):
      return jax.grad(loss)(p)
  text = jax.jit(sharded).lower(params).compile().as_text()
  once = CFG.dim * CFG.vocab_size * 4
  assert 0 < hlo.analyse(text).collective_bytes["all-reduce"] <= 1.5 * once
  np.testing.assert_allclose(jax.jit(sharded)(params)["lm_head"], jax.grad(loss)(params)["lm_head"],
                             rtol=1e-5, atol=1e-6)
