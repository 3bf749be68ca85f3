"""Analytic per-device counts for a plan: bytes of state, activations and KV cache, and FLOPs.

These are computed by hand from the model shape, the dtypes and the mesh (each dimension divided
by the mesh axes its logical rule shards it over, as :func:`r1jax.mesh.logical_spec` decides),
independently of XLA, so the planner can check XLA's compiled figures against them. Activation
bytes model full rematerialisation as the layer inputs saved by the layer scan plus the largest
working set of one layer's recomputation or of the vocabulary projection, whichever is larger.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import Mesh

from r1jax import models
from r1jax.mesh import logical_spec
from r1jax.models import ModelConfig
from r1jax.rl.optim import FROZEN


def shard_factor(axes, shape, mesh: Mesh, rules) -> list[int]:
  """How many ways each dimension of an array with logical `axes` is split on `mesh`."""
  spec = logical_spec(axes, shape, mesh, rules)
  return [math.prod(mesh.shape[a] for a in ((p,) if isinstance(p, str) else (p or ())))
          for p in spec]


def local_size(axes, shape, mesh, rules) -> int:
  return math.prod(-(-d // f) for d, f in zip(shape, shard_factor(axes, shape, mesh, rules)))


def local_rows(n: int, mesh: Mesh, rules) -> int:
  """Rows of a batch-leading array of n rows held by one device."""
  return local_size(("batch",), (n,), mesh, rules)


@dataclasses.dataclass(frozen=True)
class StateBytes:
  params: int
  optimizer: int
  gradients: int
  num_params: int


def state_bytes(cfg: ModelConfig, mesh: Mesh, rules) -> StateBytes:
  """Params (param dtype), AdamW mu and nu (param dtype, frozen leaves excluded) and gradients
  (the float32 accumulator plus one micro-batch's gradient in the param dtype)."""
  abstract = jax.eval_shape(lambda k: models.init(cfg, k), jax.random.key(0))
  axes = jax.tree_util.tree_leaves_with_path(models.param_axes(cfg),
                                             is_leaf=lambda x: isinstance(x, tuple))
  params = opt = grads = count = 0
  for (path, ax), leaf in zip(axes, jax.tree.leaves(abstract)):
    n = local_size(ax, leaf.shape, mesh, rules)
    width = np.dtype(leaf.dtype).itemsize
    count += math.prod(leaf.shape)
    params += n * width
    grads += n * (4 + width)
    if str(getattr(path[-1], "key", path[-1])) not in FROZEN:
      opt += 2 * n * width
  return StateBytes(params, opt, grads, count)


@dataclasses.dataclass(frozen=True)
class Activations:
  saved_layer_inputs: int
  prompt_cache: int
  attention_scores: int   # one layer's [rows, heads, T, P+T] float32 scores, probs and grads
  mlp_hidden: int
  logits: int             # [rows, T, V] float32 logits, log-softmax and their gradient
  total: int


def train_activations(cfg: ModelConfig, mesh: Mesh, rules, *, prompts: int, rows: int,
                      prompt_len: int, completion_len: int, micro_batches: int) -> Activations:
  """Per-device activation bytes of one micro-batch of the train step (see the module doc)."""
  c = np.dtype(cfg.compute_dtype).itemsize
  bp = -(-local_rows(prompts, mesh, rules) // micro_batches)
  b = -(-local_rows(rows, mesh, rules) // micro_batches)
  t, p, l = completion_len, prompt_len, cfg.num_layers
  heads = local_size(("act_heads",), (cfg.num_heads,), mesh, rules)
  kv = local_size(("kv_heads",), (cfg.num_kv_heads,), mesh, rules)
  vocab = local_size(("act_vocab",), (cfg.vocab_size,), mesh, rules)
  ffn = cfg.ffn_dim if cfg.moe is None else max(cfg.ffn_dim, cfg.moe.expert_ffn_dim * cfg.moe.top_k
                                                 + cfg.moe.shared_ffn_dim)
  ffn = local_size(("act_mlp",), (ffn,), mesh, rules)
  tokens = b * t + bp * p
  per_layer = {"none": 4 * cfg.dim + 3 * ffn, "dots": 2 * cfg.dim + 3 * ffn, "full": cfg.dim}
  saved = l * tokens * per_layer[cfg.remat] * c
  if cfg.remat == "none":   # every layer also keeps its attention probabilities
    saved += l * (b * heads * t * (p + t) + bp * heads * p * p) * 4
  prompt_cache = 2 * l * bp * p * kv * cfg.head_dim * c
  scores = 3 * 4 * max(b * heads * t * (p + t), bp * heads * p * p)
  mlp = 4 * tokens * ffn * c
  logits = 3 * 4 * (b * t + bp * p) * vocab
  total = saved + prompt_cache + max(scores + mlp, logits)
  return Activations(saved, prompt_cache, scores, mlp, logits, total)


def rollout_bytes(cfg: ModelConfig, mesh: Mesh, rules, *, prompts: int, samples: int,
                  prompt_len: int, new_tokens: int, cache_dtype: str | None) -> dict[str, int]:
  """The sampler's per-device buffers: the KV cache of every row's generated tokens, the prompts'
  cache, tokens + log-probs, and two workspace terms seen in XLA's buffer assignment: the
  weights gathered whole along the fsdp/data axes (XLA keeps each layer's gathered copy, in the
  param dtype, across the decode loop) and the prefill's [prompts, P, vocab] float32 logits."""
  c = np.dtype(cache_dtype or cfg.compute_dtype).itemsize
  kv = local_size(("kv_heads",), (cfg.num_kv_heads,), mesh, rules)
  rows, bp = local_rows(prompts * samples, mesh, rules), local_rows(prompts, mesh, rules)
  per_token = 2 * cfg.num_layers * kv * cfg.head_dim * c
  model_only = [(k, tuple(a for a in v if a in ("tensor", "expert"))) for k, v in
                (rules.items() if isinstance(rules, dict) else rules)]
  abstract = jax.eval_shape(lambda k: models.init(cfg, k), jax.random.key(0))
  axes = jax.tree.leaves(models.param_axes(cfg), is_leaf=lambda x: isinstance(x, tuple))
  gathered = sum(local_size(ax, leaf.shape, mesh, model_only) * np.dtype(leaf.dtype).itemsize
                 for ax, leaf in zip(axes, jax.tree.leaves(abstract)))
  vocab = local_size(("act_vocab",), (cfg.vocab_size,), mesh, rules)
  return {"generated": rows * new_tokens * per_token, "prompt": bp * prompt_len * per_token,
          "outputs": rows * new_tokens * 8, "gathered_weights": gathered,
          "prefill_logits": 2 * bp * prompt_len * vocab * 4}


def matmul_params(cfg: ModelConfig) -> int:
  """Parameters that multiply each token (embedding lookup excluded, MoE counts active experts)."""
  attn = cfg.dim * cfg.head_dim * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
  dense = 3 * cfg.dim * cfg.ffn_dim
  moe = dense if cfg.moe is None else 3 * cfg.dim * (cfg.moe.expert_ffn_dim * cfg.moe.top_k
                                                     + cfg.moe.shared_ffn_dim)
  return (cfg.num_layers * attn + cfg.num_dense_layers * dense + cfg.num_moe_layers * moe
          + cfg.dim * cfg.vocab_size)


def train_flops(cfg: ModelConfig, *, prompt_tokens: int, completion_tokens: int, rows: int,
                prompt_len: int) -> float:
  """Global FLOPs of one train step: 6 N per token (8 N with full remat) plus attention, whose
  scores this model computes over the full [T, P+T] rectangle (masking, not skipping)."""
  passes = 8 if cfg.remat == "full" else 6
  n = matmul_params(cfg)
  t = completion_tokens / rows
  attn = passes * cfg.num_layers * cfg.num_heads * cfg.head_dim * (
      completion_tokens * (prompt_len + t) + prompt_tokens * prompt_len)
  return passes * n * (prompt_tokens + completion_tokens) + attn


def decode_flops(cfg: ModelConfig, *, rows: int, prompt_len: int, new_tokens: int) -> float:
  """Global FLOPs of decoding `new_tokens` steps for `rows` rows: 2 N per token plus attention
  over the prompt and all cache slots (the sampler reads the whole cache every step, and widens
  each query head to KV x head_dim: see models.layers._attend_one_query)."""
  n = matmul_params(cfg)
  attn = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * (
      prompt_len + cfg.num_kv_heads * new_tokens)
  return rows * new_tokens * (2 * n + attn)
