"""The GRPO loss against an independent NumPy restatement: values and gradients w.r.t. the
policy log-probs (and entropies), for every aggregation mode, KL estimator and clip variant, and
every policy loss (GRPO, GSPO, CISPO) under every importance-sampling correction (none, TIS, MIS);
plus the invariants (rho = 1, policy = reference) and the train step's exact micro-batch
accumulation."""

import dataclasses
import itertools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl.batch import LearnerBatch
from r1jax.rl.config import AGGREGATIONS, IS_CORRECTIONS, KL_ESTIMATORS, POLICY_LOSSES, GRPOConfig
from r1jax.rl.corrections import importance_weights
from r1jax.rl.losses import denominator, grpo_loss, kl_estimate, loss_mask, policy_loss
from r1jax.rl.step import minibatch_gradients

CLIPS = {  # name -> (eps_low, eps_high, dual_clip)
    "ppo": (0.2, 0.2, None),
    "clip-higher": (0.2, 0.28, None),
    "dual": (0.2, 0.2, 1.5),
    "r1-stage1": (10.0, 10.0, None),
}
MAX_LEN = 9


def _cfg(aggregation="seq-mean-token-mean", estimator="k3", clip="ppo", **kw):
  low, high, dual = CLIPS[clip]
  kw.setdefault("kl_coef", 0.3)
  return GRPOConfig(num_generations=4, aggregation=aggregation, kl_estimator=estimator,
                    eps_low=low, eps_high=high, dual_clip=dual, max_length=MAX_LEN, **kw)


def _inputs(seed=0, n=8, t=7, spread=0.6):
  rng = np.random.default_rng(seed)
  old = rng.uniform(-3.0, -0.1, (n, t)).astype(np.float32)
  logp = (old + rng.normal(0, spread, (n, t))).astype(np.float32)
  ref = (old + rng.normal(0, 0.5, (n, t))).astype(np.float32)
  sampler = (old + rng.normal(0, 0.4, (n, t))).astype(np.float32)
  adv = rng.normal(0, 1.0, n).astype(np.float32)
  lengths = rng.integers(1, t + 1, n)
  lengths[2] = 0                                      # an output with no loss tokens
  mask = np.arange(t)[None] < lengths[:, None]
  entropy = rng.uniform(0.1, 2.0, (n, t)).astype(np.float32)
  truncated = rng.random(n) < 0.3
  # Padding positions hold garbage the loss must ignore.
  logp[~mask], old[~mask], ref[~mask], sampler[~mask] = 50.0, -80.0, np.nan, np.nan
  return dict(logp=logp, old=old, ref=ref, adv=adv, mask=mask, entropy=entropy, truncated=truncated,
              sampler=sampler)


def numpy_is_weights(cfg: GRPOConfig, old, sampler):
  """w = pi_old / pi_sampler per token, truncated at the cap (TIS) or zeroed beyond it (MIS)."""
  c = cfg.log_ratio_clamp
  w = np.exp(np.clip(np.nan_to_num(old.astype(np.float64) - sampler), -c, c))
  if cfg.is_correction == "tis":
    return np.minimum(w, cfg.is_cap)
  if cfg.is_correction == "mis":
    return np.where(w <= cfg.is_cap, w, 0.0)
  return np.ones_like(w)


def numpy_mask(cfg: GRPOConfig, mask, truncated):
  """The tokens that carry loss, restated: with mask_truncated, no token of a no-EOS output."""
  return mask & ~truncated[:, None] if cfg.mask_truncated else mask


