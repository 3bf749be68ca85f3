"""The policy's per-token log-probabilities of sampled completions, prompts run once per group.

Each prompt is prefilled once; its KV cache is the read-only shared prefix of its G completions,
and gradients flow back through it into the prompt's computation. The first completion token is
scored by the prompt's last-position logits, token j > 0 by the completion's position j - 1. The
convention shared with the sampler: log-probs are of log_softmax(logits / temperature), the
tempered but untruncated distribution (temperature 1 is the raw policy).

The [N, T, vocab] logits are never held whole: the vocabulary projection, log-softmax, pick and
entropy run over CHUNK positions at a time under `jax.checkpoint`, so the backward pass
recomputes one chunk's logits instead of keeping every chunk's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from r1jax.mesh import current_mesh, length_axes, length_shards, row_axes
from r1jax.models import ModelConfig, prefill
from r1jax.models.transformer import head_weight, trunk

# Positions per chunk of the vocabulary projection: [rows, 256, vocab] float32 at a time.
CHUNK = 256


def _stats(logits, tokens, temperature):
  """(log-prob of `tokens`, entropy) under log_softmax(logits / temperature), float32."""
  logz = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
  logp = jnp.take_along_axis(logz, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return logp, -jnp.sum(jnp.exp(logz) * logz, axis=-1)


def chunked_token_stats(model_cfg: ModelConfig, params, h, tokens, temperature: float,
                        chunk: int | None = None):
  """(log-probs, entropies) [N, T] of `tokens` [N, T] from hidden states h [N, T, D], the logits
  of `chunk` positions at a time (each chunk recomputed in the backward pass).

  On a mesh each device scores its own rows (`shard_map` over the batch axes; and its own
  positions under sequence parallelism) against the whole projection, so the projection's
  gradient is summed over devices once, not once per chunk."""
  w = head_weight(model_cfg, params).astype(h.dtype)
  local = functools.partial(_chunked_stats, chunk=chunk or CHUNK, temperature=temperature)
  mesh = current_mesh()
  if mesh is None or mesh.size == 1:
    return local(h, tokens, w)
  axes, seq = row_axes(tokens.shape[0]), length_axes(tokens.shape[1])
  rows = PartitionSpec(axes or None, seq or None)
  local = functools.partial(local, vary=axes + seq)
  return jax.shard_map(local, mesh=mesh, in_specs=(rows, rows, PartitionSpec()),
                       out_specs=(rows, rows))(h, tokens, w)


def _chunked_stats(h, tokens, w, *, chunk: int, temperature: float, vary=()):
  if vary:  # Marked per-device before the loop: its gradient is summed once, after it.
    w = jax.lax.pcast(w, vary, to="varying")
  n, t = tokens.shape
  chunk = min(chunk, t)
  k = -(-t // chunk)
  pad = k * chunk - t
  h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
  tokens = jnp.pad(tokens, ((0, 0), (0, pad)))
  split = lambda x: jnp.moveaxis(x.reshape(n, k, chunk, *x.shape[2:]), 1, 0)

  @jax.checkpoint
  def one(_, xs):
    hc, tc = xs
    logits = jnp.einsum("btd,dv->btv", hc, w, preferred_element_type=jnp.float32)
    return None, _stats(logits, tc, temperature)

  _, (logp, entropy) = jax.lax.scan(one, None, (split(h), split(tokens)))
  join = lambda x: jnp.moveaxis(x, 0, 1).reshape(n, k * chunk)[:, :t]
  return join(logp), join(entropy)


def _pad_axis(x, axis: int, length: int):
  """`x` zero-padded along `axis` to `length` (itself when it is that long)."""
  if x.shape[axis] == length:
    return x
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, length - x.shape[axis])
  return jnp.pad(x, pad)


def completion_stats(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask, completion_tokens,
                     *, temperature: float = 1.0, expert_ids=None):
  """(log-probs [Bp*G, T] f32, entropies [Bp*G, T] f32, aux of the completion forward).

  prompt_tokens [Bp, P] left-padded with prompt_mask [Bp, P]; completion_tokens [Bp*G, T] with
  the G completions of each prompt consecutive. Tokens after a completion's end are scored too
  (they cannot affect earlier tokens); mask them downstream. aux is the model's MoE output
  ({"aux_loss", "expert_load", "replay_mismatch", "replay_mismatch_tokens" [Bp*G, T-1] or None})
  over the completion tokens fed in (all but the last; the prefill's is not returned).

  expert_ids [num_moe_layers, Bp*G, T, top_k] (routing replay, `rollout.Rollout.expert_ids`,
  aligned with `completion_tokens`): completion token j is fed in at position j and routed to
  the experts the sampler used for it; the last token, never fed, needs none. The prompt is
  prefilled as the sampler prefilled it (same function, routed afresh), so its routes are not
  replayed.
  """
  bp, n = prompt_tokens.shape[0], completion_tokens.shape[0]
  if n % bp:
    raise ValueError(f"completion_tokens: got {n} rows for {bp} prompts; need G rows per prompt")
  group = n // bp
  prompt_mask = prompt_mask.astype(bool)
  last, prefix = prefill(model_cfg, params, prompt_tokens, prompt_mask)
  start = jnp.repeat(jnp.sum(prompt_mask, axis=1, dtype=jnp.int32), group)  # [N]
  logp, entropy = _stats(jnp.repeat(last, group, axis=0), completion_tokens[:, 0], temperature)
  logp, entropy = logp[:, None], entropy[:, None]
  t = completion_tokens.shape[1]
  if t > 1:
    # Under sequence parallelism the fed tokens are padded at the end to whole slices per device
    # (causal: no real position sees the padding; MoE load statistics count it).
    fed_len = -(-(t - 1) // length_shards()) * length_shards()
    fit = lambda x, axis=1: _pad_axis(x, axis, fed_len)
    positions = start[:, None] + jnp.arange(fed_len, dtype=jnp.int32)[None]
    fed = None if expert_ids is None else fit(expert_ids[:, :, :-1], 2)
    h, _, aux = trunk(model_cfg, params, fit(completion_tokens[:, :-1]), positions=positions,
                      prefix=prefix, expert_ids=fed)
    rest = chunked_token_stats(model_cfg, params, h, fit(completion_tokens[:, 1:]), temperature)
    rest = tuple(x[:, :t - 1] for x in rest)
    logp, entropy = (jnp.concatenate([a, b], axis=1) for a, b in zip((logp, entropy), rest))
  else:
    aux = {"aux_loss": jnp.zeros((), jnp.float32), "expert_load": None,
           "replay_mismatch": jnp.zeros((), jnp.float32), "replay_mismatch_tokens": None}
  return logp, entropy, aux


def completion_logprobs(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask,
                        completion_tokens, *, temperature: float = 1.0,
                        return_entropy: bool = False, expert_ids=None):
  """Per-token log-probs [Bp*G, T] (and entropies [Bp*G, T] if `return_entropy`); `expert_ids`
  as in :func:`completion_stats`."""
  logp, entropy, _ = completion_stats(model_cfg, params, prompt_tokens, prompt_mask,
                                      completion_tokens, temperature=temperature,
                                      expert_ids=expert_ids)
  return (logp, entropy) if return_entropy else logp
