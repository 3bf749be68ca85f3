"""Self-speculative decoding with the policy's own MTP module (DeepSeek-V3), exact.

Each iteration of the loop, every live row holds its last emitted token y[n-1] (not yet fed to
the main model) and a draft d for y[n], drawn from the MTP module's distribution q (which reads
the trunk's hidden state at y[n-2] and the embedding of y[n-1]). One main-model forward over the
two positions [y[n-1], d] gives the policy's distribution p for y[n] and, if d is kept, for
y[n+1]. The draft is kept with probability min(1, p(d) / q(d)), else y[n] is drawn from
norm(max(0, p - q)) (speculative rejection sampling: y[n] ~ p exactly); a kept draft also yields
y[n+1] ~ p's second position. At temperature 0 both are argmaxes: the draft is kept iff it is the
policy's argmax, so the tokens are plain greedy decoding's. The MTP module then runs over the
same new positions with its own KV cache (and the prompt's, prefilled once), so each draft sees
exactly what the module sees in training (`r1jax.models.mtp.mtp_logits`).

p and q are the tempered distributions truncated alike by top-k / top-p (any q keeps the output
exact); log-probs follow the sampler's convention (log_softmax(logits / temperature) before
truncation, raw logits at temperature 0). A rejected draft's cache slot is left behind the row's
index and overwritten by the next forward before anything can read it.

Scope: one device (no mesh layout), no refill, no routing replay; the verify forward reads the
whole cache (the sampler's `attention` choice does not apply). Random streams differ from the
plain sampler's, so at T > 0 the samples agree with it in distribution, not token by token.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from r1jax.config import ConfigError, check_range
from r1jax.mesh import current_mesh
from r1jax.models import ModelConfig, init_cache, mtp
from r1jax.models.transformer import (compute_weights, head, prompt_positions, trunk,
                                      unstack_layers)
from r1jax.rollout import categorical, filtering
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.next_token import next_token
from r1jax.rollout.sampler import Rollout, check_prompts


def _support(config: SamplingConfig, logits):
  """Tempered logits with top-k / top-p applied: the distribution tokens are drawn from."""
  return filtering.truncate(logits / config.temperature, top_k=config.top_k, top_p=config.top_p)


def _draw(config: SamplingConfig, logits, u):
  if config.temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return categorical.draw(_support(config, logits), u)


def _logprob(config: SamplingConfig, logits, token):
  scaled = logits / (config.temperature or 1.0)
  return jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1), token[:, None], axis=-1)[:, 0]


def _verify(config: SamplingConfig, p_logits, q_logits, draft, u_accept, u_draw):
  """(y [B], accepted [B]): the token at the draft's position, y ~ p exactly."""
  if config.temperature == 0:
    target = jnp.argmax(p_logits, axis=-1).astype(jnp.int32)
    return target, draft == target
  p = jax.nn.softmax(_support(config, p_logits), axis=-1)
  q = jax.nn.softmax(_support(config, q_logits), axis=-1)
  pick = lambda x: jnp.take_along_axis(x, draft[:, None], axis=-1)[:, 0]
  accepted = u_accept * pick(q) < pick(p)        # u < p(d) / q(d), without dividing by q
  residual = jnp.maximum(p - q, 0.0)
  # p == q leaves no residual, but then every draft is kept; fall back to p to stay finite.
  residual = jnp.where(jnp.sum(residual, -1, keepdims=True) > 0, residual, p)
  resampled = categorical.draw(jnp.log(residual), u_draw)
  return jnp.where(accepted, draft, resampled), accepted


