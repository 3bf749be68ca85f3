"""Sequence (context) parallelism of attention: a row's positions split along a mesh axis.

Under `r1jax.mesh.sequence_rules` the learner's activations [B, T, ...] are split along T (the
`length` logical axis): everything position-wise (norms, projections, the feed-forward, the
log-probs) then runs on each device's own slice, and only attention needs other positions. Here
each device all-gathers one layer's keys and values (and their mask factors) along the sequence
axis and attends its own queries to the whole sequence with the blockwise kernel
(`layers.flash_attention`, unchanged, so its recomputing backward comes along); the all-gather's
transpose, a reduce-scatter, returns each device its slice of dK and dV.

Why an all-gather and not a ring of KV blocks: with grouped-query attention a layer's keys and
values are 2 * KV / H of its queries (Qwen2.5-32B: 8 KV heads of 40, so 0.4x), 256 MiB for a
65,536-token row in bf16, gathered one layer at a time inside a node (NVLink) in a small share of
that layer's attention time; the ring's gain, never holding the gathered K/V, is not worth its
per-step collectives and a second online softmax beside the kernel's. Positions travel in the
mask, so the split needs no contiguity beyond what the rules give.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from r1jax.mesh import current_mesh, current_rules, logical_spec
from r1jax.models import layers


def attend(q, k, v, mask, prefix=None, *, block: int | None = None):
  """`layers.attend`, split along the sequence where the current rules split `length` (the
  queries' and the keys' alike); otherwise `layers.attend` itself. Arguments and result as
  there; a dense (non-factored) mask always takes the plain path."""
  mesh = current_mesh()
  if mesh is not None and isinstance(mask, layers.Mask):
    # One spec for rows, positions and KV heads, so that no mesh axis serves two of them.
    spec = logical_spec(("batch", "length", "kv_heads", None), k.shape, mesh, current_rules())
    if spec[1] is not None and tuple(logical_spec(("batch", "length"), q.shape[:2], mesh,
                                                  current_rules())) == tuple(spec)[:2]:
      return _attend_split(q, k, v, mask, prefix, spec, block or layers.BLOCK)
  return layers.attend(q, k, v, mask, prefix, block=block)


def _attend_split(q, k, v, mask, prefix, spec, block):
  rows, seq, heads, _ = spec       # q's heads are split as their KV groups
  along = PartitionSpec(rows, seq)
  pre_spec = PartitionSpec()
  if prefix is not None:   # each row gets its prompt's keys, so a row and its prefix lie together
    g = q.shape[0] // prefix[0].shape[0]
    prefix = tuple(jnp.repeat(x, g, axis=0) for x in prefix)
    pre_spec = (PartitionSpec(rows, None, heads, None),) * 2 + (PartitionSpec(rows, None),)

  # Unchecked replication: the kernel's loop carries start as plain zeros; every input and the
  # output are split over `seq`, so nothing here is replicated.
  def local(q, k, v, queries, keys, prefix):
    whole = lambda x: jax.lax.all_gather(x, seq, axis=1, tiled=True)
    own = layers.Mask(**queries, **{name: whole(x) for name, x in keys.items()})
    return layers.attend(q, whole(k), whole(v), own, prefix, block=block)

  queries = {"query_pos": mask.query_pos, "query_seg": mask.query_seg}
  keys = {"key_valid": mask.key_valid, "key_pos": mask.key_pos, "key_seg": mask.key_seg}
  return jax.shard_map(local, mesh=current_mesh(),
                       in_specs=(spec, spec, spec, along, along, pre_spec), out_specs=spec,
                       check_vma=False)(q, k, v, queries, keys, prefix)
