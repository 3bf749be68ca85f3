"""Routing replay in the learner: the batch carries the sampler's experts row by row, the learner
forward routes every fed completion token to exactly those experts, and the step's
`moe/replay_mismatch` counts the decisions its router would change over the fed tokens only."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.mesh import MeshConfig, make_mesh
from r1jax.models import forward, init, prefill
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rl.logprobs import completion_stats
from r1jax.rl.minibatch import minibatches
from r1jax.rl.step import init_train_state, make_train_step
from tests.models.test_mla import V3

CFG = dataclasses.replace(V3, moe=dataclasses.replace(V3.moe, routing_replay=True))
BP, G, P, T = 2, 2, 5, 6
E, K, L = CFG.moe.num_experts, CFG.moe.top_k, CFG.num_moe_layers


def _routes(seed, n=BP * G):
  """Random replayed routes [L, n, T, K]: K distinct experts per token."""
  rng = np.random.default_rng(seed)
  return np.argsort(rng.random((L, n, T, E)), -1)[..., :K].astype(np.uint8)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  n = BP * G
  lengths = np.array([T, 3, 1, 4])
  mask = np.arange(T)[None] < lengths[:, None]
  logp = np.where(mask, -np.log(CFG.vocab_size), 0).astype(np.float32)
  return LearnerBatch(
      prompt_tokens=rng.integers(1, CFG.vocab_size, (BP, P)).astype(np.int32),
      prompt_mask=np.ones((BP, P), bool),
      completion_tokens=rng.integers(1, CFG.vocab_size, (n, T)).astype(np.int32),
      completion_mask=mask, old_logprobs=logp, ref_logprobs=logp,
      truncated=np.zeros(n, bool), advantages=np.array([1, -1, 1, -1], np.float32),
      expert_ids=np.moveaxis(_routes(seed), 1, 0))


def test_learner_forward_routes_each_fed_token_to_the_replayed_experts():
  params = init(CFG, jax.random.key(0), init_std=0.3)
  b = _batch()
  routes = np.moveaxis(b.expert_ids, 0, 1)            # [L, N, T, K], as the sampler records
  logp, _, aux = completion_stats(CFG, params, b.prompt_tokens, b.prompt_mask,
                                  b.completion_tokens, expert_ids=routes)
  np.testing.assert_array_equal(aux["expert_ids"], routes[:, :, :-1])
  # The plain teacher-forced forward with the same routes, the whole logits at once.
  last, prefix = prefill(CFG, params, b.prompt_tokens, b.prompt_mask)
  positions = P + jnp.arange(T - 1)[None]
  rest, _, _ = forward(CFG, params, b.completion_tokens[:, :-1],
                       positions=jnp.broadcast_to(positions, (BP * G, T - 1)), prefix=prefix,
                       expert_ids=routes[:, :, :-1])
  logits = jnp.concatenate([jnp.repeat(last, G, axis=0)[:, None], rest], axis=1)
  want = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), b.completion_tokens[..., None],
                             -1)[..., 0]
  np.testing.assert_allclose(logp, want, atol=1e-5)
  fresh, _, _ = completion_stats(CFG, params, b.prompt_tokens, b.prompt_mask, b.completion_tokens)
  assert np.abs(np.asarray(fresh) - np.asarray(logp))[:, 1:].max() > 0.1   # routes were used


def test_minibatches_keep_each_rows_routes():
  b = _batch()
  cfg = GRPOConfig(num_generations=G, num_minibatches=2)
  for mb in minibatches(b, cfg, seed=3):
    for row, tokens in enumerate(mb.completion_tokens):
      src = np.flatnonzero((b.completion_tokens == tokens).all(1))[0]
      np.testing.assert_array_equal(mb.expert_ids[row], b.expert_ids[src])


@pytest.mark.parametrize("ici", [(1, 1, 1, 1), (1, 2, 2, 1)])
def test_step_logs_the_share_of_replayed_decisions_its_router_would_change(ici):
  # One MoE layer: its input does not depend on routing, so the fresh forward's routes are the
  # ones the replaying forward's router would pick.
  cfg = dataclasses.replace(CFG, num_layers=2)
  mesh = make_mesh(MeshConfig(ici=ici), jax.devices()[:int(np.prod(ici))])
  optim = OptimConfig(lr=0.0)
  state = init_train_state(cfg, optim, jax.random.key(0), mesh)
  params = jax.device_get(state.params)   # before the step donates the state
  b = _batch()
  b = dataclasses.replace(b, expert_ids=b.expert_ids[:, :1])
  step = make_train_step(cfg, GRPOConfig(num_generations=G, micro_batches=2), optim, mesh)
  _, metrics = step(state, b)
  # Reference: the routes the learner's router picks afresh, against the replayed ones, over the
  # tokens that were fed back in (completion_mask[:, 1:]), in NumPy.
  _, _, aux = completion_stats(cfg, params, b.prompt_tokens, b.prompt_mask, b.completion_tokens)
  fresh, replayed = np.asarray(aux["expert_ids"]), np.moveaxis(b.expert_ids, 0, 1)[:, :, :-1]
  changed = ~(fresh[..., :, None] == replayed[..., None, :]).any(-1)   # [L, N, T-1, K]
  fed = b.completion_mask[:, 1:]
  want = changed.mean(-1).mean(0)[fed].mean()
  assert 0 < want < 1
  np.testing.assert_allclose(float(metrics["moe/replay_mismatch"]), want, rtol=1e-5)
