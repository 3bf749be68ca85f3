"""The policy's per-token log-probabilities of sampled completions, prompts run once per group.

Each prompt is prefilled once; its KV cache is the read-only shared prefix of its G completions,
and gradients flow back through it into the prompt's computation. The first completion token is
scored by the prompt's last-position logits, token j > 0 by the completion's position j - 1. The
convention shared with the sampler: log-probs are of log_softmax(logits / temperature), the
tempered but untruncated distribution (temperature 1 is the raw policy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.models import ModelConfig, forward, prefill


def completion_stats(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask, completion_tokens,
                     *, temperature: float = 1.0):
  """(log-probs [Bp*G, T] f32, entropies [Bp*G, T] f32, aux of the completion forward).

  prompt_tokens [Bp, P] left-padded with prompt_mask [Bp, P]; completion_tokens [Bp*G, T] with
  the G completions of each prompt consecutive. Tokens after a completion's end are scored too
  (they cannot affect earlier tokens); mask them downstream. aux is the model's MoE output
  ({"aux_loss", "expert_load"}) over the completion tokens (the prefill's is not returned).
  """
  bp, n = prompt_tokens.shape[0], completion_tokens.shape[0]
  if n % bp:
    raise ValueError(f"completion_tokens: got {n} rows for {bp} prompts; need G rows per prompt")
  group = n // bp
  prompt_mask = prompt_mask.astype(bool)
  last, prefix = prefill(model_cfg, params, prompt_tokens, prompt_mask)
  first = jnp.repeat(last, group, axis=0)[:, None]                          # [N, 1, V]
  start = jnp.repeat(jnp.sum(prompt_mask, axis=1, dtype=jnp.int32), group)  # [N]
  t = completion_tokens.shape[1]
  if t > 1:
    positions = start[:, None] + jnp.arange(t - 1, dtype=jnp.int32)[None]
    rest, _, aux = forward(model_cfg, params, completion_tokens[:, :-1], positions=positions,
                           prefix=prefix)
    all_logits = jnp.concatenate([first, rest], axis=1)
  else:
    all_logits = first
    aux = {"aux_loss": jnp.zeros((), jnp.float32), "expert_load": None}
  logz = jax.nn.log_softmax(all_logits.astype(jnp.float32) / temperature, axis=-1)
  logp = jnp.take_along_axis(logz, completion_tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logz) * logz, axis=-1)
  return logp, entropy, aux


def completion_logprobs(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask,
                        completion_tokens, *, temperature: float = 1.0, return_entropy: bool = False):
  """Per-token log-probs [Bp*G, T] (and entropies [Bp*G, T] if `return_entropy`)."""
  logp, entropy, _ = completion_stats(model_cfg, params, prompt_tokens, prompt_mask,
                                      completion_tokens, temperature=temperature)
  return (logp, entropy) if return_entropy else logp
