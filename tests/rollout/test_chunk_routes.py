"""Chunked rollouts of a routing-replay policy: each chunk's recorded experts (rows on their
second axis) are cut to the chunk's own rows and equal one call on all prompts."""
import dataclasses

import jax
import numpy as np

from r1jax.models import init
from r1jax.rollout import SamplingConfig, sample, sample_chunks
from tests.models.test_mla import V3

CFG = dataclasses.replace(V3, moe=dataclasses.replace(V3.moe, routing_replay=True))


def test_a_padded_last_chunk_keeps_only_its_rows_routes():
  params = init(CFG, jax.random.key(0))
  tokens = np.asarray(jax.random.randint(jax.random.key(1), (3, 4), 1, CFG.vocab_size))
  mask = np.ones((3, 4), bool)
  whole = sample(CFG, params, tokens, mask, jax.random.key(2), num_samples=2, max_new_tokens=4)
  config = SamplingConfig(max_new_tokens=4, prompts_per_chunk=2)
  parts = list(sample_chunks(CFG, params, tokens, mask, jax.random.key(2), config, 2))
  assert [o.expert_ids.shape[1] for _, o in parts] == [4, 2]   # the last chunk: 1 prompt x G
  joined = np.concatenate([np.asarray(o.expert_ids) for _, o in parts], axis=1)
  np.testing.assert_array_equal(joined, np.asarray(whole.expert_ids))
