"""Translation between a Hugging Face `config.json` (Qwen2 / Qwen2.5 / Qwen2-MoE / DeepSeek-V2 /
DeepSeek-V3) and our ModelConfig.

:func:`from_hf` accepts both the classic keys (`rope_theta`, `rope_scaling`, `torch_dtype`) that
published Qwen checkpoints use and the `rope_parameters` / `dtype` keys of transformers 5. Anything
our model cannot reproduce exactly — another architecture, a RoPE scaling other than
linear / dynamic / yarn / llama3 / longrope, sliding-window attention, another activation, dense
layers that are not the first k — raises :class:`HFCheckpointError` naming the key and the file.
:func:`to_hf` writes the classic keys, which old and new readers (transformers, vLLM, SGLang) all
accept.
"""

from __future__ import annotations

from typing import Any

from absl import logging

from r1jax.config import ConfigError
from r1jax.models.config import DTYPES, MLAConfig, ModelConfig, MoEConfig
from r1jax.models.rope_scaling import NEEDS_ORIGINAL, RopeScaling

QWEN2 = "Qwen2ForCausalLM"
QWEN2_MOE = "Qwen2MoeForCausalLM"
DEEPSEEK_V2 = "DeepseekV2ForCausalLM"
DEEPSEEK_V3 = "DeepseekV3ForCausalLM"
ARCHITECTURES = {QWEN2: "qwen2", QWEN2_MOE: "qwen2_moe", DEEPSEEK_V2: "deepseek_v2",
                 DEEPSEEK_V3: "deepseek_v3"}


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


# HF rope_scaling keys of each kind (transformers' validation lists) -> our RopeScaling field.
_ROPE_KEYS = {
    "default": {},
    "linear": {"factor": "factor"},
    "dynamic": {"factor": "factor"},
    "yarn": {"factor": "factor", "original_max_position_embeddings": "original_max_len",
             "attention_factor": "attention_factor", "beta_fast": "beta_fast",
             "beta_slow": "beta_slow", "mscale": "mscale", "mscale_all_dim": "mscale_all_dim",
             "truncate": "truncate"},
    "llama3": {"factor": "factor", "original_max_position_embeddings": "original_max_len",
               "low_freq_factor": "low_freq_factor", "high_freq_factor": "high_freq_factor"},
    "longrope": {"short_factor": "short_factor", "long_factor": "long_factor",
                 "original_max_position_embeddings": "original_max_len",
                 "attention_factor": "attention_factor", "factor": "factor"},
}
_ROPE_REQUIRED = {"linear": ("factor",), "dynamic": ("factor",), "yarn": ("factor",),
                  "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
                  "longrope": ("short_factor", "long_factor")}


def _rope(hf: dict[str, Any], where: str) -> tuple[float, RopeScaling]:
  """(rope_theta, scaling) from `rope_scaling` / `rope_parameters`, read as transformers reads them:
  the original context defaults to max_position_embeddings (a top-level
  original_max_position_embeddings wins), unset yarn betas are 32 / 1."""
  rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  kind = rope.pop("rope_type", None) or rope.get("type") or "default"
  rope.pop("type", None)
  theta = float(rope.pop("rope_theta", None) or hf.get("rope_theta") or 10000.0)
  partial = rope.pop("partial_rotary_factor", None) or hf.get("partial_rotary_factor") or 1.0
  if partial != 1.0:
    raise HFCheckpointError(f"{where}: partial_rotary_factor={partial} is not supported; RoPE on "
                            "the whole head (1.0) only")
  if kind not in _ROPE_KEYS:
    raise HFCheckpointError(f"{where}: RoPE scaling {kind!r} is not supported; supported: "
                            f"{', '.join(_ROPE_KEYS)}")
  keys = _ROPE_KEYS[kind]
  unknown = sorted(set(rope) - keys.keys())
  if unknown:   # transformers ignores them too, with the same warning
    logging.warning("%s: rope_scaling keys %s are not used by %r scaling (read: %s); ignored",
                    where, unknown, kind, ", ".join(keys) or "none")
  missing = [k for k in _ROPE_REQUIRED.get(kind, ()) if rope.get(k) is None]
  if missing:
    raise HFCheckpointError(f"{where}: {kind!r} RoPE scaling needs rope_scaling keys {missing}")
  values = {field: rope[key] for key, field in keys.items() if rope.get(key) is not None}
  if kind in NEEDS_ORIGINAL:
    values["original_max_len"] = int(hf.get("original_max_position_embeddings")
                                     or values.get("original_max_len")
                                     or hf.get("max_position_embeddings"))
  if kind == "yarn":   # transformers: `beta or default`, so a 0 means the default too
    values["beta_fast"] = values.get("beta_fast") or 32.0
    values["beta_slow"] = values.get("beta_slow") or 1.0
  if kind == "longrope" and "factor" not in values:   # transformers' implicit factor
    values["factor"] = hf["max_position_embeddings"] / values["original_max_len"]
  try:
    for field, value in values.items():   # JSON ints where floats are meant; lists as tuples
      kind_of = type(getattr(RopeScaling(), field))
      values[field] = tuple(map(float, value)) if kind_of is tuple else kind_of(value)
  except (TypeError, ValueError) as e:
    raise HFCheckpointError(f"{where}: rope_scaling {rope}: {e}") from None
  return theta, RopeScaling(kind=kind, **values)


