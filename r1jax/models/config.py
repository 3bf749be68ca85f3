"""Model hyperparameters: a dense decoder (Qwen2 shape) with an optional DeepSeekMoE feed-forward.

`ModelConfig` is frozen and hashable so it can be a static argument of jitted functions. Its
`validate()` runs once when an experiment is loaded; errors name the key and the allowed range.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from r1jax.config import ConfigError, check_choice, check_range

DTYPES = ("float32", "bfloat16", "float16")
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
  norm_eps: float = 1e-6
  qkv_bias: bool = False
  tie_embeddings: bool = False
  max_seq_len: int = 2048
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  remat: str = "none"              # "none", "full" (recompute each layer), "dots" (save matmuls)
  moe: MoEConfig | None = None

  def validate(self):
    for key in ("vocab_size", "dim", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                "ffn_dim", "max_seq_len"):
      check_range(key, getattr(self, key), 1)
    if self.num_heads % self.num_kv_heads:
      raise ConfigError("num_kv_heads", f"got {self.num_kv_heads}; must divide num_heads={self.num_heads}")
    check_range("rope_theta", self.rope_theta, 0.0, low_open=True)
    check_range("norm_eps", self.norm_eps, 0.0, low_open=True)
    check_choice("param_dtype", self.param_dtype, DTYPES)
    check_choice("compute_dtype", self.compute_dtype, DTYPES)
    check_choice("remat", self.remat, REMAT)
    if self.moe is not None:
      self.moe.validate()
      check_range("moe.first_dense_layers", self.moe.first_dense_layers, 0, self.num_layers)

  @property
  def num_dense_layers(self) -> int:
    return self.num_layers if self.moe is None else self.moe.first_dense_layers

  @property
  def num_moe_layers(self) -> int:
    return self.num_layers - self.num_dense_layers

  @property
  def dtype(self):
    return jnp.dtype(self.compute_dtype)

  @property
  def weight_dtype(self):
    return jnp.dtype(self.param_dtype)