def _speculative(model_cfg: ModelConfig, config: SamplingConfig, num_samples: int, params,
                 prompt_tokens, prompt_mask, rng):
  g, budget = num_samples, config.max_new_tokens
  params = compute_weights(model_cfg, params)
  bp, plen = prompt_tokens.shape
  prompt_mask = prompt_mask.astype(bool)
  rows = bp * g
  # Prefill as `models.prefill` does, keeping the hidden states the MTP module reads.
  positions = prompt_positions(prompt_mask)
  h_prompt, prompt_cache, _ = trunk(model_cfg, params, prompt_tokens, positions=positions,
                                    token_mask=prompt_mask,
                                    cache=init_cache(model_cfg, bp, plen, config.cache_dtype))
  first_logits = head(model_cfg, params, h_prompt[:, -1:])[:, 0]
  # The MTP module over the prompt: entry t pairs h[t] with token t+1 (the last has none yet).
  following = jnp.concatenate([prompt_tokens[:, 1:], prompt_tokens[:, :1]], axis=1)
  has_next = prompt_mask & (jnp.arange(plen) < plen - 1)[None]
  _, mtp_prefix = mtp.step(model_cfg, params, h_prompt, following, positions,
                           mtp.init_cache(model_cfg, bp, plen, config.cache_dtype), has_next)
  per_row = lambda x: jnp.repeat(x, g, axis=0)
  start = per_row(jnp.sum(prompt_mask, axis=1, dtype=jnp.int32))
  row_keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(rows, dtype=jnp.int32))
  eos = jnp.asarray(config.eos_ids, jnp.int32)
  arange = jnp.arange(rows)

  def uniforms(it):  # three per row and iteration; stream 0 is next_token's first token
    keys = jax.vmap(jax.random.fold_in)(row_keys, jnp.full((rows,), it + 1, jnp.int32))
    return jax.vmap(lambda k: jax.random.uniform(k, (3,), jnp.float32))(keys).T

  first, first_lp = next_token(config, per_row(first_logits), row_keys, 0)
  with_index = lambda cache: dataclasses.replace(cache, index=jnp.zeros((rows,), jnp.int32))
  q_logits, mtp_cache = mtp.step(model_cfg, params, per_row(h_prompt[:, -1:]), first[:, None],
                                 (start - 1)[:, None],
                                 with_index(mtp.init_cache(model_cfg, rows, budget + 1,
                                                           config.cache_dtype)),
                                 prefix=mtp_prefix)
  q_logits = q_logits[:, 0]
  draft = _draw(config, q_logits, uniforms(0)[0])
  layer_params, prompt_cache = unstack_layers(params), unstack_layers(prompt_cache)
  cache = with_index(unstack_layers(init_cache(model_cfg, rows, budget, config.cache_dtype)))
  tokens = jnp.full((rows, budget), config.pad_id, jnp.int32).at[:, 0].set(first)
  logprobs = jnp.zeros((rows, budget), jnp.float32).at[:, 0].set(first_lp)
  finished_eos = jnp.isin(first, eos)
  done = finished_eos | (budget == 1)
  counts = jnp.zeros((2,), jnp.int32)          # drafts verified, drafts kept
  state = (jnp.int32(1), jnp.ones((rows,), jnp.int32), first, draft, q_logits, tokens, logprobs,
           done, finished_eos, cache, mtp_cache, counts)

  def step(state):
    (it, n, last, draft, q_logits, tokens, logprobs, done, finished_eos, cache, mtp_cache,
     counts) = state
    live = ~done
    pos = (start + n - 1)[:, None] + jnp.arange(2)
    h, cache, _ = trunk(model_cfg, layer_params, jnp.stack([last, draft], 1), positions=pos,
                        cache=cache, prefix=prompt_cache)
    logits = head(model_cfg, params, h)
    u_draft, u_accept, u_draw = uniforms(it)
    y, accepted = _verify(config, logits[:, 0], q_logits, draft, u_accept, u_draw)
    bonus = _draw(config, logits[:, 1], u_draw)   # used only when the draft is kept
    y_eos, bonus_eos = jnp.isin(y, eos), jnp.isin(bonus, eos)
    second = live & accepted & ~y_eos & (n + 1 < budget)
    put = lambda a, col, v, on, off: a.at[arange, col].set(jnp.where(on, v, off), mode="drop")
    tokens = put(tokens, n, y, live, config.pad_id)
    tokens = put(tokens, n + 1, bonus, second, config.pad_id)
    logprobs = put(logprobs, n, _logprob(config, logits[:, 0], y), live, 0.0)
    logprobs = put(logprobs, n + 1, _logprob(config, logits[:, 1], bonus), second, 0.0)
    finished_eos = finished_eos | (live & y_eos) | (second & bonus_eos)
    done = done | (live & (y_eos | (n + 1 >= budget))) | (second & (bonus_eos | (n + 2 >= budget)))
    new_n = n + live + second
    # Slots 0..new_n-2 now hold y[0..new_n-2]; a rejected draft's slot lies at the index.
    cache = dataclasses.replace(cache, index=new_n - 1)
    # MTP entries for the new positions: (h at y[n-1], y[n]) and, if kept, (h at y[n], y[n+1]).
    out, mtp_cache = mtp.step(model_cfg, params, h, jnp.stack([y, bonus], 1), pos,
                              dataclasses.replace(mtp_cache, index=n), jnp.stack([live, second], 1))
    q_logits = jnp.where(second[:, None], out[:, 1], out[:, 0])
    mtp_cache = dataclasses.replace(mtp_cache, index=new_n)
    draft = _draw(config, q_logits, u_draft)
    counts = counts + jnp.stack([jnp.sum(live), jnp.sum(live & accepted)]).astype(jnp.int32)
    return (it + 1, new_n, jnp.where(second, bonus, y), draft, q_logits, tokens, logprobs, done,
            finished_eos, cache, mtp_cache, counts)

  out = jax.lax.while_loop(lambda s: ~jnp.all(s[7]), step, state)
  _, lengths, _, _, _, tokens, logprobs, _, finished_eos, _, _, counts = out
  return Rollout(tokens=tokens, logprobs=logprobs, lengths=lengths,
                 finished_eos=finished_eos), counts