def _rope_to_hf(s: RopeScaling) -> dict[str, Any] | None:
  """`rope_scaling` for config.json (None for plain RoPE): the kind's keys that change results."""
  if s.kind == "default":
    return None
  fields = {field: key for key, field in _ROPE_KEYS[s.kind].items()}
  out = {"rope_type": s.kind, "type": s.kind}   # older readers know only "type"
  for field, key in fields.items():
    value = getattr(s, field)
    if field in ("attention_factor", "mscale", "mscale_all_dim") and not value:
      continue   # unset: derived by the reader
    if field == "truncate" and value:
      continue   # the default; older readers do not know the key
    out[key] = list(value) if isinstance(value, tuple) else value
  return out


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


def rope_interleaved(hf: dict[str, Any]) -> bool:
  """Whether the checkpoint's RoPE dims are interleaved pairs (DeepSeek) rather than two halves."""
  arch = ARCHITECTURES.get((hf.get("architectures") or [None])[0], hf.get("model_type"))
  return arch == "deepseek_v2" or (arch == "deepseek_v3" and hf.get("rope_interleave", True))


def _deepseek(hf: dict[str, Any], arch: str, dtype: str | None, where: str) -> ModelConfig:
  """DeepSeek-V2 / V3: MLA attention, first_k_dense_replace dense layers, then DeepSeekMoE."""
  if hf.get("attention_bias"):
    raise HFCheckpointError(f"{where}: attention_bias=true is not supported (DeepSeek models have none)")
  v3 = arch == DEEPSEEK_V3
  theta, scaling = _rope(hf, where)
  heads, num_layers = hf["num_attention_heads"], hf["num_hidden_layers"]
  mla = MLAConfig(kv_lora_rank=hf["kv_lora_rank"], q_lora_rank=hf.get("q_lora_rank") or 0,
                  qk_nope_head_dim=hf["qk_nope_head_dim"], qk_rope_head_dim=hf["qk_rope_head_dim"],
                  v_head_dim=hf["v_head_dim"])
  first_dense = hf.get("first_k_dense_replace") or 0
  moe = None
  if first_dense < num_layers:
    if hf.get("moe_layer_freq", 1) != 1:
      raise HFCheckpointError(f"{where}: moe_layer_freq={hf['moe_layer_freq']} is not supported; "
                              "r1jax supports only the first k layers dense (moe_layer_freq=1)")
    scoring = hf.get("scoring_func", "sigmoid" if v3 else "softmax")
    if scoring != ("sigmoid" if v3 else "softmax"):
      raise HFCheckpointError(f"{where}: scoring_func={scoring!r} is not supported for {arch}")
    method = hf.get("topk_method", "noaux_tc" if v3 else "greedy")
    allowed = ("noaux_tc",) if v3 else ("greedy", "group_limited_greedy")
    if method not in allowed:
      raise HFCheckpointError(f"{where}: topk_method={method!r} is not supported for {arch}; "
                              f"allowed: {', '.join(allowed)}")
    grouped = method != "greedy"
    expert_ffn = hf["moe_intermediate_size"]
    moe = MoEConfig(
        num_experts=hf["n_routed_experts"], top_k=hf["num_experts_per_tok"],
        expert_ffn_dim=expert_ffn, shared_ffn_dim=(hf.get("n_shared_experts") or 0) * expert_ffn,
        first_dense_layers=first_dense, gating="sigmoid" if v3 else "softmax",
        # transformers' DeepSeek-V2 never renormalises the top-k weights, whatever the flag says.
        norm_top_k=bool(hf.get("norm_topk_prob", False)) and v3,
        routed_scale=float(hf.get("routed_scaling_factor") or 1.0),
        balance="aux_free" if v3 else "none", aux_loss_coef=0.0,
        n_group=(hf.get("n_group") or 1) if grouped else 1,
        topk_group=(hf.get("topk_group") or 1) if grouped else 1,
        group_score="top2_sum" if v3 else "max")
  return ModelConfig(
      vocab_size=hf["vocab_size"], dim=hf["hidden_size"], num_layers=num_layers, num_heads=heads,
      num_kv_heads=heads, head_dim=mla.qk_head_dim, ffn_dim=hf["intermediate_size"],
      rope_theta=theta, rope_scaling=scaling, norm_eps=hf.get("rms_norm_eps", 1e-6), qkv_bias=False,
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_seq_len=hf.get("max_position_embeddings", 4096), param_dtype=dtype or _dtype(hf),
      moe=moe, mla=mla, mtp_layers=(hf.get("num_nextn_predict_layers") or 0) if v3 else 0)


