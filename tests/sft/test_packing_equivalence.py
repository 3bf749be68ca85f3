"""Packing several examples per row trains exactly like one example per row: the same summed
response-token loss, token count and gradient (segment ids keep attention inside each example)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import ModelConfig, init
from r1jax.sft.loss import lm_loss
from r1jax.sft.packing import pack

CFG = ModelConfig(vocab_size=50, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                  ffn_dim=64, max_seq_len=64)


def _pairs(seed=0, n=6):
  rng = np.random.default_rng(seed)
  return [(rng.integers(3, 50, rng.integers(2, 8)).tolist(),
           rng.integers(3, 50, rng.integers(1, 10)).tolist()) for _ in range(n)]


@jax.jit
def _loss_and_grad(params, batch):
  def total(p):
    s, _, _ = lm_loss(CFG, p, batch)
    return s
  value, grad = jax.value_and_grad(total)(params)
  return value, jnp.sum(batch["loss_mask"]), grad


@pytest.mark.parametrize("loss_on_prompt", [False, True])
def test_packed_equals_unpacked_loss_count_and_gradient(loss_on_prompt):
  pairs = _pairs()
  params = init(CFG, jax.random.key(0))
  packed = pack(pairs, 40, loss_on_prompt=loss_on_prompt)
  assert packed["tokens"].shape[0] < len(pairs)           # several examples share a row
  unpacked = [pack([p], 40, loss_on_prompt=loss_on_prompt) for p in pairs]
  single = {k: np.concatenate([u[k] for u in unpacked]) for k in packed}
  loss_p, count_p, grad_p = _loss_and_grad(params, packed)
  loss_u, count_u, grad_u = _loss_and_grad(params, single)
  assert int(count_p) == int(count_u) == sum(
      len(c) + (len(p) - 1 if loss_on_prompt else 0) for p, c in pairs)
  np.testing.assert_allclose(loss_p, loss_u, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grad_p), jax.tree.leaves(grad_u)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_without_segment_ids_packing_would_leak_across_examples():
  # The check above can fail: letting rows attend across examples changes the loss.
  pairs = _pairs(seed=1)
  params = init(CFG, jax.random.key(0))
  packed = pack(pairs, 40)
  leaky = dict(packed, segment_ids=np.where(packed["segment_ids"] > 0, 1, 0).astype(np.int32))
  assert abs(float(_loss_and_grad(params, packed)[0]) - float(_loss_and_grad(params, leaky)[0])) > 1e-3


def test_loss_mask_covers_completion_tokens_only():
  batch = pack([([5, 6, 7], [8, 9, 2])], 8)
  # Targets of positions 2..4 are the completion tokens 8, 9 and EOS 2.
  assert batch["loss_mask"][0].tolist() == [False, False, True, True, True, False, False, False]
  assert batch["targets"][0, 2:5].tolist() == [8, 9, 2]
