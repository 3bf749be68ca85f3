"""G samples per prompt: prefill each prompt once, then one jitted `lax.while_loop` of decode steps.

Rows ``i*G .. i*G+G-1`` of a :class:`Rollout` are the G samples of prompt ``i``. With
``share_prefix`` the prompt's KV cache is computed once and read by its G rows through the model's
grouped ``prefix`` attention (never copied); each row has its own cache of ``max_new_tokens``
slots for what it generates. The loop stops when every row has emitted an EOS id or the budget is
used; nothing returns to the host per token. With ``attention='filled'`` (the default) a decode
step reads each cache only up to its highest filled block (`r1jax.models.decode_attention`);
with ``refill_slots`` below the row count, that many slots decode the rows, each taking the next
waiting row when its own ends (`refill.py`). Randomness is one uniform per row and step from
``fold_in(fold_in(rng, global_row), step)``, so samples do not depend on how the batch is
sharded or chunked.

Log-prob convention (shared with the learner): ``logprobs[r, t]`` is
``log_softmax(logits / temperature)[token]``, the tempered distribution *before* top-k / top-p
truncation, which is what the learner recomputes from ``r1jax.models.logits``. At temperature 1
this is the policy's own log-prob. At temperature 0 (greedy) tokens are argmax of the raw logits
and log-probs are ``log_softmax(logits)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.config import check_range
from r1jax.mesh import (batch_shards, constrain, current_mesh, current_rules, decode_rules,
                        use_mesh)
from r1jax.models import ModelConfig, cache_axes, forward, init_cache, param_axes, prefill
from r1jax.models.transformer import compute_weights, unstack_layers
from r1jax.rollout import refill
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.next_token import next_token


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rollout:
  """Completions of Bp prompts x G samples; row r belongs to prompt r // G.

  tokens [Bp*G, T] int32 (pad_id after the end), logprobs [Bp*G, T] float32 (0 after the end),
  lengths [Bp*G] int32 (completion tokens, including the EOS), finished_eos [Bp*G] bool
  (True: stopped at an EOS id; False: stopped at max_new_tokens). With the model's
  `moe.routing_replay`, expert_ids [num_moe_layers, Bp*G, T, top_k] int32: the experts each
  completion token was routed to when it was fed back in (the last token, never fed, has zeros);
  pass ``expert_ids[:, :, :-1]`` as the learner forward's ``expert_ids``. Otherwise None.
  """
  tokens: jax.Array
  logprobs: jax.Array
  lengths: jax.Array
  finished_eos: jax.Array
  expert_ids: jax.Array | None = None

  def finish_reasons(self) -> list[str]:
    """'eos' or 'length' per row (reads the flags back to the host)."""
    return ["eos" if f else "length" for f in np.asarray(self.finished_eos)]

  def mask(self) -> jax.Array:
    """[Bp*G, T] bool: True on completion tokens, False on the padding after each end."""
    return jnp.arange(self.tokens.shape[1])[None, :] < self.lengths[:, None]


def _rollout(model_cfg: ModelConfig, config: SamplingConfig, num_samples: int, mesh, params,
             prompt_tokens, prompt_mask, rng, row_offset) -> Rollout:
  """Traced under the decode layout (`layout_rules`): the weights are cast to the compute
  dtype and laid out tensor-parallel once per call, prompts and rows spread over the
  remaining batch axes, each row's cache with its prompt's, so no decode step moves weights or
  caches between devices."""
  if mesh is None or mesh.size == 1:
    return _decode(model_cfg, config, num_samples, params, prompt_tokens, prompt_mask, rng,
                   row_offset)
  with use_mesh(mesh, layout_rules(model_cfg, mesh, current_rules())):
    return _decode(model_cfg, config, num_samples, params, prompt_tokens, prompt_mask, rng,
                   row_offset)


def layout_rules(model_cfg: ModelConfig, mesh, rules):
  """The sampler's rules on `mesh`: the decode layout (`r1jax.mesh.decode_rules`) when the
  attention heads split evenly over fsdp, else the given (training) rules, under which each
  device decodes its own rows with gathered weights instead of repeating the attention."""
  fsdp = mesh.shape["fsdp"]
  if model_cfg.num_heads % fsdp or model_cfg.num_kv_heads % fsdp:
    return rules
  return decode_rules(rules)


def _layout(tree, axes):
  return jax.tree.map(constrain, tree, axes)


def decode_param_axes(model_cfg: ModelConfig):
  """`param_axes` for a sampler call, with the output projection whole along `embed` (split by
  vocabulary only): every decode step multiplies every row by it, and with `embed` split across
  nodes XLA:GPU gathers it across nodes at each step (106 GB per call on the 30B plan)."""
  axes = dict(param_axes(model_cfg))
  name = "embed" if model_cfg.tie_embeddings else "lm_head"
  axes[name] = tuple(None if a == "embed" else a for a in axes[name])
  return axes


def refill_slots(config: SamplingConfig, rows: int) -> int:
  """The decode loop's cache slots for `rows` rows: `config.refill_slots` rounded up to whole
  slots per batch shard of the current mesh (so each shard refills from its own rows), or one per
  row when that is not fewer."""
  mesh = current_mesh()
  shards = 1 if mesh is None or mesh.size == 1 else batch_shards(mesh, current_rules())
  slots = -(-config.refill_slots // shards) * shards
  return slots if 0 < slots < rows else rows


def _decode(model_cfg: ModelConfig, config: SamplingConfig, num_samples: int, params,
            prompt_tokens, prompt_mask, rng, row_offset) -> Rollout:
  """Prefills the prompts once, then decodes their rows: one cache slot per row, or (with
  `refill_slots` below the row count) `refill.decode`'s refilled slots."""
  g, budget = num_samples, config.max_new_tokens
  params = _layout(compute_weights(model_cfg, params), decode_param_axes(model_cfg))
  prompt_tokens = constrain(prompt_tokens, ("batch", "length"))
  prompt_mask = constrain(prompt_mask, ("batch", "length"))
  rows = prompt_tokens.shape[0] * g
  prompt_mask = prompt_mask.astype(bool)
  per_entry = g if config.share_prefix else 1    # rows reading each prefix entry
  if not config.share_prefix:  # The baseline: every sample prefills its own copy of the prompt.
    prompt_tokens, prompt_mask = (jnp.repeat(x, g, axis=0) for x in (prompt_tokens, prompt_mask))
  first_logits, prompt_cache = prefill(model_cfg, params, prompt_tokens, prompt_mask,
                                       config.cache_dtype)
  prompt_cache = _layout(prompt_cache, cache_axes(model_cfg))
  start = jnp.repeat(jnp.sum(prompt_mask, axis=1, dtype=jnp.int32), per_entry)  # first position
  row_keys = jax.vmap(jax.random.fold_in, (None, 0))(
      rng, row_offset + jnp.arange(rows, dtype=jnp.int32))
  slots = refill_slots(config, rows)
  # Per-layer arrays inside the loop: no step slices weights or caches out of stacked arrays.
  layer_params, prompt_cache = unstack_layers(params), unstack_layers(prompt_cache)
  cache = unstack_layers(_layout(init_cache(model_cfg, slots, budget, config.cache_dtype),
                                 cache_axes(model_cfg)))
  if slots < rows:
    out = refill.decode(model_cfg, config, layer_params, prompt_cache, cache, first_logits,
                        jnp.arange(rows, dtype=jnp.int32) // per_entry, start, row_keys)
  else:
    out = _decode_rows(model_cfg, config, layer_params, prompt_cache, cache,
                       jnp.repeat(first_logits, per_entry, axis=0), start, row_keys)
  tokens, logprobs, lengths, done, routes = out
  return Rollout(tokens=tokens, logprobs=logprobs, lengths=lengths, finished_eos=done,
                 expert_ids=routes)


def _decode_rows(model_cfg: ModelConfig, config: SamplingConfig, layer_params, prompt_cache,
                 cache, first_logits, start, row_keys):
  """Every row in its own cache slot, all at the same step, until every row has ended:
  (tokens, logprobs, lengths, finished_eos, routes or None) as `refill.decode` returns them."""
  rows, budget = start.shape[0], config.max_new_tokens
  eos = jnp.asarray(config.eos_ids, jnp.int32)
  decode_block = config.kv_block if config.attention == "filled" else 0

  def emit(state, token, logprob):
    """Writes step t's token where the row is still running and updates its end."""
    t, _, tokens, logprobs, lengths, done, cache = state[:7]
    live = ~done
    tokens = jax.lax.dynamic_update_slice(
        tokens, jnp.where(live, token, config.pad_id)[:, None], (0, t))
    logprobs = jax.lax.dynamic_update_slice(
        logprobs, jnp.where(live, logprob, 0.0)[:, None], (0, t))
    lengths = jnp.where(live, t + 1, lengths)
    done = done | (live & jnp.isin(token, eos))
    return (t + 1, token, tokens, logprobs, lengths, done, cache) + state[7:]

  def keep_going(state):
    t, done = state[0], state[5]
    return (t < budget) & ~jnp.all(done)

  def step(state):
    t, token, cache = state[0], state[1], state[6]
    logits, cache, aux = forward(model_cfg, layer_params, token[:, None],
                                 positions=(start + t - 1)[:, None], cache=cache,
                                 prefix=prompt_cache, decode_block=decode_block)
    routes = state[7:]
    if replay:  # the routes of the token fed in at this step (completion token t - 1)
      routes = (jax.lax.dynamic_update_slice(routes[0], aux["expert_ids"], (0, 0, t - 1, 0)),)
    state = state[:6] + (cache,) + routes
    return emit(state, *next_token(config, logits[:, 0], row_keys, t))

  by_row = lambda x: constrain(x, ("batch",) + (None,) * (x.ndim - 1))
  state = (jnp.int32(0), by_row(jnp.zeros((rows,), jnp.int32)),
           by_row(jnp.full((rows, budget), config.pad_id, jnp.int32)),
           by_row(jnp.zeros((rows, budget), jnp.float32)), by_row(jnp.zeros((rows,), jnp.int32)),
           by_row(jnp.zeros((rows,), bool)), cache)
  replay = model_cfg.moe is not None and model_cfg.moe.routing_replay and model_cfg.num_moe_layers
  if replay:
    state += (jnp.zeros((model_cfg.num_moe_layers, rows, budget, model_cfg.moe.top_k), jnp.int32),)
  state = emit(state, *next_token(config, first_logits, row_keys, 0))
  _, _, tokens, logprobs, lengths, done, _, *routes = jax.lax.while_loop(keep_going, step, state)
  return tokens, logprobs, lengths, done, routes[0] if replay else None


# Region-based copy insertion lets XLA:CPU update the loop-carried KV caches in place; the default
# analysis copies every layer's cache (twice) on every step, which costs more than the attention.
rollout_jit = jax.jit(_rollout, static_argnums=(0, 1, 2, 3),
                      compiler_options={"xla_cpu_copy_insertion_use_region_analysis": True})


def check_prompts(prompt_tokens, prompt_mask) -> None:
  """Clear errors for malformed prompt batches (shapes; left padding where the mask is local)."""
  if prompt_tokens.ndim != 2 or prompt_mask.shape != prompt_tokens.shape:
    raise ValueError(f"prompt_tokens {prompt_tokens.shape} and prompt_mask {prompt_mask.shape} "
                     "must both be [num_prompts, prompt_len]")
  if isinstance(prompt_mask, jax.Array) and not prompt_mask.is_fully_addressable:
    return  # A multi-host array: checking it would need a gather across hosts.
  mask = np.asarray(prompt_mask).astype(bool)
  if not mask[:, -1].all():
    bad = np.flatnonzero(~mask[:, -1]).tolist()[:5]
    raise ValueError(f"prompts {bad} do not end in the last column: prompts must be LEFT-padded "
                     "(prefill reads the logits of the last position)")


def run(model_cfg: ModelConfig, config: SamplingConfig, num_samples: int, params, prompt_tokens,
        prompt_mask, rng, row_offset: int = 0) -> Rollout:
  """`num_samples` per prompt with a validated config; `row_offset` is the global index of the
  first row."""
  config.validate_for(model_cfg.vocab_size)
  check_range("num_samples", num_samples, 1)
  check_prompts(prompt_tokens, prompt_mask)
  return rollout_jit(model_cfg, config, num_samples, current_mesh(), params, prompt_tokens,
                     prompt_mask, rng, jnp.int32(row_offset))


def sample(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask, rng, *, num_samples=16,
           max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, eos_ids=(), pad_id=0,
           cache_dtype=None, share_prefix=True, attention="filled", kv_block=256,
           refill_slots=0) -> Rollout:
  """Draws `num_samples` completions for each LEFT-padded prompt [Bp, P] (mask [Bp, P]).

  Returns a :class:`Rollout` with Bp * num_samples rows (row r answers prompt r // num_samples).
  Log-probs are of log_softmax(logits / temperature) before top-k / top-p truncation (raw logits
  at temperature 0, which is greedy). Call under ``r1jax.mesh.use_mesh(mesh)`` with sharded
  params to spread the batch over the mesh's batch axes; results do not depend on the sharding.
  attention, kv_block and refill_slots choose how the decode loop runs (`SamplingConfig`); every
  choice draws the same tokens for the same rng.
  """
  config = SamplingConfig(max_new_tokens=max_new_tokens,
                          temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                          eos_ids=tuple(int(e) for e in eos_ids), pad_id=int(pad_id),
                          cache_dtype=None if cache_dtype is None else jnp.dtype(cache_dtype).name,
                          share_prefix=bool(share_prefix), attention=attention,
                          kv_block=int(kv_block), refill_slots=int(refill_slots))
  return run(model_cfg, config, num_samples, params, prompt_tokens, prompt_mask, rng)
