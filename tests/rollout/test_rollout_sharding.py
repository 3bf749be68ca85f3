"""Sharded sampling: the same rng gives the same samples on 1 device and on 8 (fake) devices."""
import jax
import numpy as np
import pytest

from r1jax.mesh import MeshConfig, make_mesh, tree_shardings, use_mesh
from r1jax.models import param_axes
from r1jax.rollout import sample

PROMPTS = [[5, 9, 2], [3], [8, 1, 4, 4], [7, 7], [2, 6, 1], [9], [4, 3, 2, 1], [6, 5]]


@pytest.mark.parametrize("ici", [(1, -1, 1, 1), (2, 2, 1, 2)], ids=["fsdp8", "data2-fsdp2-tensor2"])
def test_eight_devices_match_one(ref, ici):
  assert jax.device_count() == 8
  cfg = ref.DENSE
  params = ref.make_params(cfg)
  tokens, mask = ref.left_padded(PROMPTS)
  kw = dict(num_samples=4, max_new_tokens=6, eos_ids=(3,))
  single = sample(cfg, params, tokens, mask, jax.random.key(11), **kw)
  mesh = make_mesh(MeshConfig(ici=ici))
  sharded = jax.device_put(params, tree_shardings(param_axes(cfg), params, mesh))
  with use_mesh(mesh):
    spread = sample(cfg, sharded, tokens, mask, jax.random.key(11), **kw)
  assert len(spread.tokens.sharding.device_set) == 8
  # fsdp8: 4 heads do not split 8 ways, rows spread over all devices; data2-fsdp2-tensor2: the
  # decode layout, fsdp tensor-parallel, rows spread over data.
  assert not spread.tokens.sharding.is_fully_replicated, "the batch should be split over devices"
  np.testing.assert_array_equal(np.asarray(spread.tokens), np.asarray(single.tokens))
  np.testing.assert_array_equal(np.asarray(spread.lengths), np.asarray(single.lengths))
  np.testing.assert_array_equal(np.asarray(spread.finished_eos), np.asarray(single.finished_eos))
  np.testing.assert_allclose(np.asarray(spread.logprobs), np.asarray(single.logprobs), atol=1e-5)
