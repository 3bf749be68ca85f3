"""Hyperparameters of the GRPO learner and its optimizer, as frozen, validated dataclasses.

`GRPOConfig` holds every knob a researcher sweeps (group size, minibatching, advantage mode,
clip range, KL estimator and placement, loss aggregation, entropy bonus, truncation masking,
dynamic sampling, reference reset period); `OptimConfig` the AdamW optimizer and its learning-rate
schedule. Defaults follow DeepSeek-R1-Zero where the paper gives a value. Both are hashable so
they can be static arguments of jitted functions; `validate()` names the key and the allowed
values or range.
"""

from __future__ import annotations

import dataclasses

from r1jax.config import ConfigError, check_choice, check_range

ADVANTAGE_MODES = ("grpo", "no-std", "rloo", "batch-std")
KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PLACEMENTS = ("loss", "reward")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """What one GRPO update computes.

  advantage: "grpo" (r - mean) / (std + eps) per group; "no-std" r - mean (Dr. GRPO); "rloo"
    r - mean of the other G-1; "batch-std" (r - group mean) / (std of the batch's rewards + eps).
  eps_low / eps_high: clip(rho, 1 - eps_low, 1 + eps_high); R1 stage 1 uses 10 for both.
  dual_clip: None, or c > 1 bounding the loss of A < 0 tokens by -c * A (dual-clip PPO).
  log_ratio_clamp: the log-ratios to pi_old and to pi_ref are clamped to +-this before exp, so
    rho and k3 never overflow (the gradient is cut beyond it).
  kl_placement: "loss" adds kl_coef * KL per token (R1); "reward" subtracts kl_coef * the
    sequence's summed KL (pi_old vs pi_ref) from its reward before the advantages.
  aggregation: "seq-mean-token-mean" (R1), "token-mean" (DAPO, over all tokens of the
    minibatch), "seq-mean-token-sum-norm" (Dr. GRPO: token sums / max_length, mean over outputs).
  G is `num_generations`, the one place it is set: the loop samples G outputs per prompt. The
  sampling temperature is the rollout's (`rollout.temperature`), handed to the train step.
  """
  num_generations: int = 16            # G, outputs per prompt
  num_minibatches: int = 16            # M, optimizer steps per rollout per inner epoch
  inner_epochs: int = 1                # E, passes over one rollout
  micro_batches: int = 1               # gradient-accumulation chunks per minibatch
  advantage: str = "grpo"
  advantage_eps: float = 1e-6
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
  ref_reset_every: int = 400           # K: reference <- policy every K steps; 0 = never

  def validate(self):
    check_range("num_generations", self.num_generations, 2)
    for key in ("num_minibatches", "inner_epochs", "micro_batches"):
      check_range(key, getattr(self, key), 1)
    check_choice("advantage", self.advantage, ADVANTAGE_MODES)
    check_range("advantage_eps", self.advantage_eps, 0.0)
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
