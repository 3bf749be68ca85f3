"""The GRPO objective per token, and how per-token terms become one loss.

Per token: the policy term, plus kl_coef times a KL estimate to the reference (k1, k2 or k3),
minus entropy_coef times the entropy. The policy term is one of
  "grpo"  the clipped surrogate -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A), with an
          optional dual clip for A < 0;
  "gspo"  the same on the sequence ratio s = exp(mean over the output's tokens of log rho),
          shared by all its tokens (GSPO);
  "cispo" -sg(clip(rho, 1 - eps_low, 1 + eps_high)) * A * log pi: no token's gradient is cut,
          its weight is (CISPO, MiniMax-M1);
times an importance weight per token when the sampler's log-probs correct pi_old
(`r1jax.rl.corrections`). Every aggregation mode is written as per-token weights
that depend on one row's mask only, and a denominator computed once from the masks of the whole
minibatch: the loss is sum(weights * terms) / denominator. Summing the numerators of any
partition of the rows (micro-batches, data-parallel shards) and dividing by the global
denominator therefore gives exactly the loss of the whole minibatch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from r1jax.rl.config import GRPOConfig


def kl_estimate(logp, ref_logp, estimator: str, clamp: float = 20.0):
  """Per-token estimate of KL(pi || pi_ref) from samples of pi; zero where pi = pi_ref.

  k1 = log(pi/pi_ref); k2 = (log(pi/pi_ref))^2 / 2; k3 = pi_ref/pi - log(pi_ref/pi) - 1 (>= 0).
  The log-ratio is clamped so that k3's exp cannot overflow on a wild token.
  """
  log_ratio = jnp.clip(ref_logp - logp, -clamp, clamp)   # log(pi_ref / pi)
  if estimator == "k1":
    return -log_ratio
  if estimator == "k2":
    return 0.5 * jnp.square(log_ratio)
  if estimator == "k3":
    return jnp.exp(log_ratio) - log_ratio - 1.0
  raise ValueError(f"kl_estimator: got {estimator!r}; allowed values: 'k1', 'k2', 'k3'")


class PolicyTerms(NamedTuple):
  """Per-token clipped-surrogate loss and where each clip was active (the gradient is cut)."""
  loss: jax.Array
  ratio: jax.Array
  clipped_low: jax.Array    # A < 0 and rho < 1 - eps_low
  clipped_high: jax.Array   # A > 0 and rho > 1 + eps_high
  clipped_dual: jax.Array   # A < 0 and the dual bound -c * A is the loss


def sequence_log_ratio(logp, old_logp, mask):
  """[N, 1]: the mean over each row's `mask` tokens of log(pi / pi_old) (0 for an empty row)."""
  mask = mask.astype(jnp.float32)
  total = jnp.sum(mask * (logp - old_logp), axis=1, keepdims=True)
  return total / jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1.0)


def _cispo(logp, old_logp, adv, cfg: GRPOConfig) -> PolicyTerms:
  ratio = jnp.exp(jnp.clip(logp - old_logp, -cfg.log_ratio_clamp, cfg.log_ratio_clamp))
  weight = jax.lax.stop_gradient(jnp.clip(ratio, 1.0 - cfg.eps_low, 1.0 + cfg.eps_high))
  # Gradient -weight * A * d log pi, as CISPO's -sg(weight) * A * log pi; the value is
  # -weight * A (log pi - sg(log pi) = 0), comparable with the other losses'.
  loss = -weight * adv * (logp - jax.lax.stop_gradient(logp) + 1.0)
  return PolicyTerms(loss, ratio, clipped_low=ratio < 1.0 - cfg.eps_low,
                     clipped_high=ratio > 1.0 + cfg.eps_high,
                     clipped_dual=jnp.zeros_like(loss, dtype=bool))


def policy_loss(logp, old_logp, advantages, cfg: GRPOConfig, mask=None) -> PolicyTerms:
  """Per-token policy term of `cfg.policy_loss`; advantages [N] or [N, T]. "grpo": -min(rho A,
  clip(rho) A), dual-clipped for A < 0; "gspo": the same with rho the sequence ratio of each
  row's `mask` tokens; "cispo": see the module docstring."""
  adv = advantages[:, None] if advantages.ndim == 1 else advantages
  if cfg.policy_loss == "cispo":
    return _cispo(logp, old_logp, adv, cfg)
  log_ratio = logp - old_logp
  if cfg.policy_loss == "gspo":
    if mask is None:
      raise ValueError("policy_loss 'gspo' needs the mask of each row's tokens")
    log_ratio = jnp.broadcast_to(sequence_log_ratio(logp, old_logp, mask), logp.shape)
  ratio = jnp.exp(jnp.clip(log_ratio, -cfg.log_ratio_clamp, cfg.log_ratio_clamp))
  unclipped = -ratio * adv
  clipped = -jnp.clip(ratio, 1.0 - cfg.eps_low, 1.0 + cfg.eps_high) * adv
  # where, not maximum: at a tie (rho inside the clip range, or eps = 0 at rho = 1) the gradient
  # is the unclipped one, not half of it.
  loss = jnp.where(unclipped >= clipped, unclipped, clipped)
  dual = jnp.zeros_like(loss, dtype=bool)
  if cfg.dual_clip is not None:
    # For A < 0 the surrogate grows without bound in rho; cap the loss at -c * A (c > 1).
    bound = -cfg.dual_clip * adv
    dual = (adv < 0) & (loss > bound)
    loss = jnp.where(dual, bound, loss)
  return PolicyTerms(loss, ratio,
                     clipped_low=(adv < 0) & (ratio < 1.0 - cfg.eps_low),
                     clipped_high=(adv > 0) & (ratio > 1.0 + cfg.eps_high),
                     clipped_dual=dual)


