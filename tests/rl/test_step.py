"""The jitted train step: sharded = single device, micro-batched = one batch, metrics, donation,
and a tiny MoE (router bias moved only by the balance rule)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from r1jax import models
from r1jax.config import ConfigError
from r1jax.mesh import MeshConfig, make_mesh, tree_shardings
from r1jax.models.moe import balance_bias_update
from r1jax.rl.advantages import group_advantages
from r1jax.rl.batch import LearnerBatch
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rl.logprobs import completion_stats
from r1jax.rl.step import init_train_state, make_train_step

CFG = models.ModelConfig(vocab_size=64, dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
                         head_dim=8, ffn_dim=64)
MOE_CFG = dataclasses.replace(CFG, moe=models.MoEConfig(num_experts=4, top_k=2, expert_ffn_dim=16,
                                                        bias_update_rate=0.05))
# A large Adam eps keeps the first update ~ lr * g instead of lr * sign(g), whose value on
# near-zero gradient entries would turn float rounding into visible parameter differences.
OPTIM = OptimConfig(lr=0.1, eps=1e-2, weight_decay=0.1, grad_clip=1.0)
# token-mean with truncation masking: the aggregation where a per-micro-batch denominator is
# most visibly wrong, since the micro-batches below hold different numbers of loss tokens.
GRPO = GRPOConfig(num_generations=4, aggregation="token-mean", eps_high=0.28, kl_coef=0.05,
                  entropy_coef=0.01, mask_truncated=True)
BP, G, P, T = 4, 4, 6, 5


def _batch(seed=0, sampler=False):
  """The test minibatch; with `sampler`, sampler log-probs beside pi_old (the recompute)."""
  rng = np.random.default_rng(seed)
  n = BP * G
  prompt_lengths = np.array([6, 2, 4, 5])
  prompt_mask = np.arange(P)[None] >= (P - prompt_lengths)[:, None]
  prompt_tokens = np.where(prompt_mask, rng.integers(1, 64, (BP, P)), 0).astype(np.int32)
  lengths = rng.integers(1, T + 1, n)
  lengths[:G] = 1                                     # prompt 0's outputs are short
  completion_mask = np.arange(T)[None] < lengths[:, None]
  rewards = rng.integers(0, 2, n).astype(np.float32)
  old = (np.log(1 / 64) + rng.normal(0, 0.3, (n, T))).astype(np.float32)
  return LearnerBatch(
      prompt_tokens=prompt_tokens, prompt_mask=prompt_mask,
      completion_tokens=rng.integers(1, 64, (n, T)).astype(np.int32),
      completion_mask=completion_mask,
      old_logprobs=old,
      ref_logprobs=(np.log(1 / 64) + rng.normal(0, 0.3, (n, T))).astype(np.float32),
      advantages=np.asarray(group_advantages(rewards, G)), truncated=lengths == T,
      sampler_logprobs=(old + rng.normal(0, 0.3, (n, T))).astype(np.float32) if sampler else None)


def _mesh(ici):
  return make_mesh(MeshConfig(ici=ici), devices=jax.devices()[:int(np.prod(ici))])


SINGLE = (1, 1, 1, 1)
SHARDED = (2, 2, 1, 2)


@pytest.fixture(scope="module")
def single():
  """The single-device step and its result on the test batch, shared by the comparisons."""
  mesh = _mesh(SINGLE)
  step = make_train_step(CFG, GRPO, OPTIM, mesh)
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  params0 = jax.tree.map(np.asarray, state.params)
  new_state, metrics = step(state, _batch())
  return step, mesh, params0, new_state, metrics


def _assert_trees_close(a, b, **tol):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path),
                               **tol)


def _assert_same_update(state, want_state, params0):
  """The parameter updates agree to 1e-4 of the largest update of each leaf."""
  for (path, new), want, old in zip(jax.tree_util.tree_leaves_with_path(state.params),
                                    jax.tree.leaves(want_state.params), jax.tree.leaves(params0)):
    delta, want_delta = np.asarray(new) - old, np.asarray(want) - old
    np.testing.assert_allclose(delta, want_delta, rtol=1e-3, atol=1e-4 * np.abs(want_delta).max(),
                               err_msg=jax.tree_util.keystr(path))


def test_step_updates_params_and_donates_state(single):
  step, mesh, params0, state, metrics = single
  assert int(state.step) == 1
  moved = [float(np.abs(np.asarray(a) - b).max()) for a, b in
           zip(jax.tree.leaves(state.params), jax.tree.leaves(params0))]
  assert min(moved) > 0
  fresh = init_train_state(CFG, OPTIM, jax.random.key(1), mesh)
  step(fresh, _batch(seed=5))
  assert fresh.params["embed"].is_deleted()


def test_sharded_step_matches_single_device(single):
  _, _, params0, want_state, want_metrics = single
  mesh = _mesh(SHARDED)
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  expected = tree_shardings(models.param_axes(CFG), state.params, mesh)
  # Weights and their Adam moments split over every device, the data axis included.
  assert state.params["embed"].sharding.spec == expected["embed"].spec == PartitionSpec(
      "tensor", ("fsdp", "data"))
  mu = state.opt_state[1].inner_states["train"].inner_state[0].mu
  assert mu["dense"]["mlp"]["up"].sharding == state.params["dense"]["mlp"]["up"].sharding
  state, metrics = make_train_step(CFG, GRPO, OPTIM, mesh)(state, _batch())
  assert state.params["lm_head"].sharding.spec == expected["lm_head"].spec
  _assert_same_update(state, want_state, params0)
  _assert_trees_close(metrics, want_metrics, atol=1e-6, rtol=1e-5)


def test_state_from_host_params_is_born_sharded_like_a_fresh_one():
  mesh = _mesh(SHARDED)
  fresh = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  host = jax.tree.map(np.asarray, fresh.params)
  state = init_train_state(CFG, OPTIM, host, mesh)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(fresh)):
    assert a.sharding == b.sharding, jax.tree_util.keystr(path)
  _assert_trees_close(state.params, host, rtol=0, atol=0)
  assert int(state.step) == 0


def test_micro_batches_match_one_batch(single):
  _, mesh, params0, want_state, want_metrics = single
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  step = make_train_step(CFG, dataclasses.replace(GRPO, micro_batches=2), OPTIM, mesh)
  state, metrics = step(state, _batch())
  _assert_same_update(state, want_state, params0)
  _assert_trees_close(metrics, want_metrics, atol=1e-6, rtol=1e-5)


def test_metrics_match_numpy(single):
  _, _, params0, _, m = single
  b = _batch()
  logp, entropy, _ = jax.jit(completion_stats, static_argnums=0)(
      CFG, params0, b.prompt_tokens, b.prompt_mask, b.completion_tokens)
  logp, entropy = np.asarray(logp, np.float64), np.asarray(entropy, np.float64)
  mask = b.completion_mask & ~b.truncated[:, None]
  adv = np.broadcast_to(b.advantages[:, None], mask.shape)
  rho = np.exp(logp - b.old_logprobs)
  r_old, r_ref = b.old_logprobs - logp, b.ref_logprobs - logp
  k3 = lambda r: np.exp(r) - r - 1
  lengths = b.completion_mask.sum(1)
  want = {
      "clip_frac/low": ((adv < 0) & (rho < 0.8))[mask].mean(),
      "clip_frac/high": ((adv > 0) & (rho > 1.28))[mask].mean(),
      "approx_kl/old": k3(r_old)[mask].mean(), "approx_kl/ref": k3(r_ref)[mask].mean(),
      "entropy": entropy[mask].mean(), "loss/kl": k3(r_ref)[mask].mean(),
      "advantage/mean": b.advantages.mean(), "advantage/std": b.advantages.std(),
      "advantage/min": b.advantages.min(), "advantage/max": b.advantages.max(),
      "response_length/mean": lengths.mean(), "response_length/max": lengths.max(),
      "response_length/truncated_frac": b.truncated.mean(), "lr": OPTIM.lr,
  }
  for key, value in want.items():
    np.testing.assert_allclose(float(m[key]), value, rtol=1e-4, atol=1e-6, err_msg=key)
  assert float(m["clip_frac/low"]) > 0 and float(m["clip_frac/high"]) > 0
  pg = -np.minimum(rho * adv, np.clip(rho, 0.8, 1.28) * adv)[mask].mean()
  np.testing.assert_allclose(float(m["loss/policy"]), pg, rtol=1e-4)
  np.testing.assert_allclose(float(m["loss"]), pg + 0.05 * want["loss/kl"] - 0.01 * want["entropy"],
                             rtol=1e-4)
  assert 0 < float(m["grad_norm"]) < np.inf


def test_moe_router_bias_moves_only_by_the_balance_rule():
  mesh = _mesh(SINGLE)
  state = init_train_state(MOE_CFG, OPTIM, jax.random.key(0), mesh)
  bias0 = jax.random.normal(jax.random.key(3), state.params["moe"]["moe"]["router_bias"].shape)
  state.params["moe"]["moe"]["router_bias"] = bias0        # nonzero, so weight decay would show
  params0 = jax.tree.map(np.asarray, state.params)
  b = _batch()
  _, _, aux = jax.jit(completion_stats, static_argnums=0)(
      MOE_CFG, params0, b.prompt_tokens, b.prompt_mask, b.completion_tokens)
  step = make_train_step(MOE_CFG, dataclasses.replace(GRPO, micro_batches=2), OPTIM, mesh)
  state, metrics = step(state, b)
  want = balance_bias_update(params0["moe"]["moe"]["router_bias"], aux["expert_load"], 0.05)
  np.testing.assert_allclose(state.params["moe"]["moe"]["router_bias"], want, rtol=0, atol=1e-7)
  assert float(jnp.abs(want - params0["moe"]["moe"]["router_bias"]).min()) > 0
  router_moved = np.abs(np.asarray(state.params["moe"]["moe"]["router"]) - params0["moe"]["moe"]["router"])
  assert router_moved.max() > 0
  assert np.isfinite(float(metrics["moe/aux_loss"])) and np.isfinite(float(metrics["loss"]))


def test_batch_that_is_not_whole_groups_is_rejected(single):
  step, mesh, _, _, _ = single
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  bad = make_train_step(CFG, dataclasses.replace(GRPO, micro_batches=3), OPTIM, mesh)
  with pytest.raises(ConfigError, match="micro_batches.*must divide the minibatch's 4 groups"):
    bad(state, _batch())
  wrong_g = make_train_step(CFG, dataclasses.replace(GRPO, num_generations=8), OPTIM, mesh)
  with pytest.raises(ConfigError, match="num_generations.*16 outputs for 4 prompts"):
    wrong_g(state, _batch())


def test_every_device_holds_a_distinct_shard_of_the_weights_and_moments():
  mesh = _mesh(SHARDED)
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  mu = state.opt_state[1].inner_states["train"].inner_state[0].mu
  for leaf in (state.params["embed"], state.params["dense"]["mlp"]["up"], mu["dense"]["mlp"]["up"]):
    shard = leaf.sharding.shard_shape(leaf.shape)
    assert np.prod(shard) * mesh.size == np.prod(leaf.shape), (leaf.shape, shard)
    assert leaf.dtype == jnp.float32


def test_small_bf16_update_changes_the_float32_master_weights():
  """lr 3e-6 (the paper's) with bfloat16 compute: every weight matrix moves in its float32
  master copy, by steps a bfloat16 weight could not hold (they round away)."""
  cfg = dataclasses.replace(CFG, compute_dtype="bfloat16")
  optim = OptimConfig(lr=3e-6, weight_decay=0.0)
  mesh = _mesh(SINGLE)
  state = init_train_state(cfg, optim, jax.random.key(0), mesh)
  params0 = jax.tree.map(np.asarray, state.params)
  state, metrics = make_train_step(cfg, GRPO, optim, mesh)(state, _batch())
  assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
  rounded_away = []
  for (path, new), old in zip(jax.tree_util.tree_leaves_with_path(state.params),
                              jax.tree.leaves(params0)):
    new = np.asarray(new)
    assert new.dtype == np.float32
    # (embedding rows of tokens absent from the batch get no gradient)
    need = 0.2 if jax.tree_util.keystr(path) == "['embed']" else 0.5
    assert (new != old).mean() > need, jax.tree_util.keystr(path)
    if old.ndim >= 2 and np.abs(old).min() > 0:
      bf16 = lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32))
      rounded_away.append((bf16(new) == bf16(old)).mean())
  assert min(rounded_away) > 0.8       # in bfloat16 most of these steps are lost


def test_long_sequence_paths_sharded_match_the_single_device_step(single, monkeypatch):
  """With the tiles, vocabulary chunks and feed-forward pieces made tiny, the step on 8 devices
  takes every long-sequence path (blockwise attention over the prompt cache and the shared
  prefix, per-device chunked log-probs, the feed-forward in pieces on each device's own rows)
  and still equals the single-device step on the short paths."""
  from r1jax.models import layers
  from r1jax.rl import logprobs
  _, _, params0, want_state, want_metrics = single
  monkeypatch.setattr(layers, "BLOCK", 2)
  monkeypatch.setattr(layers, "MLP_CHUNK", 2)
  monkeypatch.setattr(logprobs, "CHUNK", 2)
  mesh = _mesh((4, 2, 1, 1))
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  state, metrics = make_train_step(CFG, GRPO, OPTIM, mesh)(state, _batch())
  _assert_same_update(state, want_state, params0)
  _assert_trees_close(metrics, want_metrics, atol=1e-6, rtol=1e-5)


# The learner options beyond GRPO, through the step users run: each against the NumPy
# restatement of tests/rl/test_losses.py, and sharded over 8 devices with micro-batches against
# the single-device step.
OPTION_VARIANTS = {
    "gspo-tis-seq-sum": dict(policy_loss="gspo", eps_low=0.01, eps_high=0.02,
                             recompute_old_logprobs=True, is_correction="tis", is_cap=1.1,
                             aggregation="seq-mean-token-sum"),
    "cispo-mis": dict(policy_loss="cispo", recompute_old_logprobs=True, is_correction="mis",
                      is_cap=1.1, aggregation="token-mean", mask_truncated=False),
}


@pytest.mark.parametrize("variant", OPTION_VARIANTS)
def test_learner_options_match_numpy_sharded_and_micro_batched(variant):
  from tests.rl.test_losses import numpy_is_weights, numpy_loss
  cfg = dataclasses.replace(GRPO, **OPTION_VARIANTS[variant])
  b = _batch(sampler=True)
  single_mesh = _mesh(SINGLE)
  state = init_train_state(CFG, OPTIM, jax.random.key(0), single_mesh)
  params0 = jax.tree.map(np.asarray, state.params)
  want_state, m = make_train_step(CFG, cfg, OPTIM, single_mesh)(state, b)
  logp, entropy, _ = jax.jit(completion_stats, static_argnums=0)(
      CFG, params0, b.prompt_tokens, b.prompt_mask, b.completion_tokens)
  mask = b.completion_mask & ~(b.truncated[:, None] & cfg.mask_truncated)
  is_w = numpy_is_weights(cfg, b.old_logprobs, b.sampler_logprobs)
  loss, _, _ = numpy_loss(cfg, np.asarray(logp), b.old_logprobs, b.ref_logprobs, b.advantages,
                          mask, np.asarray(entropy), is_w)
  np.testing.assert_allclose(float(m["loss"]), loss, rtol=1e-4, atol=1e-6)
  log_ratio = (b.old_logprobs - b.sampler_logprobs).astype(np.float64)[mask]
  want = {"mismatch/kl": np.mean(np.exp(log_ratio) - log_ratio - 1),
          "mismatch/max_abs_log_ratio": np.abs(log_ratio).max(),
          "is/weight_mean": is_w[mask].mean(),
          "is/above_cap_frac": np.mean(log_ratio > np.log(1.1))}
  for key, value in want.items():
    np.testing.assert_allclose(float(m[key]), value, rtol=1e-4, atol=1e-6, err_msg=key)
  assert 0 < want["is/above_cap_frac"] < 1
  assert float(m["clip_frac/low"]) + float(m["clip_frac/high"]) > 0
  mesh = _mesh(SHARDED)
  state = init_train_state(CFG, OPTIM, jax.random.key(0), mesh)
  state, metrics = make_train_step(CFG, dataclasses.replace(cfg, micro_batches=2), OPTIM, mesh)(
      state, b)
  _assert_same_update(state, want_state, params0)
  _assert_trees_close(metrics, m, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sampler", [False, True])
def test_abstract_batch_has_the_fields_and_shapes_of_a_real_one(sampler):
  real = _batch(sampler=sampler)
  abstract = LearnerBatch.abstract(BP, G, P, T, sampler_logprobs=sampler)
  assert {k: (np.shape(v), np.dtype(v.dtype)) for k, v in abstract.fields().items()} == {
      k: (np.shape(v), np.asarray(v).dtype) for k, v in real.fields().items()}
