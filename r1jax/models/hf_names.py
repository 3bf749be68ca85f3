"""Where each of our parameters lives in a Hugging Face Qwen2 / Qwen2-MoE checkpoint, and how it is laid out.

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


def tensor_maps(cfg: ModelConfig) -> list[TensorMap]:
  """Every HF-backed leaf of our params for `cfg` (all but `moe.router_bias`)."""
  maps = [TensorMap(("embed",), "model.embed_tokens.weight"),
          TensorMap(("final_norm",), "model.norm.weight")]
  if not cfg.tie_embeddings:
    maps.append(TensorMap(("lm_head",), "lm_head.weight", **_LINEAR))
  stacks = (("dense", range(0, cfg.num_dense_layers)),
            ("moe", range(cfg.num_dense_layers, cfg.num_layers)))
  for stack, layers in stacks:
    if not layers:
      continue
    for path, name, conv in _block(cfg, stack):
      experts = cfg.moe.num_experts if "{expert}" in name else 0
      maps.append(TensorMap((stack, *path), LAYER + name, layers, experts, **conv))
  return maps
