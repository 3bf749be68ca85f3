"""Continuous batching inside one sampler call: N cache slots, each taking the call's next
waiting row the moment its own row ends.

The call's rows (Bp prompts x G samples) are work items taken in order. Each slot has its own
cache of ``max_new_tokens`` slots, its own step, and a copy of its row's prompt cache made when
it takes the row: a decode step feeds every live slot's last token at the slot's own position (a
per-row cache index, with filled-only attention). When a row ends (EOS or the budget) the slot
takes the next waiting row at once: that row's first token is drawn from its prompt's prefill
logits (step 0) and it joins the next decode step. Tokens and log-probs are keyed by the row's
global index and its own step, so every row equals the one-slot-per-row sampler's, whatever slot
decodes it.

On a mesh the slots, rows and prompts split over the same batch shards, and each shard's slots
take only that shard's rows: a refill copies a prompt's cache within its shard, and no decode
step moves caches between devices.

Cost: the loop runs until the last row ends, about ceil(total tokens / N) decode steps (plus one
for each time every slot's new row ends at its first token). Each step reads the N slots' caches
in blocks up to the highest filled slot among them (``SamplingConfig.kv_block``) and their N
prompt copies; a step where some slot takes a row also copies prompt caches into the slots.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from r1jax.mesh import constrain, current_mesh, row_axes
from r1jax.models import KVCache, ModelConfig, forward
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.next_token import next_token


def _shards(*sizes: int) -> int:
  """How many batch shards split every one of `sizes` alike (1 without a mesh or if they differ)."""
  axes = {row_axes(n) for n in sizes}
  if current_mesh() is None or len(axes) != 1:
    return 1
  return math.prod(current_mesh().shape[a] for a in axes.pop())


def _take_within_shards(x, index, shards: int):
  """x [E, ...] gathered at `index` [N] (each an entry of the index's own shard: shard j of N
  slots reads shard j of E entries), with the shard axis kept as a batch axis of the gather."""
  grouped = constrain(x.reshape(shards, -1, *x.shape[1:]), ("batch",) + (None,) * x.ndim)
  local = index.reshape(shards, -1) - (jnp.arange(shards) * grouped.shape[1])[:, None]
  out = jax.vmap(lambda a, i: jnp.take(a, i, axis=0))(grouped, local)
  return constrain(out.reshape(-1, *x.shape[1:]), ("batch",) + (None,) * (x.ndim - 1))


def decode(model_cfg: ModelConfig, config: SamplingConfig, layer_params, prompt_cache, cache,
           first_logits, entry_of_row, start, row_keys):
  """(tokens [W, T], logprobs [W, T], lengths [W], finished_eos [W], routes or None) of W rows.

  layer_params, prompt_cache ([E] entries) and cache (the slots' own, [N, T], N < W) come per
  layer (`unstack_layers`) and laid out for decoding. first_logits [E, V]: each prefix entry's
  prefill logits; entry_of_row, start, row_keys [W]: each row's entry (non-decreasing), first new
  position and key.
  """
  w, budget = entry_of_row.shape[0], config.max_new_tokens
  slots = cache.mask.shape[0]
  shards = _shards(slots, w, first_logits.shape[0])
  per_shard = w // shards
  eos = jnp.asarray(config.eos_ids, jnp.int32)
  by_slot = lambda x: constrain(x, ("batch",) + (None,) * (x.ndim - 1))
  replay = model_cfg.moe is not None and model_cfg.moe.routing_replay and model_cfg.num_moe_layers

  def emit(s, token, logprob, steps, emitting):
    """Writes each emitting slot's token at its row and step; ends rows at EOS or the budget."""
    rows = jnp.where(emitting, s["row"], w)              # w: out of range, dropped
    ended_eos = jnp.isin(token, eos)
    finished = ended_eos | (steps + 1 >= budget)
    return s | {"tokens": s["tokens"].at[rows, steps].set(token, mode="drop"),
                "logprobs": s["logprobs"].at[rows, steps].set(logprob, mode="drop"),
                "lengths": s["lengths"].at[rows].set(steps + 1, mode="drop"),
                "eos": s["eos"].at[rows].set(ended_eos, mode="drop"),
                "live": jnp.where(emitting, ~finished, s["live"]),
                "t": jnp.where(emitting, steps + 1, s["t"]),
                "token": jnp.where(emitting, token, s["token"])}

  def refill(s):
    """Free slots take their shard's next waiting rows, in order: each copies its row's prompt
    cache and draws the row's first token."""
    free = ~s["live"].reshape(shards, -1)
    local = s["next"][:, None] + jnp.cumsum(free, axis=1) - 1
    take = free & (local < per_shard)
    new = (local + (jnp.arange(shards) * per_shard)[:, None]).reshape(-1)
    s = s | {"row": jnp.where(take.reshape(-1), new, jnp.where(free.reshape(-1), w, s["row"])),
             "next": s["next"] + jnp.sum(take, axis=1, dtype=jnp.int32)}
    take = take.reshape(-1)

    def draw(prefix):
      row = jnp.minimum(s["row"], w - 1)
      entry = entry_of_row[row]
      fresh = jax.tree.map(lambda x: _take_within_shards(x, entry, shards), prompt_parts)
      prefix = jax.tree.map(lambda new, old: jnp.where(
          jnp.reshape(take, (-1,) + (1,) * (old.ndim - 1)), new, old), fresh, prefix)
      token, logprob = next_token(config, _take_within_shards(first_logits, entry, shards),
                                  row_keys[row], 0)
      return prefix, token, logprob

    keep = lambda prefix: (prefix, jnp.zeros((slots,), jnp.int32), jnp.zeros((slots,), jnp.float32))
    prefix, token, logprob = jax.lax.cond(jnp.any(take), draw, keep, s["prefix"])
    return emit(s | {"prefix": prefix}, token, logprob, jnp.zeros((slots,), jnp.int32), take)

  def step(s):
    row, t, live = jnp.minimum(s["row"], w - 1), s["t"], s["live"]
    # The fed token's cache slot and step; 0 for idle slots, so that they do not raise the
    # highest filled slot that bounds every slot's cache reads.
    index = jnp.where(live, jnp.maximum(t - 1, 0), 0)
    c = s["cache"]
    logits, c, aux = forward(
        model_cfg, layer_params, s["token"][:, None], positions=(start[row] + index)[:, None],
        cache=KVCache(k=c.k, v=c.v, mask=c.mask, index=index),
        prefix=KVCache(*s["prefix"], index=prompt_cache.index),
        decode_block=config.kv_block)
    s = s | {"cache": c}
    if replay:  # the routes of the token fed in at this step, at its row
      s["routes"] = s["routes"].at[:, jnp.where(live, row, w), index].set(
          aux["expert_ids"][:, :, 0], mode="drop")
    token, logprob = next_token(config, logits[:, 0], row_keys[row], t)
    return refill(emit(s, token, logprob, t, live))

  zeros = lambda dtype, value=0: by_slot(jnp.full((slots,), value, dtype))
  prompt_parts = (prompt_cache.k, prompt_cache.v, prompt_cache.mask)
  prefix = jax.tree.map(lambda x: by_slot(jnp.zeros((slots, *x.shape[1:]), x.dtype)), prompt_parts)
  s = {"row": zeros(jnp.int32, w), "t": zeros(jnp.int32), "token": zeros(jnp.int32),
       "live": zeros(bool), "next": jnp.zeros((shards,), jnp.int32),
       "cache": KVCache(k=cache.k, v=cache.v, mask=cache.mask, index=zeros(jnp.int32)),
       "prefix": prefix, "tokens": jnp.full((w, budget), config.pad_id, jnp.int32),
       "logprobs": jnp.zeros((w, budget), jnp.float32), "lengths": jnp.zeros((w,), jnp.int32),
       "eos": jnp.zeros((w,), bool)}
  if replay:
    s["routes"] = jnp.zeros((model_cfg.num_moe_layers, w, budget, model_cfg.moe.top_k), jnp.int32)
  s = jax.lax.while_loop(lambda s: jnp.any(s["live"]) | jnp.any(s["next"] < per_shard), step,
                         refill(s))
  return s["tokens"], s["logprobs"], s["lengths"], s["eos"], s.get("routes")