_speculative_jit = jax.jit(_speculative, static_argnums=(0, 1, 2))


def speculative_sample(model_cfg: ModelConfig, config: SamplingConfig, num_samples: int, params,
                       prompt_tokens, prompt_mask, rng) -> tuple[Rollout, dict[str, jax.Array]]:
  """`num_samples` completions per LEFT-padded prompt, drafted by the MTP module and verified
  by the policy: the same `Rollout` as `r1jax.rollout.sample` (identical tokens at T = 0, the
  same distribution at T > 0), and {'drafted', 'accepted'}: drafts verified on live rows and
  how many were kept (the acceptance rate is their ratio)."""
  config.validate_for(model_cfg.vocab_size)
  check_range("num_samples", num_samples, 1)
  check_prompts(prompt_tokens, prompt_mask)
  mesh = current_mesh()
  if mesh is not None and mesh.size > 1:
    raise ValueError(f"speculative_sample runs on one device; called under a mesh of {mesh.size} "
                     "devices (use r1jax.rollout.sample there)")
  if model_cfg.mtp_layers < 1:
    raise ConfigError("mtp_layers", f"got {model_cfg.mtp_layers}; speculative decoding drafts "
                      "with the MTP module, so it needs mtp_layers >= 1")
  if config.refill_slots:
    raise ConfigError("refill_slots", f"got {config.refill_slots}; speculative decoding "
                      "supports 0 (one cache slot per row)")
  if model_cfg.moe is not None and model_cfg.moe.routing_replay:
    raise ConfigError("moe.routing_replay", "got True; speculative decoding does not record "
                      "routes, allowed: False")
  rollout, counts = _speculative_jit(model_cfg, config, num_samples, params, prompt_tokens,
                                     prompt_mask, rng)
  return rollout, {"drafted": counts[0], "accepted": counts[1]}