def numpy_loss(cfg: GRPOConfig, logp, old, ref, adv, mask, entropy, is_w=None):
  """Loss and its gradients w.r.t. logp and entropy, restated row by row in float64; `is_w`
  [N, T] weights each token's policy term."""
  n, t = logp.shape
  is_w = np.ones((n, t)) if is_w is None else is_w
  lengths = mask.sum(1)
  if cfg.aggregation == "token-mean":
    denom, weight = mask.sum(), np.ones(n)
  elif cfg.aggregation == "seq-mean-token-sum":
    denom, weight = (lengths > 0).sum(), np.ones(n)
  elif cfg.aggregation == "seq-mean-token-mean":
    denom, weight = (lengths > 0).sum(), 1.0 / np.maximum(lengths, 1)
  else:
    denom, weight = (lengths > 0).sum(), np.full(n, 1.0 / cfg.max_length)
  loss, g_logp, g_ent = 0.0, np.zeros((n, t)), np.zeros((n, t))
  c = cfg.log_ratio_clamp
  lo, hi = 1 - cfg.eps_low, 1 + cfg.eps_high

  def clipped_surrogate(a, log_ratio):
    """(-min(rho A, clip(rho) A), its derivative in log_ratio), dual-clipped."""
    rho = np.exp(np.clip(log_ratio, -c, c))
    d_rho = rho if abs(log_ratio) < c else 0.0
    pg = -min(rho * a, np.clip(rho, lo, hi) * a)
    # Unclipped branch chosen (ties included) -> -A d rho; clipped and outside -> 0.
    d_pg = -a * d_rho if rho * a <= np.clip(rho, lo, hi) * a or lo < rho < hi else 0.0
    if cfg.dual_clip is not None and a < 0 and pg > -cfg.dual_clip * a:
      pg, d_pg = -cfg.dual_clip * a, 0.0
    return pg, d_pg

  for i in range(n):
    a = float(adv[i])
    if cfg.policy_loss == "gspo" and lengths[i]:
      # One ratio per output: exp of its tokens' mean log-ratio; every token carries its loss.
      seq = np.mean([float(logp[i, j]) - float(old[i, j]) for j in range(t) if mask[i, j]])
      seq_pg, d_seq = clipped_surrogate(a, seq)
      w_sum = sum(is_w[i, j] for j in range(t) if mask[i, j])
    for j in range(t):
      if not mask[i, j]:
        continue
      x, x_old, x_ref = float(logp[i, j]), float(old[i, j]), float(ref[i, j])
      if cfg.policy_loss == "gspo":
        # d/dx_ij of sum_k w_ik * loss(s_i), with d s_i / d x_ij through the mean: 1 / |o_i|.
        pg, d_pg = is_w[i, j] * seq_pg, w_sum * d_seq / lengths[i]
      elif cfg.policy_loss == "cispo":
        rho = np.exp(np.clip(x - x_old, -c, c))
        # -sg(clip(rho)) A log pi: the gradient is never cut, beyond the clamp either.
        pg = d_pg = -is_w[i, j] * np.clip(rho, lo, hi) * a
      else:
        pg, d_pg = (is_w[i, j] * v for v in clipped_surrogate(a, x - x_old))
      r = np.clip(x_ref - x, -c, c)         # log(pi_ref / pi), clamped like the ratio
      inside = abs(x_ref - x) < c
      kl, d_kl = {"k1": (-r, 1.0), "k2": (0.5 * r * r, -r),
                  "k3": (np.exp(r) - r - 1.0, 1.0 - np.exp(r))}[cfg.kl_estimator]
      d_kl = d_kl if inside else 0.0
      ent = float(entropy[i, j])
      loss += weight[i] * (pg + cfg.kl_coef * kl - cfg.entropy_coef * ent)
      g_logp[i, j] = weight[i] * (d_pg + cfg.kl_coef * d_kl)
      g_ent[i, j] = -weight[i] * cfg.entropy_coef
  denom = max(denom, 1)
  return loss / denom, g_logp / denom, g_ent / denom


def jax_loss(cfg, logp, old, ref, adv, mask, entropy, sampler=None):
  is_weights = None if sampler is None else importance_weights(
      old, sampler, cfg.is_correction, cfg.is_cap, cfg.log_ratio_clamp)
  terms, denom = grpo_loss(cfg, logp, old, ref, adv, mask, entropy, is_weights)
  return terms.loss / jnp.maximum(denom, 1.0)


