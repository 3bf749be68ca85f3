"""Translation between a Hugging Face `config.json` (Qwen2 / Qwen2.5 / Qwen2-MoE) and our ModelConfig.

:func:`from_hf` accepts both the classic keys (`rope_theta`, `rope_scaling`, `torch_dtype`) that
published Qwen checkpoints use and the `rope_parameters` / `dtype` keys of transformers 5. Anything
our model cannot reproduce exactly — another architecture, RoPE scaling, sliding-window attention,
another activation, dense layers that are not the first k — raises :class:`HFCheckpointError`
naming the key and the file. :func:`to_hf` writes the classic keys, which old and new readers
(transformers, vLLM, SGLang) all accept.
"""

from __future__ import annotations

from typing import Any

from r1jax.models.config import DTYPES, ModelConfig, MoEConfig

QWEN2 = "Qwen2ForCausalLM"
QWEN2_MOE = "Qwen2MoeForCausalLM"
ARCHITECTURES = {QWEN2: "qwen2", QWEN2_MOE: "qwen2_moe"}


class HFCheckpointError(ValueError):
  """A Hugging Face checkpoint that r1jax cannot read (or a model it cannot write) faithfully."""


def _architecture(hf: dict[str, Any], where: str) -> str:
  archs = hf.get("architectures") or []
  by_type = {t: a for a, t in ARCHITECTURES.items()}
  arch = archs[0] if archs else by_type.get(hf.get("model_type"), hf.get("model_type"))
  if len(archs) > 1 or arch not in ARCHITECTURES:
    supported = ", ".join(f"{a} (model_type {t})" for a, t in ARCHITECTURES.items())
    raise HFCheckpointError(f"{where}: unsupported architecture {archs or arch!r}; "
                            f"supported: {supported}")
  return arch


def _rope_theta(hf: dict[str, Any], where: str) -> float:
  rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  kind = rope.get("rope_type", rope.get("type", "default"))
  if kind != "default":
    raise HFCheckpointError(f"{where}: RoPE scaling {kind!r} ({rope}) is not supported; "
                            "only plain RoPE ('default')")
  return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _check_full_attention(hf: dict[str, Any], where: str) -> None:
  layer_types = hf.get("layer_types")
  if layer_types is not None:
    sliding = [i for i, t in enumerate(layer_types) if t != "full_attention"]
    if sliding:
      raise HFCheckpointError(f"{where}: layers {sliding} use {layer_types[sliding[0]]!r}; "
                              "only full attention is supported")
  elif hf.get("use_sliding_window"):
    raise HFCheckpointError(f"{where}: sliding-window attention (use_sliding_window=true, "
                            f"sliding_window={hf.get('sliding_window')}) is not supported")


def _first_dense_layers(hf: dict[str, Any], num_layers: int, where: str) -> int:
  """HF's per-layer sparsity rule, which we can express only as 'the first k layers are dense'."""
  step = hf.get("decoder_sparse_step", 1)
  only_mlp = set(hf.get("mlp_only_layers") or [])
  dense = [i for i in range(num_layers) if i in only_mlp or (i + 1) % step]
  if dense != list(range(len(dense))):
    raise HFCheckpointError(
        f"{where}: unsupported layer layout: dense layers {dense} (decoder_sparse_step={step}, "
        f"mlp_only_layers={sorted(only_mlp)}); r1jax supports only the first k layers dense")
  return len(dense)


def _dtype(hf: dict[str, Any]) -> str:
  stored = str(hf.get("dtype") or hf.get("torch_dtype") or "float32").removeprefix("torch.")
  return stored if stored in DTYPES else "float32"


