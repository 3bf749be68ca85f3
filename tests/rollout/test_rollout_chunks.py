"""Chunked rollouts: in prompt order, equal to one call on all prompts, one compile for all."""
import types

import jax
import numpy as np

from r1jax.rollout import SamplingConfig, sample, sample_chunks
from r1jax.rollout.sampler import rollout_jit


def test_chunks_arrive_in_order_and_equal_a_single_call(ref):
  cfg = ref.DENSE
  params = ref.make_params(cfg)
  prompts = ref.PROMPTS + [[4, 4, 1], [2]]
  tokens, mask = ref.left_padded(prompts)
  config = SamplingConfig(max_new_tokens=5, eos_ids=(3,), prompts_per_chunk=2)
  whole = sample(cfg, params, tokens, mask, jax.random.key(4), num_samples=3, max_new_tokens=5,
                 eos_ids=(3,))
  chunks = sample_chunks(cfg, params, tokens, mask, jax.random.key(4), config, 3)
  assert isinstance(chunks, types.GeneratorType)
  part, first = next(chunks)  # available before the remaining chunks are consumed
  compiled = rollout_jit._cache_size()
  parts = [(part, first)] + list(chunks)
  assert rollout_jit._cache_size() == compiled, "the short last chunk must reuse the program"
  assert [p for p, _ in parts] == [slice(0, 2), slice(2, 4), slice(4, 5)]
  assert [o.tokens.shape[0] for _, o in parts] == [6, 6, 3]
  for field in ("tokens", "lengths", "finished_eos"):
    joined = np.concatenate([np.asarray(getattr(o, field)) for _, o in parts])
    np.testing.assert_array_equal(joined, np.asarray(getattr(whole, field)))
  joined = np.concatenate([np.asarray(o.logprobs) for _, o in parts])
  np.testing.assert_allclose(joined, np.asarray(whole.logprobs), atol=1e-5)  # batch-size noise


def test_chunks_round_to_whole_prompts_per_shard_and_still_equal_a_single_call(ref):
  from r1jax.mesh import MeshConfig, make_mesh, use_mesh
  from r1jax.rollout.chunks import prompts_per_call
  mesh = make_mesh(MeshConfig(ici=(4, 2, 1, 1)))
  assert prompts_per_call(ref.DENSE, 3, None) == 3
  with use_mesh(mesh):                  # decode batch axes: data (4); fsdp turns tensor-parallel
    assert [prompts_per_call(ref.DENSE, n, mesh) for n in (1, 4, 5)] == [4, 4, 8]
  cfg = ref.DENSE
  params = ref.make_params(cfg)
  prompts = ref.PROMPTS + [[4, 4, 1], [2], [6, 6]]
  tokens, mask = ref.left_padded(prompts)
  whole = sample(cfg, params, tokens, mask, jax.random.key(4), num_samples=2, max_new_tokens=4)
  config = SamplingConfig(max_new_tokens=4, prompts_per_chunk=3)
  with use_mesh(mesh):
    parts = list(sample_chunks(cfg, params, tokens, mask, jax.random.key(4), config, 2))
  assert [p for p, _ in parts] == [slice(0, 4), slice(4, 6)]
  joined = np.concatenate([np.asarray(o.tokens) for _, o in parts])
  np.testing.assert_array_equal(joined, np.asarray(whole.tokens))