def _check_against_numpy(cfg, x):
  mask = np.asarray(loss_mask(cfg, x["mask"], x["truncated"]))
  sampler = x["sampler"] if cfg.recompute_old_logprobs else None
  loss, (g_logp, g_ent) = jax.value_and_grad(jax_loss, argnums=(1, 6))(
      cfg, x["logp"], x["old"], x["ref"], x["adv"], mask, x["entropy"], sampler)
  is_w = None if sampler is None else numpy_is_weights(cfg, x["old"], sampler)
  want, want_logp, want_ent = numpy_loss(cfg, x["logp"], x["old"], x["ref"], x["adv"],
                                         numpy_mask(cfg, x["mask"], x["truncated"]), x["entropy"],
                                         is_w)
  np.testing.assert_allclose(loss, want, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(g_logp, want_logp, rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(g_ent, want_ent, rtol=1e-5, atol=1e-7)
  assert np.all(np.isfinite(g_logp))


@pytest.mark.parametrize("aggregation, estimator, clip",
                         list(itertools.product(AGGREGATIONS, KL_ESTIMATORS, CLIPS)))
def test_loss_and_gradient_match_numpy(aggregation, estimator, clip):
  cfg = _cfg(aggregation, estimator, clip)
  x = _inputs(seed=zlib.crc32(f"{aggregation}/{estimator}/{clip}".encode()) % 1000)
  _check_against_numpy(cfg, x)


def _loss_cfg(policy, aggregation="seq-mean-token-mean", correction="none", clip="clip-higher",
              **kw):
  """A config of `policy` loss under an IS `correction` (cap 1.2, which the inputs straddle)."""
  return _cfg(aggregation, clip=clip, policy_loss=policy, is_correction=correction,
              recompute_old_logprobs=correction != "none", is_cap=1.2, **kw)


@pytest.mark.parametrize("policy, aggregation, correction",
                         list(itertools.product(POLICY_LOSSES, AGGREGATIONS, IS_CORRECTIONS)))
def test_policy_losses_and_is_corrections_match_numpy(policy, aggregation, correction):
  cfg = _loss_cfg(policy, aggregation, correction)
  _check_against_numpy(cfg, _inputs(seed=zlib.crc32(f"{policy}/{aggregation}".encode()) % 1000))


@pytest.mark.parametrize("policy", ["gspo", "cispo"])
def test_gspo_and_cispo_clip_both_sides_and_beyond_the_clamp(policy):
  # Guards the test above: its inputs clip the sequence ratio (GSPO) and the token weight
  # (CISPO) on both sides, the IS weights straddle the cap, and a dual clip and the log-ratio
  # clamp (CISPO's gradient must survive it) are exercised too.
  x = _inputs(seed=4, n=64, spread=1.0)
  kw = {"clip": "dual"} if policy == "gspo" else {"log_ratio_clamp": 1.0}
  cfg = _loss_cfg(policy, "token-mean", "mis", **kw)
  m = x["mask"]
  terms = policy_loss(jnp.asarray(x["logp"]), jnp.asarray(x["old"]), jnp.asarray(x["adv"]), cfg, m)
  assert terms.clipped_low[m].any() and terms.clipped_high[m].any()
  assert terms.clipped_dual[m].any() == (policy == "gspo")
  w = numpy_is_weights(cfg, x["old"], x["sampler"])[m]
  assert (w == 0).any() and ((w > 0) & (w < 1)).any()
  _check_against_numpy(cfg, x)
  if policy == "cispo":
    assert (np.abs(x["logp"] - x["old"])[m] > 1.0).any()


def test_gspo_ratio_is_the_length_normalised_sequence_ratio():
  x = _inputs(seed=9)
  m = x["mask"]
  terms = policy_loss(jnp.asarray(x["logp"]), jnp.asarray(x["old"]), jnp.asarray(x["adv"]),
                      _loss_cfg("gspo"), m)
  for i in np.flatnonzero(m.any(1)):
    want = np.exp(np.mean((x["logp"] - x["old"])[i][m[i]].astype(np.float64)))
    np.testing.assert_allclose(np.asarray(terms.ratio)[i][m[i]], want, rtol=1e-5)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_entropy_bonus_and_truncation_mask_match_numpy(aggregation):
  cfg = _cfg(aggregation, entropy_coef=0.05, mask_truncated=True, clip="dual")
  _check_against_numpy(cfg, _inputs(seed=7))


@pytest.mark.parametrize("clip", ["dual", "ppo"])
def test_clips_and_both_sides_of_the_log_ratio_clamp_are_exercised(clip):
  # Guards the test above: its inputs exercise both clips, the dual clip, and the log-ratio
  # clamp on both sides, also where it decides the loss: A < 0 with rho above the clamp and no
  # dual clip (the dual clip would cap that loss whatever rho is).
  x = _inputs(seed=3, n=64, spread=1.0)
  cfg = _cfg(clip=clip, log_ratio_clamp=1.0)
  terms = policy_loss(jnp.asarray(x["logp"]), jnp.asarray(x["old"]), jnp.asarray(x["adv"]), cfg)
  m = x["mask"]
  assert terms.clipped_low[m].any() and terms.clipped_high[m].any()
  assert terms.clipped_dual[m].any() == (clip == "dual")
  for other in (x["old"], x["ref"]):
    diff = (x["logp"] - other)[m]
    assert (diff > 1.0).any() and (diff < -1.0).any()
  above = (x["logp"] - x["old"] > 1.0) & (x["adv"][:, None] < 0) & m
  assert above.any()
  _check_against_numpy(cfg, x)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_ratio_one_gives_reinforce_with_baseline_and_no_clipping(aggregation):
  x = _inputs(seed=11)
  # eps = 0: even the tightest clip leaves rho = 1 unclipped.
  cfg = dataclasses.replace(_cfg(aggregation, kl_coef=0.0), eps_low=0.0, eps_high=0.0)
  mask = x["mask"]
  old = np.where(mask, x["logp"], 0.0)
  terms, denom = grpo_loss(cfg, jnp.asarray(old), old, x["ref"], x["adv"], mask)
  assert float(terms.token_clip_low) == float(terms.token_clip_high) == 0.0
  grad = jax.grad(lambda lp: jax_loss(cfg, lp, old, x["ref"], x["adv"], mask, None))(old)
  # REINFORCE with baseline: d/dlogp of -(sum_i w_i A_i sum_t logp_it) / D.
  reinforce = jax.grad(lambda lp: -jnp.sum(
      jnp.asarray(_weights(aggregation, mask)) * x["adv"][:, None] * lp) / denom)(old)
  np.testing.assert_allclose(grad, reinforce, rtol=1e-6, atol=1e-8)
  assert np.abs(grad).max() > 0


def _weights(aggregation, mask):
  lengths = mask.sum(1, keepdims=True)
  return {"token-mean": mask * 1.0, "seq-mean-token-mean": mask / np.maximum(lengths, 1),
          "seq-mean-token-sum": mask * 1.0, "seq-mean-token-sum-norm": mask / MAX_LEN}[aggregation]


@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
def test_policy_equal_to_reference_has_zero_kl(estimator):
  x = _inputs(seed=5)
  logp = jnp.asarray(np.where(x["mask"], x["logp"], -1.0))
  assert float(jnp.max(jnp.abs(kl_estimate(logp, logp, estimator)))) == 0.0
  cfg = _cfg(estimator=estimator, kl_coef=1.0)
  zero_adv = np.zeros_like(x["adv"])
  loss, grad = jax.value_and_grad(
      lambda lp: jax_loss(cfg, lp, x["old"], logp, zero_adv, x["mask"], None))(logp)
  assert float(loss) == 0.0
  if estimator == "k1":
    # k1 = log(pi/pi_ref) has per-sample gradient d logp (zero only in expectation).
    assert np.abs(grad).max() > 0
  else:
    assert float(jnp.max(jnp.abs(grad))) == 0.0


def test_k3_is_nonnegative_and_unbiased_for_kl():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(6)); q = rng.dirichlet(np.ones(6))
  samples = rng.choice(6, size=400_000, p=p)
  k3 = kl_estimate(jnp.log(p[samples]), jnp.log(q[samples]), "k3")
  assert float(jnp.min(k3)) >= 0.0
  np.testing.assert_allclose(float(jnp.mean(k3)), np.sum(p * np.log(p / q)), rtol=0.02)


LOSS_VARIANTS = {  # name -> (policy_loss, is_correction, clip)
    "grpo": ("grpo", "none", "dual"),
    "gspo-tis": ("gspo", "tis", "dual"),
    "cispo-mis": ("cispo", "mis", "clip-higher"),
}


@pytest.mark.parametrize("aggregation, variant",
                         list(itertools.product(AGGREGATIONS, LOSS_VARIANTS)))
def test_train_step_micro_batches_accumulate_to_the_minibatch_loss(aggregation, variant):
  # The step's own accumulation (`minibatch_gradients`) with a "model" whose parameters are the
  # log-probs themselves, so its gradient can be held against the NumPy minibatch loss. Outputs
  # differ in length and truncation, so each micro-batch has its own denominator; the IS weights
  # come from the batch's sampler log-probs, as in the train step.
  policy, correction, clip = LOSS_VARIANTS[variant]
  cfg = _loss_cfg(policy, aggregation, correction, clip=clip, entropy_coef=0.01,
                  mask_truncated=True, micro_batches=4)
  x = _inputs(seed=21, n=16)
  sampler = x["sampler"] if cfg.recompute_old_logprobs else None
  n, t = x["logp"].shape
  rows = np.arange(n)
  batch = LearnerBatch(prompt_tokens=np.zeros((n // 4, 1), np.int32),
                       prompt_mask=np.ones((n // 4, 1), bool),
                       completion_tokens=np.repeat(rows[:, None], t, 1).astype(np.int32),
                       completion_mask=x["mask"], old_logprobs=x["old"], ref_logprobs=x["ref"],
                       truncated=x["truncated"], advantages=x["adv"], sampler_logprobs=sampler)
  entropy = jnp.asarray(x["entropy"])

  def stats(logp, micro):   # the rows of one micro-batch, named by their completion tokens
    row = micro.completion_tokens[:, 0]
    return logp[row], entropy[row], {"aux_loss": jnp.zeros(()), "expert_load": None}

  acc = jax.jit(lambda lp: minibatch_gradients(cfg, stats, lp, batch))(jnp.asarray(x["logp"]))
  is_w = None if sampler is None else numpy_is_weights(cfg, x["old"], sampler)
  want, want_logp, _ = numpy_loss(cfg, x["logp"], x["old"], x["ref"], x["adv"],
                                  numpy_mask(cfg, x["mask"], x["truncated"]), x["entropy"], is_w)
  np.testing.assert_allclose(acc.terms.loss / acc.denominator, want, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(acc.grads, want_logp, rtol=2e-4, atol=1e-6)
  groups = [slice(4 * p, 4 * p + 4) for p in range(4)]   # one group per micro-batch
  assert len({float(denominator(numpy_mask(cfg, x["mask"][g], x["truncated"][g]), aggregation))
              for g in groups}) > 1
