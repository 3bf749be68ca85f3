"""Where each of our parameters lives in a Hugging Face Qwen2 / Qwen2-MoE / DeepSeek-V2 / V3
checkpoint, and how it is laid out.

One :class:`TensorMap` per leaf of our parameter pytree: the HF tensor name (a template over the
HF layer index and, for routed experts, the expert index), which HF layers make up our stacked
leading axis, and the two per-slice conversions. HF stores `nn.Linear` weights as [out, in] with
heads flattened into the output; we keep [in, out] with heads as their own axes, so most maps are
a transpose plus a reshape. The router's selection bias (`router_bias`) has no HF counterpart: it
is zero on import and must be zero on export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from r1jax.models.config import ModelConfig

LAYER = "model.layers.{layer}."
# Tensors some exporters add that carry no weights of the model (recomputed RoPE tables).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _same(x):
  return x


def _transpose(x):
  return x.T


@dataclasses.dataclass(frozen=True)
class TensorMap:
  path: tuple[str, ...]                    # our leaf in the params pytree
  name: str                                # HF name; {layer} and {expert} are filled in
  layers: range | None = None              # HF layer of each slice of our leading axis
  experts: int = 0                         # > 0: a second stacked axis over routed experts
  to_ours: Callable = _same                # one HF tensor -> one slice of our leaf
  to_hf: Callable = _same                  # the inverse

  def names(self) -> list[list[str]] | list[str] | str:
    """HF names in stacking order: a name, [layer] names, or [layer][expert] names."""
    if self.layers is None:
      return self.name
    if not self.experts:
      return [self.name.format(layer=i) for i in self.layers]
    return [[self.name.format(layer=i, expert=j) for j in range(self.experts)] for i in self.layers]


def _heads_in(n, dh):
  """[n*dh, D] projection into heads <-> our [D, n, dh]."""
  return dict(to_ours=lambda w: w.T.reshape(w.shape[1], n, dh),
              to_hf=lambda x: x.reshape(x.shape[0], n * dh).T)


def _heads_bias(n, dh):
  return dict(to_ours=lambda b: b.reshape(n, dh), to_hf=lambda x: x.reshape(n * dh))


def _heads_out(h, dh):
  """[D, h*dh] output projection <-> our [h, dh, D]."""
  return dict(to_ours=lambda w: w.T.reshape(h, dh, w.shape[0]),
              to_hf=lambda x: x.reshape(h * dh, x.shape[-1]).T)


_LINEAR = dict(to_ours=_transpose, to_hf=_transpose)


def _swiglu(prefix: str, hf: str):
  """gate / up / down projections of one SwiGLU MLP under HF module path `hf`."""
  return [((*prefix, name), f"{hf}.{name}_proj.weight", _LINEAR) for name in ("gate", "up", "down")]


def _block(cfg: ModelConfig, kind: str):
  """(our path within one block, HF name after `model.layers.{layer}.`, conversion)."""
  h, kv, dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  entries = [(("attn_norm",), "input_layernorm.weight", {}),
             (("mlp_norm",), "post_attention_layernorm.weight", {}),
             (("attn", "q"), "self_attn.q_proj.weight", _heads_in(h, dh)),
             (("attn", "k"), "self_attn.k_proj.weight", _heads_in(kv, dh)),
             (("attn", "v"), "self_attn.v_proj.weight", _heads_in(kv, dh)),
             (("attn", "o"), "self_attn.o_proj.weight", _heads_out(h, dh))]
  if cfg.qkv_bias:
    entries += [(("attn", f"{p}_bias"), f"self_attn.{p}_proj.bias", _heads_bias(n, dh))
                for p, n in (("q", h), ("k", kv), ("v", kv))]
  if kind == "dense":
    return entries + _swiglu(("mlp",), "mlp")
  entries.append((("moe", "router"), "mlp.gate.weight", _LINEAR))
  entries += _swiglu(("moe", "experts"), "mlp.experts.{expert}")
  if cfg.moe.shared_ffn_dim:
    entries += _swiglu(("moe", "shared"), "mlp.shared_expert")
    if cfg.moe.shared_gate:
      entries.append((("moe", "shared_gate"), "mlp.shared_expert_gate.weight", _LINEAR))
  return entries


def _rope_order(rope: int, interleaved: bool):
  """Our RoPE dims are two halves (rotate-half); DeepSeek stores interleaved pairs. Returns the
  permutation taking the checkpoint's last `rope` dims to ours and its inverse (None: same)."""
  if not interleaved:
    return None, None
  order = np.concatenate([np.arange(0, rope, 2), np.arange(1, rope, 2)])
  return order, np.argsort(order)


def _permute_tail(x, order, rope):
  """Permutes the last `rope` entries of x's last axis (numpy arrays or abstract shapes)."""
  if order is None:
    return x
  n = x.shape[-1]
  return x[..., np.concatenate([np.arange(n - rope), n - rope + order])]


def _mla_heads_in(h, dqk, rope, interleaved):
  """[h*dqk, in] query projection <-> our [in, h, dqk] (RoPE dims last in each head)."""
  to, back = _rope_order(rope, interleaved)
  return dict(to_ours=lambda w: _permute_tail(w.T.reshape(w.shape[1], h, dqk), to, rope),
              to_hf=lambda x: _permute_tail(x, back, rope).reshape(x.shape[0], h * dqk).T)