def from_hf(hf: dict[str, Any], *, dtype: str | None = None, where: str = "config.json") -> ModelConfig:
  """ModelConfig for a parsed HF config.json; `dtype` overrides the checkpoint's stored dtype."""
  arch = _architecture(hf, where)
  _check_full_attention(hf, where)
  if hf.get("hidden_act", "silu") != "silu":
    raise HFCheckpointError(f"{where}: hidden_act={hf['hidden_act']!r} is not supported; only 'silu'")
  try:
    heads = hf["num_attention_heads"]
    num_layers = hf["num_hidden_layers"]
    kwargs = dict(vocab_size=hf["vocab_size"], dim=hf["hidden_size"], num_layers=num_layers,
                  num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
                  head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
                  ffn_dim=hf["intermediate_size"], rope_theta=_rope_theta(hf, where),
                  norm_eps=hf.get("rms_norm_eps", 1e-6),
                  qkv_bias=bool(hf.get("qkv_bias", True)),  # Qwen2 always has it; Qwen2-MoE (v5) may not
                  tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
                  max_seq_len=hf.get("max_position_embeddings", 32768),
                  param_dtype=dtype or _dtype(hf))
    if arch == QWEN2_MOE and hf.get("num_experts", 0) > 0:
      shared = hf.get("shared_expert_intermediate_size", 0)
      kwargs["moe"] = MoEConfig(
          num_experts=hf["num_experts"], top_k=hf["num_experts_per_tok"],
          expert_ffn_dim=hf["moe_intermediate_size"], shared_ffn_dim=shared,
          shared_gate=shared > 0, first_dense_layers=_first_dense_layers(hf, num_layers, where),
          gating="softmax", norm_top_k=bool(hf.get("norm_topk_prob", False)),
          # No selection bias in Qwen2-MoE: keep it zero so the model stays exportable.
          balance="none", aux_loss_coef=0.0)
  except KeyError as e:
    raise HFCheckpointError(f"{where}: missing key {e.args[0]!r} for {arch}") from None
  cfg = ModelConfig(**kwargs)
  cfg.validate()
  return cfg


def check_exportable(cfg: ModelConfig) -> None:
  """Raises if `cfg` uses a feature Qwen2 / Qwen2-MoE cannot express."""
  m = cfg.moe
  if m is None:
    return
  problems = []
  if m.gating != "softmax":
    problems.append(f"moe.gating={m.gating!r} (Qwen2-MoE routes by softmax)")
  if m.routed_scale != 1.0:
    problems.append(f"moe.routed_scale={m.routed_scale} (Qwen2-MoE has no routed scale)")
  if not m.shared_ffn_dim or not m.shared_gate:
    problems.append(f"moe.shared_ffn_dim={m.shared_ffn_dim}, moe.shared_gate={m.shared_gate} "
                    "(Qwen2-MoE always has one sigmoid-gated shared expert)")
  if problems:
    raise HFCheckpointError("cannot export as Qwen2-MoE: " + "; ".join(problems))


def to_hf(cfg: ModelConfig, *, dtype: str, bos_token_id=None, eos_token_id=None) -> dict[str, Any]:
  """config.json contents for `cfg` (call :func:`check_exportable` first)."""
  hf = {"architectures": [QWEN2 if cfg.moe is None else QWEN2_MOE],
        "model_type": "qwen2" if cfg.moe is None else "qwen2_moe",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": None,
        "tie_word_embeddings": cfg.tie_embeddings, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": cfg.num_layers, "attention_dropout": 0.0,
        "use_cache": True, "initializer_range": 0.02, "torch_dtype": dtype,
        "bos_token_id": bos_token_id, "eos_token_id": eos_token_id}
  if cfg.moe is not None:
    m = cfg.moe
    hf |= {"num_experts": m.num_experts, "num_experts_per_tok": m.top_k,
           "moe_intermediate_size": m.expert_ffn_dim,
           "shared_expert_intermediate_size": m.shared_ffn_dim, "norm_topk_prob": m.norm_top_k,
           "decoder_sparse_step": 1, "mlp_only_layers": list(range(m.first_dense_layers)),
           "router_aux_loss_coef": m.aux_loss_coef, "output_router_logits": False,
           "qkv_bias": True}
  return hf
