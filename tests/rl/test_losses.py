"""The GRPO loss against an independent NumPy restatement: values and gradients w.r.t. the
policy log-probs (and entropies), for every aggregation mode, KL estimator and clip variant;
plus the invariants (rho = 1, policy = reference) and exact micro-batch accumulation."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl.config import AGGREGATIONS, KL_ESTIMATORS, GRPOConfig
from r1jax.rl.losses import denominator, grpo_loss, kl_estimate, loss_mask, policy_loss

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
  adv = rng.normal(0, 1.0, n).astype(np.float32)
  lengths = rng.integers(1, t + 1, n)
  lengths[2] = 0                                      # an output with no loss tokens
  mask = np.arange(t)[None] < lengths[:, None]
  entropy = rng.uniform(0.1, 2.0, (n, t)).astype(np.float32)
  truncated = rng.random(n) < 0.3
  # Padding positions hold garbage the loss must ignore.
  logp[~mask], old[~mask], ref[~mask] = 50.0, -80.0, np.nan
  return dict(logp=logp, old=old, ref=ref, adv=adv, mask=mask, entropy=entropy, truncated=truncated)


def numpy_loss(cfg: GRPOConfig, logp, old, ref, adv, mask, entropy):
  """Loss and its gradients w.r.t. logp and entropy, restated row by row in float64."""
  n, t = logp.shape
  lengths = mask.sum(1)
  if cfg.aggregation == "token-mean":
    denom, weight = mask.sum(), np.ones(n)
  elif cfg.aggregation == "seq-mean-token-mean":
    denom, weight = (lengths > 0).sum(), 1.0 / np.maximum(lengths, 1)
  else:
    denom, weight = (lengths > 0).sum(), np.full(n, 1.0 / cfg.max_length)
  loss, g_logp, g_ent = 0.0, np.zeros((n, t)), np.zeros((n, t))
  c = cfg.log_ratio_clamp
  for i in range(n):
    a = float(adv[i])
    for j in range(t):
      if not mask[i, j]:
        continue
      x, x_old, x_ref = float(logp[i, j]), float(old[i, j]), float(ref[i, j])
      diff = x - x_old
      rho = np.exp(np.clip(diff, -c, c))
      d_rho = rho if abs(diff) < c else 0.0
      lo, hi = 1 - cfg.eps_low, 1 + cfg.eps_high
      surrogate = min(rho * a, np.clip(rho, lo, hi) * a)
      pg = -surrogate
      # Unclipped branch chosen (ties included) -> -A d rho; clipped and outside -> 0.
      d_pg = -a * d_rho if rho * a <= np.clip(rho, lo, hi) * a or lo < rho < hi else 0.0
      if cfg.dual_clip is not None and a < 0 and pg > -cfg.dual_clip * a:
        pg, d_pg = -cfg.dual_clip * a, 0.0
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


def jax_loss(cfg, logp, old, ref, adv, mask, entropy):
  terms, denom = grpo_loss(cfg, logp, old, ref, adv, mask, entropy)
  return terms.loss / jnp.maximum(denom, 1.0)


def _check_against_numpy(cfg, x):
  mask = np.asarray(loss_mask(cfg, x["mask"], x["truncated"]))
  args = (x["old"], x["ref"], x["adv"], mask)
  loss, (g_logp, g_ent) = jax.value_and_grad(jax_loss, argnums=(1, 6))(
      cfg, x["logp"], *args, x["entropy"])
  want, want_logp, want_ent = numpy_loss(cfg, x["logp"], *args, x["entropy"])
  np.testing.assert_allclose(loss, want, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(g_logp, want_logp, rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(g_ent, want_ent, rtol=1e-5, atol=1e-7)
  assert np.all(np.isfinite(g_logp))


@pytest.mark.parametrize("aggregation, estimator, clip",
                         list(itertools.product(AGGREGATIONS, KL_ESTIMATORS, CLIPS)))
def test_loss_and_gradient_match_numpy(aggregation, estimator, clip):
  cfg = _cfg(aggregation, estimator, clip)
  x = _inputs(seed=hash((aggregation, estimator, clip)) % 1000)
  _check_against_numpy(cfg, x)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_entropy_bonus_and_truncation_mask_match_numpy(aggregation):
  cfg = _cfg(aggregation, entropy_coef=0.05, mask_truncated=True, clip="dual")
  _check_against_numpy(cfg, _inputs(seed=7))


def test_clipping_actually_happens_in_the_random_inputs():
  # Guards the test above: its inputs exercise both clips, the dual clip and the log-ratio clamp.
  x = _inputs(seed=3, n=64, spread=1.0)
  cfg = _cfg(clip="dual", log_ratio_clamp=1.0)
  terms = policy_loss(jnp.asarray(x["logp"]), jnp.asarray(x["old"]), jnp.asarray(x["adv"]), cfg)
  m = x["mask"]
  assert terms.clipped_low[m].any() and terms.clipped_high[m].any() and terms.clipped_dual[m].any()
  assert (np.abs(x["logp"] - x["old"])[m] > 1.0).any()
  assert (np.abs(x["logp"] - x["ref"])[m] > 1.0).any()
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
          "seq-mean-token-sum-norm": mask / MAX_LEN}[aggregation]


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


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_micro_batch_accumulation_equals_one_batch(aggregation):
  cfg = _cfg(aggregation, clip="dual", entropy_coef=0.01)
  x = _inputs(seed=21, n=12)
  args = lambda rows: (x["old"][rows], x["ref"][rows], x["adv"][rows], x["mask"][rows])
  rows = np.arange(12)
  full = jax.grad(lambda lp: jax_loss(cfg, lp, *args(rows), x["entropy"]))(x["logp"])
  global_denom = denominator(x["mask"], aggregation)
  micro_grads, micro_denoms, micro_losses = [], [], []
  for part in np.split(rows, 4):
    def micro(lp, part=part):
      terms, d = grpo_loss(cfg, lp, *args(part), x["entropy"][part])
      return terms.loss / global_denom, d
    (loss, d), g = jax.value_and_grad(micro, has_aux=True)(x["logp"][part])
    micro_grads.append(g); micro_denoms.append(d); micro_losses.append(loss)
  assert float(sum(micro_denoms)) == float(global_denom)
  np.testing.assert_allclose(np.concatenate(micro_grads), full, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(sum(micro_losses), jax_loss(cfg, x["logp"], *args(rows), x["entropy"]),
                             rtol=1e-5)
  # Dividing by each micro-batch's own denominator (the classic bug) would not match.
  naive = [g * float(global_denom) / max(float(d), 1.0) for g, d in zip(micro_grads, micro_denoms)]
  assert not np.allclose(np.concatenate(naive) / 4, full, rtol=1e-3)
