"""Routing replay: the sampler records each token's experts, the learner's forward reuses them."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import forward, init, prefill
from r1jax.rollout.sampler import sample
from tests.models.test_mla import V3

# A router whose scores nearly tie, so that the sampler's one-token decode (absorbed MLA) and the
# learner's teacher-forced forward (blockwise MLA: same weights, other rounding) can disagree on
# router decisions unless those are replayed.
CFG = dataclasses.replace(V3, moe=dataclasses.replace(V3.moe, routing_replay=True))
# Log-prob agreement expected with replay: float32 rounding, or bfloat16's.
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.15}


def _learner_logprobs(cfg, params, prompts, mask, completions, expert_ids=None):
  """Per-token log-probs the way the learner scores completions (prompt prefilled once)."""
  g = completions.shape[0] // prompts.shape[0]
  last, prefix = prefill(cfg, params, prompts, mask)
  start = jnp.repeat(mask.sum(1), g)
  positions = start[:, None] + jnp.arange(completions.shape[1] - 1)[None]
  rest, _, aux = forward(cfg, params, completions[:, :-1], positions=positions, prefix=prefix,
                         expert_ids=expert_ids)
  logits = jnp.concatenate([jnp.repeat(last, g, axis=0)[:, None], rest], axis=1)
  logp = jax.nn.log_softmax(logits, -1)
  return jnp.take_along_axis(logp, completions[..., None], -1)[..., 0], aux


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_replayed_routes_make_sampler_and_learner_logprobs_agree(dtype):
  cfg = dataclasses.replace(CFG, compute_dtype=dtype)
  params = init(cfg, jax.random.key(0), init_std=0.3)
  params["moe"]["moe"]["router"] = params["moe"]["moe"]["router"] * 0.02
  prompts = jax.random.randint(jax.random.key(1), (2, 6), 0, CFG.vocab_size)
  mask = jnp.ones((2, 6), bool)
  out = sample(cfg, params, prompts, mask, jax.random.key(2), num_samples=3, max_new_tokens=12,
               cache_dtype=dtype)
  assert out.expert_ids.shape == (CFG.num_moe_layers, 6, 12, CFG.moe.top_k)
  valid = np.asarray(out.mask())
  recorded = out.expert_ids[:, :, :-1]
  replayed, aux = _learner_logprobs(cfg, params, prompts, mask, out.tokens, recorded)
  fresh, fresh_aux = _learner_logprobs(cfg, params, prompts, mask, out.tokens)
  err_replay = np.abs(np.asarray(replayed) - np.asarray(out.logprobs))[valid].max()
  err_fresh = np.abs(np.asarray(fresh) - np.asarray(out.logprobs))[valid].max()
  print(f"max |logp diff| with replay {err_replay:.4f}, without {err_fresh:.4f}; router "
        f"decisions that differ without replay: {float(aux['replay_mismatch']):.2%}")
  # The learner uses the recorded experts, which are the ones its own router (nearly always)
  # picks for the same tokens: the record is aligned with the tokens it routed.
  np.testing.assert_array_equal(aux["expert_ids"], recorded)
  fed = valid[:, 1:]   # completion tokens that were fed back in (all but each row's last)
  agree = np.all(np.asarray(fresh_aux["expert_ids"]) == np.asarray(recorded), -1)[:, fed]
  assert agree.mean() > 0.9
  assert float(fresh_aux["replay_mismatch"]) == 0.0
  # Same dtype, same experts: the two log-probs agree to that dtype's rounding; where a
  # decision flips without replay, the log-probs move much further.
  assert err_replay < TOLERANCE[dtype]
  if float(aux["replay_mismatch"]) > 0:
    assert err_fresh > 3 * err_replay
  # Replaying other experts changes the learner's log-probs: the ids do reach every MoE layer.
  other, _ = _learner_logprobs(cfg, params, prompts, mask, out.tokens,
                               (recorded + 1) % CFG.moe.num_experts)
  assert np.abs(np.asarray(other) - np.asarray(replayed))[valid].max() > 0.5