def from_hf(hf: dict[str, Any], *, dtype: str | None = None, where: str = "config.json") -> ModelConfig:
  """ModelConfig for a parsed HF config.json; `dtype` overrides the checkpoint's stored dtype."""
  arch = _architecture(hf, where)
  _check_full_attention(hf, where)
  if hf.get("hidden_act", "silu") != "silu":
    raise HFCheckpointError(f"{where}: hidden_act={hf['hidden_act']!r} is not supported; only 'silu'")
  if arch in (DEEPSEEK_V2, DEEPSEEK_V3):
    try:
      cfg = _deepseek(hf, arch, dtype, where)
    except KeyError as e:
      raise HFCheckpointError(f"{where}: missing key {e.args[0]!r} for {arch}") from None
    return _validated(cfg, where)
  try:
    theta, scaling = _rope(hf, where)
    heads = hf["num_attention_heads"]
    num_layers = hf["num_hidden_layers"]
    kwargs = dict(vocab_size=hf["vocab_size"], dim=hf["hidden_size"], num_layers=num_layers,
                  num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
                  head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
                  ffn_dim=hf["intermediate_size"], rope_theta=theta, rope_scaling=scaling,
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
  return _validated(ModelConfig(**kwargs), where)


def _validated(cfg: ModelConfig, where: str) -> ModelConfig:
  try:
    cfg.validate()
  except ConfigError as e:
    raise HFCheckpointError(f"{where}: {e.key}: {e.message}") from None
  return cfg


def _deepseek_problems(cfg: ModelConfig) -> list[str]:
  m, v3 = cfg.moe, deepseek_version(cfg) == 3
  problems = []
  if cfg.qkv_bias or cfg.tie_embeddings:
    problems.append(f"qkv_bias={cfg.qkv_bias}, tie_embeddings={cfg.tie_embeddings} (DeepSeek has neither)")
  if m is None:
    return problems
  if m.shared_gate or m.shared_ffn_dim % m.expert_ffn_dim:
    problems.append(f"moe.shared_ffn_dim={m.shared_ffn_dim}, moe.shared_gate={m.shared_gate} "
                    "(DeepSeek's shared experts are ungated, n_shared_experts x expert_ffn_dim)")
  if v3 and m.group_score != "top2_sum":
    problems.append(f"moe.group_score={m.group_score!r} (DeepSeek-V3 scores groups by 'top2_sum')")
  if not v3 and (m.norm_top_k or (m.n_group > 1 and m.group_score != "max")):
    problems.append(f"moe.norm_top_k={m.norm_top_k}, moe.group_score={m.group_score!r} (DeepSeek-V2 "
                    "routes by softmax without renormalising, groups scored by 'max')")
  if cfg.mtp_layers and not v3:
    problems.append(f"mtp_layers={cfg.mtp_layers} (only DeepSeek-V3 has MTP modules)")
  return problems


def deepseek_version(cfg: ModelConfig) -> int:
  """Which DeepSeek layout an MLA model exports as: V3 with sigmoid routing (or MTP), else V2."""
  return 3 if cfg.mtp_layers or (cfg.moe is not None and cfg.moe.gating == "sigmoid") or \
      cfg.moe is None else 2


def check_exportable(cfg: ModelConfig) -> None:
  """Raises if `cfg` uses a feature Qwen2 / Qwen2-MoE (or, with MLA, DeepSeek) cannot express."""
  if cfg.mla is not None:
    problems = _deepseek_problems(cfg)
    if problems:
      raise HFCheckpointError(f"cannot export as DeepSeek-V{deepseek_version(cfg)}: " + "; ".join(problems))
    return
  if cfg.mtp_layers:
    raise HFCheckpointError(f"cannot export as Qwen2: mtp_layers={cfg.mtp_layers} (Qwen2 has no MTP)")
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


def _to_deepseek(cfg: ModelConfig, dtype: str) -> dict[str, Any]:
  v3, mla, m = deepseek_version(cfg) == 3, cfg.mla, cfg.moe
  hf = {"architectures": [DEEPSEEK_V3 if v3 else DEEPSEEK_V2],
        "model_type": "deepseek_v3" if v3 else "deepseek_v2",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_heads, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": _rope_to_hf(cfg.rope_scaling),
        "attention_bias": False, "tie_word_embeddings": False, "torch_dtype": dtype, "use_cache": True,
        "kv_lora_rank": mla.kv_lora_rank, "q_lora_rank": mla.q_lora_rank or None,
        "qk_nope_head_dim": mla.qk_nope_head_dim, "qk_rope_head_dim": mla.qk_rope_head_dim,
        "v_head_dim": mla.v_head_dim, "first_k_dense_replace": cfg.num_dense_layers}
  if m is None:  # all layers dense; the MoE keys still need values
    m = MoEConfig(num_experts=1, top_k=1, expert_ffn_dim=1, gating="sigmoid" if v3 else "softmax")
  hf |= {"n_routed_experts": m.num_experts, "num_experts_per_tok": m.top_k,
         "moe_intermediate_size": m.expert_ffn_dim,
         "n_shared_experts": m.shared_ffn_dim // m.expert_ffn_dim, "norm_topk_prob": m.norm_top_k,
         "routed_scaling_factor": m.routed_scale, "n_group": m.n_group, "topk_group": m.topk_group,
         "scoring_func": m.gating, "moe_layer_freq": 1}
  if v3:
    hf |= {"topk_method": "noaux_tc", "rope_interleave": True,
           "num_nextn_predict_layers": cfg.mtp_layers}
  else:
    hf["topk_method"] = "group_limited_greedy" if m.n_group > 1 else "greedy"
  return hf


def to_hf(cfg: ModelConfig, *, dtype: str, bos_token_id=None, eos_token_id=None,
          pad_token_id=None) -> dict[str, Any]:
  """config.json contents for `cfg` (call :func:`check_exportable` first)."""
  ids = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id}
  if cfg.mla is not None:
    return _to_deepseek(cfg, dtype) | ids
  hf = {"architectures": [QWEN2 if cfg.moe is None else QWEN2_MOE],
        "model_type": "qwen2" if cfg.moe is None else "qwen2_moe",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": _rope_to_hf(cfg.rope_scaling),
        "tie_word_embeddings": cfg.tie_embeddings, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": cfg.num_layers, "attention_dropout": 0.0,
        "use_cache": True, "initializer_range": 0.02, "torch_dtype": dtype} | ids
  if cfg.moe is not None:
    m = cfg.moe
    hf |= {"num_experts": m.num_experts, "num_experts_per_tok": m.top_k,
           "moe_intermediate_size": m.expert_ffn_dim,
           "shared_expert_intermediate_size": m.shared_ffn_dim, "norm_topk_prob": m.norm_top_k,
           "decoder_sparse_step": 1, "mlp_only_layers": list(range(m.first_dense_layers)),
           "router_aux_loss_coef": m.aux_loss_coef, "output_router_logits": False,
           "qkv_bias": True}
  return hf