def _kv_a(rope, interleaved):
  """[kv_lora_rank + rope, D] <-> our [D, kv_lora_rank + rope] (the RoPE key last)."""
  to, back = _rope_order(rope, interleaved)
  return dict(to_ours=lambda w: _permute_tail(w.T, to, rope),
              to_hf=lambda x: _permute_tail(x, back, rope).T)


def _mla_block(cfg: ModelConfig, kind: str, interleaved: bool):
  """DeepSeek-V2/V3 decoder layer: MLA, then a dense MLP or DeepSeekMoE (+ V3's selection bias)."""
  m, h = cfg.mla, cfg.num_heads
  entries = [(("attn_norm",), "input_layernorm.weight", {}),
             (("mlp_norm",), "post_attention_layernorm.weight", {}),
             (("attn", "kv_a"), "self_attn.kv_a_proj_with_mqa.weight", _kv_a(m.qk_rope_head_dim, interleaved)),
             (("attn", "kv_a_norm"), "self_attn.kv_a_layernorm.weight", {}),
             (("attn", "kv_b"), "self_attn.kv_b_proj.weight",
              _heads_in(h, m.qk_nope_head_dim + m.v_head_dim)),
             (("attn", "o"), "self_attn.o_proj.weight", _heads_out(h, m.v_head_dim))]
  q_in = _mla_heads_in(h, m.qk_head_dim, m.qk_rope_head_dim, interleaved)
  if m.q_lora_rank:
    entries += [(("attn", "q_a"), "self_attn.q_a_proj.weight", _LINEAR),
                (("attn", "q_a_norm"), "self_attn.q_a_layernorm.weight", {}),
                (("attn", "q_b"), "self_attn.q_b_proj.weight", q_in)]
  else:
    entries.append((("attn", "q"), "self_attn.q_proj.weight", q_in))
  if kind == "dense":
    return entries + _swiglu(("mlp",), "mlp")
  entries.append((("moe", "router"), "mlp.gate.weight", _LINEAR))
  if cfg.moe.gating == "sigmoid":
    entries.append((("moe", "router_bias"), "mlp.gate.e_score_correction_bias", {}))
  entries += _swiglu(("moe", "experts"), "mlp.experts.{expert}")
  if cfg.moe.shared_ffn_dim:
    entries += _swiglu(("moe", "shared"), "mlp.shared_experts")
  return entries


# DeepSeek-V3's MTP module i is HF layer num_layers + i: its own norms, projection and decoder
# layer, plus copies of the main embedding and output head (`mtp_shared_copies`).
_MTP = [(("enorm",), "enorm.weight", {}), (("hnorm",), "hnorm.weight", {}),
        (("eh_proj",), "eh_proj.weight", _LINEAR), (("norm",), "shared_head.norm.weight", {})]


def mtp_shared_copies(cfg: ModelConfig) -> list[tuple[str, tuple[str, ...], Callable]]:
  """(HF name, our leaf, to_hf) of the tensors each MTP layer stores as copies of main weights."""
  out = []
  for i in range(cfg.mtp_layers):
    prefix = LAYER.format(layer=cfg.num_layers + i)
    out += [(prefix + "embed_tokens.weight", ("embed",), _same),
            (prefix + "shared_head.head.weight", ("lm_head",), _transpose)]
  return out


def tensor_maps(cfg: ModelConfig, rope_interleaved: bool = True) -> list[TensorMap]:
  """Every HF-backed leaf of our params for `cfg` (all but a Qwen2-MoE `moe.router_bias`).

  `rope_interleaved`: whether a DeepSeek checkpoint lays RoPE dims out in pairs (config.json's
  `rope_interleave`, always for V2).
  """
  maps = [TensorMap(("embed",), "model.embed_tokens.weight"),
          TensorMap(("final_norm",), "model.norm.weight")]
  if not cfg.tie_embeddings:
    maps.append(TensorMap(("lm_head",), "lm_head.weight", **_LINEAR))
  block = _block if cfg.mla is None else (
      lambda cfg, kind: _mla_block(cfg, kind, rope_interleaved))
  stacks = (("dense", range(0, cfg.num_dense_layers)),
            ("moe", range(cfg.num_dense_layers, cfg.num_layers)))
  for stack, layers in stacks:
    if not layers:
      continue
    for path, name, conv in block(cfg, stack):
      experts = cfg.moe.num_experts if "{expert}" in name else 0
      maps.append(TensorMap((stack, *path), LAYER + name, layers, experts, **conv))
  if cfg.mtp_layers:
    layers = range(cfg.num_layers, cfg.num_layers + cfg.mtp_layers)
    kind = "dense" if cfg.moe is None else "moe"
    for path, name, conv in _MTP + [(("block", *p), n, c) for p, n, c in block(cfg, kind)]:
      experts = cfg.moe.num_experts if "{expert}" in name else 0
      maps.append(TensorMap(("mtp", *path), LAYER + name, layers, experts, **conv))
  return maps
