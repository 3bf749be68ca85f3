"""Analytic per-device counts for a plan: bytes of state, activations and KV cache, and FLOPs.

These are computed by hand from the model shape, the dtypes and the mesh (each dimension divided
by the mesh axes its logical rule shards it over, as :func:`r1jax.mesh.logical_spec` decides),
independently of XLA, so the planner can check XLA's compiled figures against them. Activation
bytes model full rematerialisation as the layer inputs saved by the layer scan plus the largest
working set of one layer's recomputation or of the vocabulary projection, whichever is larger;
attention works in [BLOCK x BLOCK] tiles and the vocabulary projection in CHUNK positions.
The sampler is counted in its layout (`r1jax.rollout.sampler.layout_rules`).
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
from r1jax.models.layers import BLOCK
from r1jax.rl.logprobs import CHUNK
from r1jax.rl.optim import FROZEN
from r1jax.rollout.sampler import layout_rules


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
  reference: int          # the reference policy: weight matrices in the compute dtype


def _is_matrix(path) -> bool:
  return not str(getattr(path[-1], "key", path[-1])).endswith(("norm", "bias"))


def state_bytes(cfg: ModelConfig, mesh: Mesh, rules) -> StateBytes:
  """Params (param dtype: the master weights), AdamW mu and nu (param dtype, frozen leaves
  excluded), gradients (the float32 accumulator plus one micro-batch's gradient in the param
  dtype) and the reference (matrices in the compute dtype), all sharded by the rules."""
  abstract = jax.eval_shape(lambda k: models.init(cfg, k), jax.random.key(0))
  axes = jax.tree_util.tree_leaves_with_path(models.param_axes(cfg),
                                             is_leaf=lambda x: isinstance(x, tuple))
  params = opt = grads = count = ref = 0
  for (path, ax), leaf in zip(axes, jax.tree.leaves(abstract)):
    n = local_size(ax, leaf.shape, mesh, rules)
    width = np.dtype(leaf.dtype).itemsize
    count += math.prod(leaf.shape)
    params += n * width
    grads += n * (4 + width)
    ref += n * (np.dtype(cfg.compute_dtype).itemsize if _is_matrix(path) else width)
    if str(getattr(path[-1], "key", path[-1])) not in FROZEN:
      opt += 2 * n * width
  return StateBytes(params, opt, grads, count, ref)


@dataclasses.dataclass(frozen=True)
class Activations:
  saved_layer_inputs: int
  prompt_cache: int
  attention: int          # one layer's blockwise attention: score tiles, f32 output and dq
  mlp_hidden: int
  logits: int             # one chunk's [rows, CHUNK, V] float32 logits, log-softmax, gradient
  total: int


def cache_width(cfg: ModelConfig, mesh: Mesh, rules) -> int:
  """Cached elements per token and layer on one device: K and V of the local KV heads, or MLA's
  latent plus RoPE key (one copy per token, not split over heads)."""
  if cfg.mla is not None:
    return cfg.mla.kv_lora_rank + cfg.mla.qk_rope_head_dim
  return 2 * local_size(("kv_heads",), (cfg.num_kv_heads,), mesh, rules) * cfg.head_dim


def _attention_params(cfg: ModelConfig) -> int:
  m, d, h = cfg.mla, cfg.dim, cfg.num_heads
  if m is None:
    return d * cfg.head_dim * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
  q = d * m.q_lora_rank + m.q_lora_rank * h * m.qk_head_dim if m.q_lora_rank else d * h * m.qk_head_dim
  return (q + d * (m.kv_lora_rank + m.qk_rope_head_dim)
          + m.kv_lora_rank * h * (m.qk_nope_head_dim + m.v_head_dim) + h * m.v_head_dim * d)


def train_activations(cfg: ModelConfig, mesh: Mesh, rules, *, prompts: int, rows: int,
                      prompt_len: int, completion_len: int, micro_batches: int) -> Activations:
  """Per-device activation bytes of one micro-batch of the train step (see the module doc)."""
  c = np.dtype(cfg.compute_dtype).itemsize
  bp = -(-local_rows(prompts, mesh, rules) // micro_batches)
  b = -(-local_rows(rows, mesh, rules) // micro_batches)
  t, p, l = completion_len, prompt_len, cfg.num_layers
  heads = local_size(("act_heads",), (cfg.num_heads,), mesh, rules)
  vocab = local_size(("act_vocab",), (cfg.vocab_size,), mesh, rules)
  ffn = cfg.ffn_dim if cfg.moe is None else max(cfg.ffn_dim, cfg.moe.expert_ffn_dim * cfg.moe.top_k
                                                 + cfg.moe.shared_ffn_dim)
  ffn = local_size(("act_mlp",), (ffn,), mesh, rules)
  tokens = b * t + bp * p
  per_layer = {"none": 4 * cfg.dim + 3 * ffn, "dots": 2 * cfg.dim + 3 * ffn, "full": cfg.dim}
  saved = l * tokens * per_layer[cfg.remat] * c
  if cfg.remat == "none":   # every layer also keeps its attention probabilities
    saved += l * (b * heads * t * (p + t) + bp * heads * p * p) * 4
  prompt_cache = l * bp * p * cache_width(cfg, mesh, rules) * c
  # Four live [BLOCK x BLOCK] float32 tiles (scores, probabilities, their gradients) per row and
  # head, and the float32 output, its gradient and dq over the whole sequence.
  tile = 4 * 4 * min(BLOCK, t + p) ** 2
  attention = max(b * heads * (tile + 3 * 4 * t * cfg.head_dim),
                  bp * heads * (tile + 3 * 4 * p * cfg.head_dim))
  mlp = 4 * tokens * ffn * c
  logits = 3 * 4 * b * min(CHUNK, t) * vocab
  total = saved + prompt_cache + max(attention + mlp, logits)
  return Activations(saved, prompt_cache, attention, mlp, logits, total)


def rollout_bytes(cfg: ModelConfig, mesh: Mesh, rules, *, prompts: int, samples: int,
                  prompt_len: int, new_tokens: int, cache_dtype: str | None) -> dict[str, int]:
  """The sampler's per-device buffers in its layout (`r1jax.rollout.sampler.layout_rules`): the KV
  cache of every row's generated tokens, the prompts' cache, tokens + log-probs, the decode
  weights (the compute-dtype copy, tensor-parallel) and the prefill's last-position logits."""
  rules = layout_rules(cfg, mesh, rules)
  c = np.dtype(cache_dtype or cfg.compute_dtype).itemsize
  rows, bp = local_rows(prompts * samples, mesh, rules), local_rows(prompts, mesh, rules)
  per_token = cfg.num_layers * cache_width(cfg, mesh, rules) * c
  vocab = local_size(("act_vocab",), (cfg.vocab_size,), mesh, rules)
  return {"generated": rows * new_tokens * per_token, "prompt": bp * prompt_len * per_token,
          "outputs": rows * new_tokens * 8,
          # gathered whole along embed for the call, split only tensor-parallel
          "decode_weights": state_bytes(cfg, mesh, {**dict(rules), "embed": ()}).reference,
          "prefill_logits": 2 * bp * vocab * 4}


