"""DeepSeekMoE feed-forward: top-k routed experts, shared experts, dropless grouped matmuls.

Routing picks the top-k experts by score (+ a bias used for selection only, the auxiliary-loss-
free balance of DeepSeek-V3), weights them by their softmax or sigmoid score, optionally
renormalised. Dispatch is dropless: token copies are sorted by expert and multiplied with
`jax.lax.ragged_dot`, one group per expert. When the current mesh has an `expert` axis of size
> 1, the experts are sharded over it inside `shard_map`; each device sends every token copy to
the device that owns its expert with a fixed-size `all_to_all` (sized for the worst case, so
nothing is ever dropped), computes, and sends the results back. Which mesh axes those are is
read from the logical-axis rules (`expert`, `expert_mlp`, `batch`), never named here.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from r1jax import mesh as mesh_lib
from r1jax.models import layers
from r1jax.models.config import MoEConfig


def route(params, x, cfg: MoEConfig):
  """x [N, D] -> (gate weights [N, k] f32, expert ids [N, k] int32, scores [N, E] f32)."""
  logits = jnp.einsum("nd,de->ne", x.astype(jnp.float32), params["router"].astype(jnp.float32))
  scores = jax.nn.softmax(logits, -1) if cfg.gating == "softmax" else jax.nn.sigmoid(logits)
  selection = scores + jax.lax.stop_gradient(params["router_bias"]).astype(jnp.float32)
  _, experts = jax.lax.top_k(selection, cfg.top_k)
  weights = jnp.take_along_axis(scores, experts, axis=-1)
  if cfg.norm_top_k:
    weights = weights / (jnp.sum(weights, -1, keepdims=True) + 1e-20)
  return weights * cfg.routed_scale, experts.astype(jnp.int32), scores


def _grouped_swiglu(experts, x, group_sizes, dtype):
  gate = jax.lax.ragged_dot(x, experts["gate"].astype(dtype), group_sizes)
  up = jax.lax.ragged_dot(x, experts["up"].astype(dtype), group_sizes)
  return jax.lax.ragged_dot(jax.nn.silu(gate) * up, experts["down"].astype(dtype), group_sizes)


def _routed(experts, x, weights, ids, *, num_experts, dtype, shards=1, expert_axis=None,
            tensor_axis=None):
  """Sorted, dropless expert computation for the tokens of one device (or of all, unsharded)."""
  n, d = x.shape
  k = ids.shape[1]
  local = num_experts // shards
  flat = ids.reshape(-1)
  order = jnp.argsort(flat, stable=True)                 # copies grouped by owner, then expert
  owner = (flat // local)[order]
  counts = jnp.bincount(flat // local, length=shards)
  slot = jnp.arange(n * k) - (jnp.cumsum(counts) - counts)[owner]
  send = jnp.zeros((shards, n * k, d), x.dtype).at[owner, slot].set(x[order // k])
  send_ids = jnp.full((shards, n * k), local, jnp.int32).at[owner, slot].set(flat[order] % local)
  if expert_axis is not None:
    send = jax.lax.all_to_all(send, expert_axis, 0, 0, tiled=True)
    send_ids = jax.lax.all_to_all(send_ids, expert_axis, 0, 0, tiled=True)
  recv, recv_ids = send.reshape(-1, d), send_ids.reshape(-1)
  order2 = jnp.argsort(recv_ids, stable=True)            # empty slots (id == local) sort last
  sizes = jnp.bincount(recv_ids, length=local + 1)[:local]
  valid = (jnp.arange(recv.shape[0]) < jnp.sum(sizes))[:, None]
  y = jnp.where(valid, _grouped_swiglu(experts, recv[order2], sizes, dtype), 0)
  y = jnp.zeros_like(y).at[order2].set(y)
  if tensor_axis is not None:
    y = jax.lax.psum(y, tensor_axis)
  y = y.reshape(shards, n * k, d)
  if expert_axis is not None:
    y = jax.lax.all_to_all(y, expert_axis, 0, 0, tiled=True)
  copies = jnp.zeros((n * k, d), y.dtype).at[order].set(y[owner, slot])
  return jnp.einsum("nkd,nk->nd", copies.reshape(n, k, d), weights.astype(y.dtype))


def _expert_parallel(experts, x, weights, ids, *, num_experts, dtype):
  mesh = mesh_lib.current_mesh()
  plain = functools.partial(_routed, experts, x, weights, ids, num_experts=num_experts, dtype=dtype)
  if mesh is None:
    return plain()
  rules = mesh_lib.current_rules()
  # Inside shard_map each device holds its experts' slice of the FFN dim, whole along embed.
  up = mesh_lib.logical_spec(("expert", None, "expert_mlp"), experts["gate"].shape, mesh, rules)
  down = mesh_lib.logical_spec(("expert", "expert_mlp", None), experts["down"].shape, mesh, rules)
  e_axis, t_axis = up[0], up[2]
  if e_axis is None and t_axis is None:
    return plain()
  token_spec = mesh_lib.logical_spec(("batch", None), x.shape, mesh, rules)
  shards = math.prod(mesh.shape[a] for a in ((e_axis,) if isinstance(e_axis, str) else e_axis or ()))
  in_specs = ({"gate": up, "up": up, "down": down}, token_spec, token_spec, token_spec)
  fn = functools.partial(_routed, num_experts=num_experts, dtype=dtype, expert_axis=e_axis,
                         shards=shards, tensor_axis=t_axis)
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=token_spec,
                       check_vma=False)(experts, x, weights, ids)


def moe_ffn(params, x, cfg: MoEConfig, dtype):
  """x [B, T, D] -> (y [B, T, D], aux) with aux = {expert_load [E], aux_loss scalar}."""
  b, t, d = x.shape
  flat = x.reshape(b * t, d)
  weights, ids, scores = route(params, flat, cfg)
  y = _expert_parallel(params["experts"], flat, weights, ids, num_experts=cfg.num_experts,
                       dtype=dtype).reshape(b, t, d)
  if cfg.shared_ffn_dim:
    shared = layers.swiglu(params["shared"], x, dtype)
    if cfg.shared_gate:
      shared = shared * jax.nn.sigmoid(jnp.einsum("btd,do->bto", x, params["shared_gate"].astype(dtype)))
    y = y + shared
  load = jnp.bincount(ids.reshape(-1), length=cfg.num_experts).astype(jnp.float32)
  aux_loss = cfg.num_experts * jnp.sum(load / ids.size * jnp.mean(scores, 0))
  return y.astype(x.dtype), {"expert_load": load, "aux_loss": aux_loss}


def balance_bias_update(router_bias, expert_load, rate):
  """Aux-loss-free balance: raise the bias of under-loaded experts, lower the over-loaded."""
  mean = jnp.mean(expert_load, axis=-1, keepdims=True)
  return router_bias + rate * jnp.sign(mean - expert_load)
