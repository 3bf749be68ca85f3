"""Hyperparameters of the GRPO learner and its optimizer, as frozen, validated dataclasses.

`GRPOConfig` holds every knob a researcher sweeps (group size, minibatching, advantage mode, clip
range, policy loss, KL estimator and placement, loss aggregation, entropy bonus, truncation masking,
overlong shaping, dynamic sampling and refill, the pi_old recompute and its importance sampling
corrections, reference reset period); `OptimConfig` the AdamW optimizer and its learning-rate
schedule. Defaults follow DeepSeek-R1-Zero where the paper gives a value. Both are hashable so they
can be static arguments of jitted functions; `validate()` names the key and the allowed values or
range.
"""

from __future__ import annotations

import dataclasses

from r1jax.config import ConfigError, check_choice, check_range

ADVANTAGE_MODES = ("grpo", "no-std", "rloo", "batch-std")
KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PLACEMENTS = ("loss", "reward")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum",
                "seq-mean-token-sum-norm")
POLICY_LOSSES = ("grpo", "gspo", "cispo")
IS_CORRECTIONS = ("none", "tis", "mis")
STD_DDOFS = (0, 1)
LR_SCHEDULES = ("constant", "cosine")
OFFLOAD_MODES = ("none", "rollout", "between_updates")   # r1jax.rl.offload


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """What one GRPO update computes.

  advantage: "grpo" (r - mean) / (std + eps) per group; "no-std" r - mean (Dr. GRPO); "rloo"
    r - mean of the other G-1; "batch-std" (r - group mean) / (std of the batch's rewards + eps).
  std_ddof: 0 (population std, R1) or 1 (sample std) in "grpo" and "batch-std".
  policy_loss: "grpo" the per-token clipped surrogate; "gspo" the same clip on the sequence
    ratio exp(mean over the output's tokens of log(pi/pi_old)) (GSPO); "cispo" the clipped,
    stop-gradient ratio times A times log pi (CISPO, MiniMax-M1). All clip with eps_low/eps_high.
  eps_low / eps_high: clip(rho, 1 - eps_low, 1 + eps_high); R1 stage 1 uses 10 for both.
  dual_clip: None, or c > 1 bounding the loss of A < 0 tokens by -c * A (dual-clip PPO).
  log_ratio_clamp: the log-ratios to pi_old and to pi_ref are clamped to +-this before exp, so
    rho and k3 never overflow (the gradient is cut beyond it).
  kl_placement: "loss" adds kl_coef * KL per token (R1); "reward" subtracts kl_coef * the
    sequence's summed KL (pi_old vs pi_ref) from its reward before the advantages.
  aggregation: "seq-mean-token-mean" (R1), "token-mean" (DAPO, over all tokens of the
    minibatch), "seq-mean-token-sum" (token sums, mean over outputs), "seq-mean-token-sum-norm"
    (Dr. GRPO: token sums / max_length, mean over outputs).
  recompute_old_logprobs: pi_old is the learner's forward of the sampling params (one more
    forward per rollout) instead of the sampler's log-probs; the step then logs the mismatch
    between the two (mismatch/kl, mismatch/max_abs_log_ratio).
  is_correction: with the recompute, each token's policy term is weighted by w = pi_old/pi_sampler:
    "tis" min(w, is_cap) (truncated IS), "mis" w where w <= is_cap and 0 beyond (masked IS).
  overlong_buffer / overlong_max_length / overlong_penalty: DAPO's soft overlong punishment; an
    output of length L > overlong_max_length - overlong_buffer loses overlong_penalty *
    (L - (max - buffer)) / buffer of reward (all of it beyond max). 0 buffer = off.
  dynamic_sampling: zero-variance groups are dropped and more prompts sampled, up to
    dynamic_sampling_max_rounds rollouts, until the batch holds data.questions_per_step
    informative groups (DAPO); short of that, zero-variance groups fill it, so every step has
    one shape.
  G is `num_generations`, the one place it is set: the loop samples G outputs per prompt. The
  sampling temperature is the rollout's (`rollout.temperature`), handed to the train step.
  """
  num_generations: int = 16            # G, outputs per prompt
  num_minibatches: int = 16            # M, optimizer steps per rollout per inner epoch
  inner_epochs: int = 1                # E, passes over one rollout
  micro_batches: int = 1               # gradient-accumulation chunks per minibatch
  advantage: str = "grpo"
  advantage_eps: float = 1e-6
  std_ddof: int = 0                    # 0 population std (R1), 1 sample std
  policy_loss: str = "grpo"
  eps_low: float = 0.2
  eps_high: float = 0.2
  dual_clip: float | None = None
  log_ratio_clamp: float = 20.0
  kl_coef: float = 0.001
  kl_estimator: str = "k3"
  kl_placement: str = "loss"
  aggregation: str = "seq-mean-token-mean"
  max_length: int = 0                  # the Dr. GRPO normaliser; required by that aggregation
  entropy_coef: float = 0.0
  mask_truncated: bool = False         # drop no-EOS outputs from the loss (DAPO overlong filter)
  dynamic_sampling: bool = False       # drop groups whose rewards have zero variance (DAPO)
  dynamic_sampling_max_rounds: int = 4  # rollouts sampled at most to fill one batch
  recompute_old_logprobs: bool = False
  is_correction: str = "none"
  is_cap: float = 2.0                  # C of TIS / MIS
  overlong_buffer: int = 0             # L_cache of DAPO's overlong punishment; 0 = off
  overlong_max_length: int = 0         # L_max of it
  overlong_penalty: float = 1.0        # the penalty at L_max
  ref_reset_every: int = 400           # K: reference <- policy every K steps; 0 = never

  def validate(self):
    check_range("num_generations", self.num_generations, 2)
    for key in ("num_minibatches", "inner_epochs", "micro_batches"):
      check_range(key, getattr(self, key), 1)
    check_choice("advantage", self.advantage, ADVANTAGE_MODES)
    check_range("advantage_eps", self.advantage_eps, 0.0)
    check_choice("std_ddof", self.std_ddof, STD_DDOFS)
    check_choice("policy_loss", self.policy_loss, POLICY_LOSSES)
    if self.policy_loss == "cispo" and self.dual_clip is not None:
      raise ConfigError("dual_clip", f"got {self.dual_clip}; policy_loss 'cispo' has no dual "
                        "clip (its weight is already clipped): leave it None")
    check_range("eps_low", self.eps_low, 0.0)
    check_range("eps_high", self.eps_high, 0.0)
    if self.dual_clip is not None:
      check_range("dual_clip", self.dual_clip, 1.0, low_open=True)
    check_range("log_ratio_clamp", self.log_ratio_clamp, 0.0, low_open=True)
    check_range("kl_coef", self.kl_coef, 0.0)
    check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
    check_choice("kl_placement", self.kl_placement, KL_PLACEMENTS)
    check_choice("aggregation", self.aggregation, AGGREGATIONS)
    if self.aggregation == "seq-mean-token-sum-norm" and self.max_length < 1:
      raise ConfigError("max_length", f"got {self.max_length}; aggregation "
                        "'seq-mean-token-sum-norm' needs the maximum response length (>= 1)")
    check_range("max_length", self.max_length, 0)
    check_range("entropy_coef", self.entropy_coef, 0.0)
    check_range("ref_reset_every", self.ref_reset_every, 0)
    check_range("dynamic_sampling_max_rounds", self.dynamic_sampling_max_rounds, 1)
    check_choice("is_correction", self.is_correction, IS_CORRECTIONS)
    if self.is_correction != "none" and not self.recompute_old_logprobs:
      raise ConfigError("is_correction", f"got {self.is_correction!r}; it weights by "
                        "pi_old/pi_sampler, so it needs rl.recompute_old_logprobs=true")
    check_range("is_cap", self.is_cap, 1.0)
    check_range("overlong_buffer", self.overlong_buffer, 0)
    check_range("overlong_penalty", self.overlong_penalty, 0.0)
    if self.overlong_buffer and self.overlong_max_length <= self.overlong_buffer:
      raise ConfigError("overlong_max_length", f"got {self.overlong_max_length}; with "
                        f"overlong_buffer={self.overlong_buffer} it must be above the buffer")

  @property
  def loss_kl_coef(self) -> float:
    """The KL weight inside the loss: zero when the KL is subtracted from the reward instead."""
    return self.kl_coef if self.kl_placement == "loss" else 0.0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with linear warmup to `lr`, then constant or cosine decay to lr * final_lr_fraction
  at `total_steps`; gradients clipped to global norm `grad_clip` (0 = no clipping)."""
  lr: float = 3e-6
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.01
  warmup_steps: int = 0
  schedule: str = "constant"
  final_lr_fraction: float = 0.1
  total_steps: int = 10_400
  grad_clip: float = 1.0
  # Where the float32 master weights and Adam moments wait (r1jax.rl.offload): on the device,
  # in host memory while the sampler runs, or in host memory except inside each update.
  offload: str = "none"

  def validate(self):
    check_range("lr", self.lr, 0.0)
    check_range("b1", self.b1, 0.0, 1.0, high_open=True)
    check_range("b2", self.b2, 0.0, 1.0, high_open=True)
    check_range("eps", self.eps, 0.0, low_open=True)
    check_range("weight_decay", self.weight_decay, 0.0)
    check_range("warmup_steps", self.warmup_steps, 0)
    check_choice("schedule", self.schedule, LR_SCHEDULES)
    check_range("final_lr_fraction", self.final_lr_fraction, 0.0, 1.0)
    check_range("total_steps", self.total_steps, 1)
    if self.schedule == "cosine" and self.warmup_steps >= self.total_steps:
      raise ConfigError("warmup_steps", f"got {self.warmup_steps}; must be below "
                        f"total_steps={self.total_steps} for the cosine schedule")
    check_range("grad_clip", self.grad_clip, 0.0)
    check_choice("offload", self.offload, OFFLOAD_MODES)