def matmul_params(cfg: ModelConfig) -> int:
  """Parameters that multiply each token (embedding lookup excluded, MoE counts active experts)."""
  attn = _attention_params(cfg)
  dense = 3 * cfg.dim * cfg.ffn_dim
  moe = dense if cfg.moe is None else 3 * cfg.dim * (cfg.moe.expert_ffn_dim * cfg.moe.top_k
                                                     + cfg.moe.shared_ffn_dim)
  return (cfg.num_layers * attn + cfg.num_dense_layers * dense + cfg.num_moe_layers * moe
          + cfg.dim * cfg.vocab_size)


def train_flops(cfg: ModelConfig, *, prompt_tokens: int, completion_tokens: int, rows: int,
                prompt_len: int) -> float:
  """Global FLOPs of one train step: 6 N per token (8 N with full remat) plus attention, whose
  scores this model computes over the full [T, P+T] rectangle (masking, not skipping); the
  blockwise backward recomputes the scores once more (one pass more)."""
  passes = 8 if cfg.remat == "full" else 6
  n = matmul_params(cfg)
  t = completion_tokens / rows
  attn = (passes + 1) * cfg.num_layers * cfg.num_heads * cfg.head_dim * (
      completion_tokens * (prompt_len + t) + prompt_tokens * prompt_len)
  return passes * n * (prompt_tokens + completion_tokens) + attn


def decode_flops(cfg: ModelConfig, *, rows: int, prompt_len: int, new_tokens: int) -> float:
  """Global FLOPs of decoding `new_tokens` steps for `rows` rows: 2 N per token plus attention
  over the prompt and all cache slots (the sampler reads the whole cache every step; on a mesh
  its queries are grouped by KV head: models.layers._attend_step_grouped)."""
  n = matmul_params(cfg)
  attn = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * (prompt_len + new_tokens)
  return rows * new_tokens * (2 * n + attn)


def sampled_decode_flops(cfg: ModelConfig, *, rows: int, prompt_len: int, new_tokens: int,
                         lengths: str) -> float:
  """Global FLOPs of `rows` rows decoded by a sampler that attends only over the prompt and the
  filled cache positions: 2 N per token written plus attention over what is filled, for every
  row to the budget ("budget") or lengths spread evenly from 0 to it ("uniform")."""
  t = new_tokens
  tokens, filled = (t, t * t / 2) if lengths == "budget" else (t / 2, t * t / 6)
  per_position = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim
  return rows * (tokens * (2 * matmul_params(cfg) + per_position * prompt_len)
                 + filled * per_position)