def token_weights(mask, aggregation: str, max_length: int = 0):
  """Per-token weights [N, T] of one aggregation mode; each row depends on its own mask only."""
  mask = mask.astype(jnp.float32)
  if aggregation == "seq-mean-token-mean":
    return mask / jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1.0)
  if aggregation in ("token-mean", "seq-mean-token-sum"):
    return mask
  if aggregation == "seq-mean-token-sum-norm":
    return mask / float(max_length)
  raise ValueError(f"aggregation: got {aggregation!r}")


def denominator(mask, aggregation: str):
  """The global denominator of one minibatch: its outputs with >= 1 loss token, or its tokens.

  Compute it from the masks of the whole minibatch (it does not depend on the parameters) and
  divide every micro-batch's numerator by it.
  """
  mask = mask.astype(jnp.float32)
  if aggregation == "token-mean":
    return jnp.sum(mask)
  return jnp.sum(jnp.any(mask > 0, axis=1).astype(jnp.float32))


def loss_mask(cfg: GRPOConfig, completion_mask, truncated):
  """The tokens that carry loss: valid completion tokens, minus truncated outputs if masked."""
  mask = completion_mask.astype(bool)
  if cfg.mask_truncated:
    mask = mask & ~truncated.astype(bool)[:, None]
  return mask


class LossTerms(NamedTuple):
  """Numerators of one (micro-)batch; divide by the minibatch's `denominator` (and, for the
  `token_*` sums, by its loss-token count) to get means over the whole minibatch."""
  loss: jax.Array            # weighted sum of pg + kl_coef * kl - entropy_coef * entropy
  policy: jax.Array          # weighted sum of the clipped surrogate
  kl: jax.Array              # weighted sum of the KL estimate (before kl_coef)
  entropy: jax.Array         # weighted sum of the entropy (before entropy_coef)
  token_clip_low: jax.Array  # token counts and sums over the loss mask, for metrics
  token_clip_high: jax.Array
  token_clip_dual: jax.Array
  token_kl_old: jax.Array    # k3 to pi_old
  token_kl_ref: jax.Array    # k3 to pi_ref
  token_entropy: jax.Array


def grpo_loss(cfg: GRPOConfig, logp, old_logp, ref_logp, advantages, mask,
              entropy=None, is_weights=None) -> tuple[LossTerms, jax.Array]:
  """(numerators, denominator) of the GRPO loss for rows [N, T] under `mask`; `is_weights`
  [N, T] (`r1jax.rl.corrections.importance_weights`), if given, weight each token's policy term.

  The loss of these rows alone is terms.loss / max(denominator, 1). Denominators add over any
  partition of the rows, so a minibatch split into micro-batches divides each micro-batch's
  numerator by the sum of their denominators, computed up front with :func:`denominator`.
  """
  mask = mask.astype(bool)
  fmask = mask.astype(jnp.float32)
  weights = token_weights(mask, cfg.aggregation, cfg.max_length)
  # Padding tokens may hold arbitrary log-probs; zero them so no inf/nan leaks into gradients.
  logp = jnp.where(mask, logp, 0.0)
  old_logp = jnp.where(mask, old_logp, 0.0)
  ref_logp = jnp.where(mask, ref_logp, 0.0)
  pg = policy_loss(logp, old_logp, advantages, cfg, mask)
  if is_weights is not None:
    pg = pg._replace(loss=jax.lax.stop_gradient(jnp.where(mask, is_weights, 0.0)) * pg.loss)
  kl = kl_estimate(logp, ref_logp, cfg.kl_estimator, cfg.log_ratio_clamp)
  if entropy is None:
    entropy = jnp.zeros_like(logp)
  entropy = jnp.where(mask, entropy, 0.0)
  if cfg.entropy_coef == 0.0:
    entropy = jax.lax.stop_gradient(entropy)    # a metric only: don't differentiate it
  per_token = pg.loss + cfg.loss_kl_coef * kl - cfg.entropy_coef * entropy
  wsum = lambda x: jnp.sum(weights * x)
  tsum = lambda x: jnp.sum(jnp.where(mask, x, 0.0).astype(jnp.float32))
  no_grad = jax.lax.stop_gradient
  terms = LossTerms(
      loss=wsum(per_token), policy=wsum(pg.loss), kl=wsum(kl), entropy=wsum(entropy),
      token_clip_low=tsum(pg.clipped_low), token_clip_high=tsum(pg.clipped_high),
      token_clip_dual=tsum(pg.clipped_dual),
      token_kl_old=no_grad(tsum(kl_estimate(logp, old_logp, "k3", cfg.log_ratio_clamp))),
      token_kl_ref=no_grad(tsum(kl_estimate(logp, ref_logp, "k3", cfg.log_ratio_clamp))),
      token_entropy=no_grad(jnp.sum(fmask * entropy)))
  return terms, denominator(mask, cfg.aggregation)
