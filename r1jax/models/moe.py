"""DeepSeekMoE feed-forward: top-k routed experts, shared experts, dropless grouped matmuls.

Routing picks the top-k experts by score (+ a bias used for selection only, the auxiliary-loss-
free balance of DeepSeek-V3), optionally only inside each token's best `topk_group` of `n_group`
expert groups (V3's node-limited routing), and weights them by their softmax or sigmoid score,
optionally renormalised and scaled. With routing replay the expert ids come from the sampler. Dispatch is dropless: token copies are sorted by expert and multiplied with
`jax.lax.ragged_dot`, one group per expert. When the current mesh has an `expert` axis of size
> 1 (inside a node or across nodes), the experts are sharded over it inside `shard_map`; each
device sends its token copies to the devices that own their experts with fixed-size
`all_to_all`s of at most `capacity_factor` x the balanced share per owner, in as many rounds as
the busiest owner needs (dropless; see `_routed`), computes, and sends the results back. Expert
counts that do not divide the expert mesh axes are an error, never silently replicated. Which
mesh axes those are is read from the logical-axis rules (`expert`, `expert_mlp`, `batch`), never
named here. With redundant experts (`expert_placement`) each device also holds copies of hot
experts, and a hot expert's token copies are split between its copies.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from r1jax import mesh as mesh_lib
from r1jax.models import layers
from r1jax.models.config import MoEConfig


def _group_limit(selection, cfg: MoEConfig):
  """Keeps only the experts of each token's `topk_group` best groups (node-limited routing)."""
  if cfg.n_group == 1:
    return selection
  n, e = selection.shape
  grouped = selection.reshape(n, cfg.n_group, e // cfg.n_group)
  if cfg.group_score == "max":                                        # DeepSeek-V2
    group_score = jnp.max(grouped, -1)
  else:                                                              # DeepSeek-V3
    group_score = jnp.sum(jax.lax.top_k(grouped, 2)[0], -1)          # [N, groups]
  _, best = jax.lax.top_k(group_score, cfg.topk_group)
  keep = jnp.zeros((n, cfg.n_group), bool).at[jnp.arange(n)[:, None], best].set(True)
  return jnp.where(keep[:, :, None], grouped, -jnp.inf).reshape(n, e)


def route(params, x, cfg: MoEConfig, replay_ids=None):
  """x [N, D] -> (gate weights [N, k] f32, expert ids [N, k] int32, scores [N, E] f32, fresh ids).

  With `replay_ids` [N, k] the experts are those (recorded by the sampler), weighted by this
  forward's scores; `fresh ids` are always the ones this forward's router would pick.
  """
  logits = jnp.einsum("nd,de->ne", x.astype(jnp.float32), params["router"].astype(jnp.float32))
  scores = jax.nn.softmax(logits, -1) if cfg.gating == "softmax" else jax.nn.sigmoid(logits)
  selection = scores + jax.lax.stop_gradient(params["router_bias"]).astype(jnp.float32)
  _, fresh = jax.lax.top_k(_group_limit(selection, cfg), cfg.top_k)
  fresh = fresh.astype(jnp.int32)
  experts = fresh if replay_ids is None else replay_ids.astype(jnp.int32)
  weights = jnp.take_along_axis(scores, experts, axis=-1)
  if cfg.norm_top_k:
    weights = weights / (jnp.sum(weights, -1, keepdims=True) + 1e-20)
  return weights * cfg.routed_scale, experts, scores, fresh


def _grouped_swiglu(experts, x, group_sizes, dtype):
  gate = jax.lax.ragged_dot(x, experts["gate"].astype(dtype), group_sizes)
  up = jax.lax.ragged_dot(x, experts["up"].astype(dtype), group_sizes)
  return jax.lax.ragged_dot(jax.nn.silu(gate) * up, experts["down"].astype(dtype), group_sizes)


def _expert_compute(experts, recv, recv_ids, local, dtype, tensor_axis):
  """The owner's side: copies [M, D] with local expert ids [M] (== local: an empty slot)."""
  order = jnp.argsort(recv_ids, stable=True)             # empty slots sort last
  sizes = jnp.bincount(recv_ids, length=local + 1)[:local]
  valid = (jnp.arange(recv.shape[0]) < jnp.sum(sizes))[:, None]
  y = jnp.where(valid, _grouped_swiglu(experts, recv[order], sizes, dtype), 0)
  y = jnp.zeros_like(y).at[order].set(y)
  if tensor_axis is not None:
    y = jax.lax.psum(y, tensor_axis)
  return y


def _to_copies(ids, replicas, copies):
  """Expert ids [n, k] -> the physical slots of their copies: the copies of one expert on this
  device go to its replicas in turn, so a hot expert's tokens split evenly between them."""
  flat = ids.reshape(-1)
  order = jnp.argsort(flat, stable=True)
  ranked = flat[order]
  first = jnp.searchsorted(ranked, ranked, side="left")          # where each expert's run starts
  rank = jnp.zeros_like(flat).at[order].set(jnp.arange(flat.shape[0]) - first)
  return replicas[flat, rank % copies[flat]].reshape(ids.shape)


def _routed(experts, x, weights, ids, replicas=None, copies=None, *, num_experts, dtype, shards=1,
            expert_axis=None, tensor_axis=None, capacity_factor=0.0):
  """Sorted, dropless expert computation for the tokens of one device (or of all, unsharded).

  Token copies are sent to their expert's owner in rounds of at most `capacity` copies per
  owner (`capacity_factor` x the balanced share n*k/shards; 0: n*k, one round, the worst case).
  Rounds run only while some device still has copies left (a psum'd predicate), so nothing is
  dropped and balanced routing costs one round; each round is rematerialised in the backward
  pass, so no buffer ever has the worst-case size shards x n*k.

  With redundant experts (`replicas` [E, R], `copies` [E] of a `expert_placement.Placement`),
  `experts` and `num_experts` are the physical slots and each copy goes to one of its expert's
  replicas.
  """
  n, d = x.shape
  k = ids.shape[1]
  if replicas is not None:
    ids = _to_copies(ids, replicas, copies)
  local = num_experts // shards
  flat = ids.reshape(-1)
  order = jnp.argsort(flat, stable=True)                 # copies grouped by owner, then expert
  owner = (flat // local)[order]
  counts = jnp.bincount(flat // local, length=shards)
  slot = jnp.arange(n * k) - (jnp.cumsum(counts) - counts)[owner]
  sorted_x, sorted_ids = x[order // k], flat[order] % local
  capacity = n * k if capacity_factor <= 0 or shards == 1 else min(
      n * k, max(8, -(-int(math.ceil(capacity_factor * n * k / shards)) // 8) * 8))
  max_rounds = -(-n * k // capacity)
  busiest = jnp.max(counts)
  for axis in (expert_axis, tensor_axis):
    if axis is not None:
      busiest = jax.lax.pmax(busiest, axis)

  def one_round(r):
    """Results of the copies in slots [r * capacity, (r + 1) * capacity) of their owner; 0
    elsewhere. Its inputs are shared by all rounds, so its rematerialisation saves nothing per
    round."""
    pos = slot - r * capacity
    mine = (pos >= 0) & (pos < capacity)
    at = jnp.where(mine, pos, capacity)                  # out of range: dropped by the scatter
    send = jnp.zeros((shards, capacity, d), x.dtype).at[owner, at].set(sorted_x, mode="drop")
    send_ids = jnp.full((shards, capacity), local, jnp.int32).at[owner, at].set(sorted_ids,
                                                                                 mode="drop")
    if expert_axis is not None:
      send = jax.lax.all_to_all(send, expert_axis, 0, 0, tiled=True)
      send_ids = jax.lax.all_to_all(send_ids, expert_axis, 0, 0, tiled=True)
    y = _expert_compute(experts, send.reshape(-1, d), send_ids.reshape(-1), local, dtype,
                        tensor_axis).reshape(shards, capacity, d)
    if expert_axis is not None:
      y = jax.lax.all_to_all(y, expert_axis, 0, 0, tiled=True)
    return jnp.where(mine[:, None], y[owner, jnp.minimum(at, capacity - 1)], 0)

  if max_rounds == 1:
    out = one_round(0)
  else:
    # Unrolled, each round its own (skippable) conditional whose result is summed: no round's
    # output is an input of the next, so the backward pass keeps no per-round buffers.
    skip = lambda r: jnp.zeros((n * k, d), x.dtype)
    out = sum(jax.lax.cond(r * capacity < busiest, jax.checkpoint(one_round), skip, r)
              for r in range(max_rounds))
  copies = jnp.zeros((n * k, d), out.dtype).at[order].set(out)
  return jnp.einsum("nkd,nk->nd", copies.reshape(n, k, d), weights.astype(out.dtype))


def _expert_parallel(experts, x, weights, ids, *, num_experts, dtype, capacity_factor=0.0,
                     placement=None):
  mesh = mesh_lib.current_mesh()
  tables = ()
  if placement is not None:   # the physical slots: each device's own experts, then its copies
    slots = jnp.maximum(jnp.asarray(placement.slots).reshape(-1), 0)   # an empty slot: unused
    experts = jax.tree.map(lambda w: w[slots], experts)
    tables = (jnp.asarray(placement.replicas), jnp.asarray(placement.copies))
    num_experts = placement.slots.size
  plain = functools.partial(_routed, experts, x, weights, ids, *tables, num_experts=num_experts,
                            dtype=dtype)
  if mesh is None:
    return plain()
  rules = mesh_lib.current_rules()
  wanted = tuple(a for a in rules.get("expert", ()) if mesh.shape.get(a, 1) > 1)
  wanted_size = math.prod(mesh.shape[a] for a in wanted)
  if num_experts % wanted_size:
    raise ValueError(f"moe.num_experts={num_experts} does not divide over the expert mesh axes "
                     f"{wanted} (size {wanted_size}); choose a mesh whose expert axes multiply to a "
                     f"divisor of {num_experts}")
  # Inside shard_map each device holds its experts' slice of the FFN dim, whole along embed.
  up = mesh_lib.logical_spec(("expert", None, "expert_mlp"), experts["gate"].shape, mesh, rules)
  down = mesh_lib.logical_spec(("expert", "expert_mlp", None), experts["down"].shape, mesh, rules)
  e_axis, t_axis = up[0], up[2]
  if e_axis is None and t_axis is None:
    return plain()
  token_spec = mesh_lib.logical_spec(("batch", None), x.shape, mesh, rules)
  shards = math.prod(mesh.shape[a] for a in ((e_axis,) if isinstance(e_axis, str) else e_axis or ()))
  if placement is not None and placement.shards != shards:
    raise ValueError(f"expert placement for {placement.shards} devices; the expert mesh axes "
                     f"{e_axis} have {shards}")
  replicated = (PartitionSpec(),) * len(tables)
  in_specs = ({"gate": up, "up": up, "down": down}, token_spec, token_spec, token_spec,
              *replicated)
  fn = functools.partial(_routed, num_experts=num_experts, dtype=dtype, expert_axis=e_axis,
                         shards=shards, tensor_axis=t_axis, capacity_factor=capacity_factor)
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=token_spec,
                       check_vma=False)(experts, x, weights, ids, *tables)


def moe_ffn(params, x, cfg: MoEConfig, dtype, replay_ids=None, placement=None):
  """x [B, T, D] -> (y [B, T, D], aux).

  placement: an `expert_placement.Placement` (redundant copies of hot experts over the expert
  mesh axes); the output is the same, the tokens per device fewer on the busiest.

  aux: expert_load [E], aux_loss scalar, expert_ids [B, T, k] (the experts used), and
  replay_mismatch, the share of router decisions this forward would have made differently from
  `replay_ids` [B, T, k] (0 without replay), and per token [B, T] as replay_mismatch_tokens
  (so that a caller can leave out positions that were never sampled).
  """
  b, t, d = x.shape
  flat = x.reshape(b * t, d)
  replay = None if replay_ids is None else replay_ids.reshape(b * t, cfg.top_k)
  weights, ids, scores, fresh = route(params, flat, cfg, replay)
  k = cfg.top_k

  def routed(xp, wp, ip):
    """The routed experts of a [B, t', D] piece (tokens are routed independently)."""
    return _expert_parallel(params["experts"], xp.reshape(-1, d), wp.reshape(-1, k),
                            ip.reshape(-1, k), num_experts=cfg.num_experts, dtype=dtype,
                            capacity_factor=cfg.capacity_factor,
                            placement=placement).reshape(b, -1, d)

  w3, i3 = weights.reshape(b, t, k), ids.reshape(b, t, k)
  if t <= layers.MLP_CHUNK:
    y = routed(x, w3, i3)
  else:  # long rows: rematerialised pieces, so dispatch buffers scale with a piece, not a row
    c = layers.MLP_CHUNK
    y = jnp.concatenate([jax.checkpoint(routed)(x[:, i:i + c], w3[:, i:i + c], i3[:, i:i + c])
                         for i in range(0, t, c)], axis=1)
  if cfg.shared_ffn_dim:
    shared = layers.swiglu(params["shared"], x, dtype)
    if cfg.shared_gate:
      shared = shared * jax.nn.sigmoid(jnp.einsum("btd,do->bto", x, params["shared_gate"].astype(dtype)))
    y = y + shared
  load = jnp.bincount(ids.reshape(-1), length=cfg.num_experts).astype(jnp.float32)
  aux_loss = cfg.num_experts * jnp.sum(load / ids.size * jnp.mean(scores, 0))
  # A decision differs when an expert the router picks now is not among the replayed ones.
  same = jnp.any(fresh[:, :, None] == ids[:, None, :], axis=-1)
  changed = jnp.mean((~same).astype(jnp.float32), -1).reshape(b, t)
  mismatch = jnp.mean(changed)
  return y.astype(x.dtype), {"expert_load": load, "aux_loss": aux_loss,
                             "expert_ids": ids.reshape(b, t, cfg.top_k),
                             "replay_mismatch": mismatch, "replay_mismatch_tokens": changed}


def replay_ids_dtype(num_experts: int):
  """The narrowest integer dtype holding expert ids below `num_experts`: replayed routes are
  num_moe_layers x top_k ids per token, so the learner batch keeps them compact."""
  return jnp.uint8 if num_experts <= 256 else jnp.int16 if num_experts <= 32768 else jnp.int32


def balance_bias_update(router_bias, expert_load, rate):
  """Aux-loss-free balance: raise the bias of under-loaded experts, lower the over-loaded."""
  mean = jnp.mean(expert_load, axis=-1, keepdims=True)
  return router_bias + rate * jnp.sign(mean - expert_load)
