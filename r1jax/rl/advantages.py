"""From one rollout's rewards to per-output advantages, and the rollout's reward statistics.

Rewards arrive per output, in groups of G consecutive outputs of one prompt. The advantage of an
output is the same for every one of its tokens. Modes: "grpo" (r - mean) / (std + eps) within the
group (std with ddof=0, or 1 with `std_ddof`); "no-std" r - mean (Dr. GRPO); "rloo" r minus the mean
of the other G-1 outputs; "batch-std" (r - group mean) / (std of all rewards in the batch + eps). A
group whose rewards are all equal gets exactly zero advantage in every mode (float rounding of r -
mean would otherwise be amplified by the std division). With the KL in the reward, each reward first
loses kl_coef times the sequence's summed KL estimate between pi_old and pi_ref; with DAPO's
overlong shaping, an output ending in the last `overlong_buffer` tokens before `overlong_max_length`
loses a penalty growing linearly to `overlong_penalty` there (all of it beyond).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from r1jax.rl.config import GRPOConfig
from r1jax.rl.losses import kl_estimate


def _groups(rewards, group_size: int):
  rewards = jnp.asarray(rewards, jnp.float32)
  if rewards.ndim != 1 or rewards.shape[0] % group_size:
    raise ValueError(f"rewards: got shape {rewards.shape}; need [N] with N a multiple of the "
                     f"group size G={group_size}")
  return rewards.reshape(-1, group_size)


def group_advantages(rewards, group_size: int, mode: str = "grpo", eps: float = 1e-6,
                     ddof: int = 0):
  """Advantages [N] f32 for rewards [N] in consecutive groups of `group_size`; `ddof` of the
  std of "grpo" and "batch-std"."""
  r = _groups(rewards, group_size)
  mean = jnp.mean(r, axis=1, keepdims=True)
  if mode == "grpo":
    adv = (r - mean) / (jnp.std(r, axis=1, keepdims=True, ddof=ddof) + eps)
  elif mode == "no-std":
    adv = r - mean
  elif mode == "rloo":
    others = (jnp.sum(r, axis=1, keepdims=True) - r) / (group_size - 1)
    adv = r - others
  elif mode == "batch-std":
    adv = (r - mean) / (jnp.std(r, ddof=ddof) + eps)
  else:
    raise ValueError(f"advantage: got {mode!r}; allowed values: 'grpo', 'no-std', 'rloo', "
                     "'batch-std'")
  constant = jnp.max(r, axis=1, keepdims=True) == jnp.min(r, axis=1, keepdims=True)
  return jnp.where(constant, 0.0, adv).reshape(-1)


def sequence_kl(old_logprobs, ref_logprobs, completion_mask, estimator: str = "k3",
                clamp: float = 20.0):
  """Per-output sum over its tokens of the KL estimate between pi_old and pi_ref, [N]; the
  log-ratio clamped to +-`clamp` (the config's log_ratio_clamp) so that k3 cannot overflow."""
  mask = jnp.asarray(completion_mask, bool)
  kl = kl_estimate(jnp.where(mask, old_logprobs, 0.0), jnp.where(mask, ref_logprobs, 0.0),
                   estimator, clamp)
  return jnp.sum(jnp.where(mask, kl, 0.0), axis=1)


def overlong_penalty(lengths, buffer: int, max_length: int, penalty: float = 1.0):
  """DAPO's soft overlong punishment [N] (<= 0) of outputs of `lengths` [N]: 0 up to
  max_length - buffer, then linear down to -penalty at max_length, -penalty beyond."""
  start = max_length - buffer
  excess = jnp.asarray(lengths, jnp.float32) - start
  return -penalty * jnp.clip(excess / buffer, 0.0, 1.0)


def rollout_advantages(cfg: GRPOConfig, groups, rewards) -> jnp.ndarray:
  """Advantages [N] of `rewards` [N] for the outputs of `groups` (a `r1jax.rl.batch.Groups`, whose
  log-probs and mask enter only with the KL in the reward and the overlong shaping), as `cfg`
  prescribes."""
  rewards = jnp.asarray(rewards, jnp.float32)
  if cfg.kl_placement == "reward" and cfg.kl_coef:
    rewards = rewards - cfg.kl_coef * sequence_kl(groups.old_logprobs, groups.ref_logprobs,
                                                  groups.completion_mask, cfg.kl_estimator,
                                                  cfg.log_ratio_clamp)
  if cfg.overlong_buffer:
    lengths = jnp.sum(jnp.asarray(groups.completion_mask, jnp.int32), axis=1)
    rewards = rewards + overlong_penalty(lengths, cfg.overlong_buffer, cfg.overlong_max_length,
                                         cfg.overlong_penalty)
  return group_advantages(rewards, cfg.num_generations, cfg.advantage, cfg.advantage_eps,
                          cfg.std_ddof)


def informative_groups(rewards, group_size: int) -> np.ndarray:
  """bool [N / G]: groups whose rewards are not all equal (the ones dynamic sampling keeps)."""
  r = np.asarray(rewards, np.float32)
  if r.ndim != 1 or r.shape[0] % group_size:
    raise ValueError(f"rewards: got shape {r.shape}; need [N] with N a multiple of G={group_size}")
  r = r.reshape(-1, group_size)
  return r.max(axis=1) != r.min(axis=1)


def rollout_metrics(rewards, data_types: Sequence[str] | None, group_size: int) -> dict[str, float]:
  """Host-side reward statistics of one rollout: mean/std overall and per data type, and the
  fraction of groups with zero reward variance. `data_types` has one entry per output or per
  prompt (then repeated G times), or is None."""
  r = np.asarray(rewards, np.float64)
  metrics = {"reward/mean": float(r.mean()), "reward/std": float(r.std()),
             "reward/zero_variance_groups": float(1.0 - informative_groups(r, group_size).mean())}
  if data_types is not None:
    types = np.asarray(data_types)
    if types.shape[0] * group_size == r.shape[0]:
      types = np.repeat(types, group_size)
    if types.shape != r.shape:
      raise ValueError(f"data_types: got {types.shape[0]} entries; need one per output "
                       f"({r.shape[0]}) or per prompt ({r.shape[0] // group_size})")
    for name in sorted(set(types.tolist())):
      picked = r[types == name]
      metrics[f"reward/{name}/mean"] = float(picked.mean())
      metrics[f"reward/{name}/std"] = float(picked.std())
  return metrics
