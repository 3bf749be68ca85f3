"""Model hyperparameters: a dense decoder (Qwen2 shape) with an optional DeepSeekMoE feed-forward,
optional Multi-head Latent Attention (DeepSeek-V2/V3) and multi-token-prediction modules.

`ModelConfig` is frozen and hashable so it can be a static argument of jitted functions. Its
`validate()` runs once when an experiment is loaded; errors name the key and the allowed range.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from r1jax.config import ConfigError, check_choice, check_range
from r1jax.models.rope_scaling import Rope, RopeScaling

DTYPES = ("float32", "bfloat16", "float16")
# How the MoE layer runs, not what its weights are: a checkpoint's config never carries these, so
# a policy loaded from one keeps the experiment's (`r1jax.policy.load_policy`).
MOE_RUNTIME_KEYS = ("capacity_factor", "routing_replay", "redundant_experts")
REMAT = ("none", "full", "dots")


@dataclasses.dataclass(frozen=True)
class MoEConfig:
  """DeepSeekMoE-shaped feed-forward: fine-grained routed experts plus always-on shared experts."""
  num_experts: int = 8
  top_k: int = 2
  expert_ffn_dim: int = 64
  shared_ffn_dim: int = 0          # total hidden size of the shared experts; 0 = none
  shared_gate: bool = False        # Qwen2-MoE scales the shared output by sigmoid(x @ w)
  first_dense_layers: int = 0      # DeepSeekMoE keeps the first k layers dense
  gating: str = "softmax"          # "softmax" (Qwen2-MoE, DeepSeekMoE) or "sigmoid" (DeepSeek-V3)
  norm_top_k: bool = True          # renormalise the selected gate weights to sum to 1
  routed_scale: float = 1.0
  balance: str = "aux_free"        # "aux_free" bias balancing, or "none"
  bias_update_rate: float = 1e-3
  aux_loss_coef: float = 0.0       # optional switch-style load-balancing loss
  # DeepSeek-V3 node-limited routing: experts form n_group groups (one per node), each token
  # picks its topk_group best groups (by the sum of their top-2 scores), then top_k inside them.
  n_group: int = 1
  topk_group: int = 1
  group_score: str = "top2_sum"    # how a group is scored: V3 sums its top-2, V2 takes the max
  # Expert parallel: copies sent per owner per all-to-all round, as a multiple of the balanced
  # share (tokens x top_k / expert shards); more rounds run when routing is skewed (dropless).
  # 0 = one round sized for the worst case (every copy to one owner).
  capacity_factor: float = 1.25
  # Routing replay: the sampler records each token's expert ids per MoE layer so the learner's
  # forward can reuse them instead of re-routing (RL with MoE policies).
  routing_replay: bool = False
  # Redundant experts (DeepSeek-V3 inference): slots per expert-parallel device for copies of the
  # most loaded experts (`r1jax.models.expert_placement`); the planner shows the imbalance.
  redundant_experts: int = 0

  def validate(self):
    check_range("num_experts", self.num_experts, 1)
    check_range("top_k", self.top_k, 1, self.num_experts)
    check_range("expert_ffn_dim", self.expert_ffn_dim, 1)
    check_range("shared_ffn_dim", self.shared_ffn_dim, 0)
    check_range("first_dense_layers", self.first_dense_layers, 0)
    check_choice("gating", self.gating, ("softmax", "sigmoid"))
    check_choice("balance", self.balance, ("aux_free", "none"))
    check_range("bias_update_rate", self.bias_update_rate, 0.0)
    check_range("aux_loss_coef", self.aux_loss_coef, 0.0)
    check_range("routed_scale", self.routed_scale, 0.0, low_open=True)
    check_range("n_group", self.n_group, 1, self.num_experts)
    if self.num_experts % self.n_group:
      raise ConfigError("n_group", f"got {self.n_group}; must divide num_experts={self.num_experts}")
    check_range("topk_group", self.topk_group, 1, self.n_group)
    check_choice("group_score", self.group_score, ("top2_sum", "max"))
    check_range("capacity_factor", self.capacity_factor, 0.0)
    check_range("redundant_experts", self.redundant_experts, 0, self.num_experts)
    per_group = self.num_experts // self.n_group
    if self.n_group > 1 and self.group_score == "top2_sum" and per_group < 2:
      raise ConfigError("n_group", f"got {self.n_group}; groups are scored by their top-2 experts, "
                        f"so num_experts / n_group must be >= 2")
    if self.top_k > self.topk_group * per_group:
      raise ConfigError("topk_group", f"got {self.topk_group}; the chosen groups hold "
                        f"{self.topk_group * per_group} experts, fewer than top_k={self.top_k}")


@dataclasses.dataclass(frozen=True)
class MLAConfig:
  """Multi-head Latent Attention (DeepSeek-V2/V3): keys and values are up-projected from one
  compressed latent of `kv_lora_rank` per token (what the decode cache stores), plus a single
  RoPE key of `qk_rope_head_dim` shared by all heads. `q_lora_rank` > 0 also compresses queries."""
  kv_lora_rank: int = 32
  q_lora_rank: int = 0             # 0 = a plain query projection
  qk_nope_head_dim: int = 16
  qk_rope_head_dim: int = 8
  v_head_dim: int = 16

  def validate(self):
    for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
      check_range(key, getattr(self, key), 1)
    check_range("q_lora_rank", self.q_lora_rank, 0)
    if self.qk_rope_head_dim % 2:
      raise ConfigError("qk_rope_head_dim", f"got {self.qk_rope_head_dim}; must be even (RoPE pairs)")

  @property
  def qk_head_dim(self) -> int:
    return self.qk_nope_head_dim + self.qk_rope_head_dim

@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int = 256
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  ffn_dim: int = 128
  rope_theta: float = 10000.0
  rope_scaling: RopeScaling = RopeScaling()   # context extension (YaRN, ...) of HF checkpoints
  norm_eps: float = 1e-6
  qkv_bias: bool = False
  tie_embeddings: bool = False
  max_seq_len: int = 2048
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  remat: str = "none"              # "none", "full" (recompute each layer), "dots" (save matmuls)
  moe: MoEConfig | None = None
  mla: MLAConfig | None = None     # None: grouped-query attention with num_kv_heads x head_dim
  mtp_layers: int = 0              # DeepSeek-V3 multi-token prediction modules (num_nextn_predict_layers)
  mtp_loss_weight: float = 0.3     # weight of the MTP loss in SFT / pretraining (V3: 0.3, then 0.1)

  def validate(self):
    for key in ("vocab_size", "dim", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                "ffn_dim", "max_seq_len"):
      check_range(key, getattr(self, key), 1)
    if self.num_heads % self.num_kv_heads:
      raise ConfigError("num_kv_heads", f"got {self.num_kv_heads}; must divide num_heads={self.num_heads}")
    check_range("rope_theta", self.rope_theta, 0.0, low_open=True)
    try:
      self.rope_scaling.validate()
      self.rope_scaling.validate_dim(self.head_dim if self.mla is None else self.mla.qk_rope_head_dim)
    except ConfigError as e:
      raise e.under("rope_scaling") from None
    check_range("norm_eps", self.norm_eps, 0.0, low_open=True)
    check_choice("param_dtype", self.param_dtype, DTYPES)
    check_choice("compute_dtype", self.compute_dtype, DTYPES)
    check_choice("remat", self.remat, REMAT)
    if self.moe is not None:
      try:
        self.moe.validate()
      except ConfigError as e:
        raise e.under("moe") from None
      check_range("moe.first_dense_layers", self.moe.first_dense_layers, 0, self.num_layers)
    if self.mla is not None:
      try:
        self.mla.validate()
      except ConfigError as e:
        raise e.under("mla") from None
    check_range("mtp_layers", self.mtp_layers, 0)
    check_range("mtp_loss_weight", self.mtp_loss_weight, 0.0)

  @property
  def num_dense_layers(self) -> int:
    return self.num_layers if self.moe is None else self.moe.first_dense_layers

  @property
  def num_moe_layers(self) -> int:
    return self.num_layers - self.num_dense_layers

  @property
  def replays_routes(self) -> bool:
    """Whether the sampler records each token's experts for the learner to replay."""
    return bool(self.moe is not None and self.moe.routing_replay and self.num_moe_layers)

  @property
  def rope(self) -> Rope:
    return Rope(self.rope_theta, self.rope_scaling, self.max_seq_len)

  @property
  def dtype(self):
    return jnp.dtype(self.compute_dtype)

  @property
  def weight_dtype(self):
    return jnp.dtype(self.param_dtype)
