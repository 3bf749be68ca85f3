"""The train state, born sharded, and the GRPO update as one pure, jitted step over it.

:func:`init_train_state` creates the state (params, optimizer state, optimizer steps taken)
directly in the shardings that :func:`state_shardings` reads from each parameter's logical axes
(the Adam moments follow their parameter, scalars are replicated), never whole on one device: from
a PRNG key (a fresh `models.init`) or from given params (a pretrained model loaded on the host, of
which each device receives only its shard). :func:`jit_step` jits a pure, module-level
``step(state, batch) -> (state, metrics)`` with explicit shardings and the state donated. The
GRPO learner, SFT and the reward model all build their state and step this way, with the one
optimizer per config of `r1jax.rl.optim.make_optimizer`.

`train_step(state, batch) -> (state, metrics)` scores a `LearnerBatch` (one minibatch of whole
groups) under the current policy, accumulates the gradient over `micro_batches` chunks of whole
groups (each chunk's loss numerator divided by the denominator of the whole minibatch, so the
result is the exact minibatch mean), clips and applies AdamW, moves the MoE router bias by the
balance rule, and returns scalar metrics. It uses no randomness. Its log-probs are of
log_softmax(logits / temperature) at the temperature the batch was sampled at.

Mixed precision: the state's params are the master weights in `param_dtype` (float32 at scale,
so a 3e-6 step is not rounded away), split with their Adam moments over every device (the
`embed` rule spans fsdp and data); the forward runs on their compute-dtype copy
(`models.transformer.compute_weights`, cast where each shard lies, before any gather) and the
gradient flows back to the master weights in float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r1jax import models
from r1jax.config import ConfigError
from r1jax.mesh import DEFAULT_RULES, constrain, logical_sharding, tree_shardings, use_mesh
from r1jax.models.moe import balance_bias_update
from r1jax.models.transformer import compute_weights
from r1jax.rl import offload
from r1jax.rl.batch import PROMPT_FIELDS, LearnerBatch
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rl.corrections import importance_weights, mismatch_metrics
from r1jax.rl.logprobs import completion_stats
from r1jax.rl.losses import LossTerms, denominator, grpo_loss, loss_mask
from r1jax.rl.optim import learning_rate_schedule, make_optimizer


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  params: Any
  opt_state: Any
  step: jax.Array


def _shardings(axes, abstract_params, tx: optax.GradientTransformation, mesh: Mesh,
               rules) -> TrainState:
  params = tree_shardings(axes, abstract_params, mesh, rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  # Frozen leaves (router_bias) appear as MaskedNode in the AdamW moments: keep them as they are.
  masked = lambda x: isinstance(x, optax.MaskedNode)
  opt_state = optax.tree_map_params(
      tx, lambda leaf, sharding: leaf if masked(leaf) else sharding,
      jax.eval_shape(tx.init, abstract_params), params,
      transform_non_params=lambda _: replicated, is_leaf=masked)
  return TrainState(params, opt_state, replicated)


def state_shardings(model_cfg: models.ModelConfig, optim_cfg: OptimConfig, mesh: Mesh,
                    rules=DEFAULT_RULES) -> TrainState:
  """NamedShardings of the policy's train state."""
  abstract = jax.eval_shape(functools.partial(models.init, model_cfg), jax.random.key(0))
  return _kept(optim_cfg, _shardings(models.param_axes(model_cfg), abstract,
                                     make_optimizer(optim_cfg), mesh, rules))


def _kept(optim_cfg: OptimConfig, shardings: TrainState) -> TrainState:
  """The shardings the state is kept in between steps: host memory under `optim.offload`
  "between_updates" (`r1jax.rl.offload`), else the device's."""
  if optim_cfg.offload == "between_updates":
    return offload.in_memory(shardings, offload.HOST)
  return shardings


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


@functools.lru_cache(maxsize=8)
def _fresh_init(model_cfg: models.ModelConfig, optim_cfg: OptimConfig, mesh: Mesh, rules):
  tx = make_optimizer(optim_cfg)

  def init(rng):
    params = models.init(model_cfg, rng)
    return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))
  return jax.jit(init, out_shardings=state_shardings(model_cfg, optim_cfg, mesh, rules))


def init_train_state(model_cfg: models.ModelConfig, optim_cfg: OptimConfig, source, mesh: Mesh,
                     rules=DEFAULT_RULES, *, axes=None) -> TrainState:
  """A train state created in its shardings, at step 0.

  `source` is a PRNG key (fresh params of `model_cfg`) or a parameter pytree to start from; for a
  tree other than the policy's (the reward model's), `axes` gives its logical axes.
  """
  rules = tuple(rules)
  with use_mesh(mesh, rules):
    if _is_key(source):
      return _fresh_init(model_cfg, optim_cfg, mesh, rules)(source)
    tx = make_optimizer(optim_cfg)
    abstract = jax.eval_shape(lambda p: p, source)
    shardings = _shardings(models.param_axes(model_cfg) if axes is None else axes, abstract, tx,
                           mesh, rules)
    wrap = jax.jit(lambda p: TrainState(p, tx.init(p), jnp.zeros((), jnp.int32)),
                   out_shardings=_kept(optim_cfg, shardings))
    return wrap(jax.device_put(source, shardings.params))


def jit_step(step_fn, shardings: TrainState, batch, mesh: Mesh, rules=DEFAULT_RULES):
  """`step_fn(state, batch) -> (state, metrics)` jitted under `mesh`: the state in `shardings`
  and donated, each array of `batch` (arrays or ShapeDtypeStructs of the shapes it will get)
  split along its leading axis by the `batch` rule, the metrics replicated. A state kept in host
  memory (`r1jax.rl.offload`) is moved to the device for the step and its result back."""
  def traced(state, batch):
    if offload.on_host(shardings):
      state = offload.fetch(state, shardings)
    with use_mesh(mesh, rules):
      return step_fn(state, batch)
  batch_shardings = jax.tree.map(
      lambda x: logical_sharding(("batch",) + (None,) * (np.ndim(x) - 1), np.shape(x), mesh,
                                 rules), batch)
  return jax.jit(traced, in_shardings=(shardings, batch_shardings),
                 out_shardings=(shardings, NamedSharding(mesh, PartitionSpec())),
                 donate_argnums=0)


def _micro_split(batch: LearnerBatch, mask, k: int) -> tuple[LearnerBatch, jax.Array]:
  """[Bp, ...] / [Bp*G, ...] -> [k, Bp/k, ...] / [k, Bp/k*G, ...]; chunk i holds prompts
  i, i+k, ... so that every chunk spreads over the same devices as the whole batch."""
  bp = batch.num_prompts

  def split(x, per_prompt: bool):
    if per_prompt:
      return jnp.swapaxes(x.reshape(bp // k, k, *x.shape[1:]), 0, 1)
    g = x.shape[0] // bp
    x = jnp.swapaxes(x.reshape(bp // k, k, g, *x.shape[1:]), 0, 1)
    return x.reshape(k, bp // k * g, *x.shape[3:])
  fields = {name: split(x, name in PROMPT_FIELDS) for name, x in batch.fields().items()}
  return LearnerBatch(**fields), split(mask, False)


def _check_batch(grpo_cfg: GRPOConfig, batch: LearnerBatch) -> None:
  g = batch.group_size()
  if g != grpo_cfg.num_generations:
    raise ConfigError("num_generations", f"got {grpo_cfg.num_generations}; the batch has "
                      f"{g * batch.num_prompts} outputs for {batch.num_prompts} prompts")
  if batch.num_prompts % grpo_cfg.micro_batches:
    raise ConfigError("micro_batches", f"got {grpo_cfg.micro_batches}; must divide the "
                      f"minibatch's {batch.num_prompts} groups (micro-batches hold whole groups)")


def _with_router_bias(params, bias):
  moe_stack = dict(params["moe"])
  moe_stack["moe"] = dict(moe_stack["moe"], router_bias=bias)
  return dict(params, moe=moe_stack)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Accumulated:
  """The minibatch's gradient and the sums behind its metrics."""
  grads: Any
  terms: LossTerms       # numerators summed over micro-batches
  aux_loss: jax.Array    # MoE auxiliary loss summed over micro-batches
  expert_load: jax.Array
  denominator: jax.Array  # of the whole minibatch (>= 1)
  tokens: jax.Array       # loss tokens of the whole minibatch (>= 1)
  replay_mismatch: jax.Array  # routing replay: [changed router decisions, decisions] summed


def _replay_mismatch(mb: LearnerBatch, changed) -> jax.Array:
  """[router decisions the learner would change, decisions] over the completion tokens that the
  sampler fed back in (all but each output's last: their routes were recorded), with replay."""
  if mb.expert_ids is None or changed is None:
    return jnp.zeros((2,), jnp.float32)
  fed = mb.completion_mask[:, 1:].astype(jnp.float32)   # token j was fed iff token j + 1 exists
  # Under sequence parallelism the fed positions are padded to whole slices per device.
  changed = changed[:, :fed.shape[1]]
  return jnp.stack([jnp.sum(changed * fed), jnp.sum(fed)])


def minibatch_gradients(grpo_cfg: GRPOConfig, stats_fn, params, batch: LearnerBatch, *,
                        aux_coef: float = 0.0, axes=None) -> Accumulated:
  """The gradient of the minibatch loss, accumulated over `micro_batches` chunks of whole groups:
  each chunk's loss numerator is divided by the denominator of the whole minibatch (fixed before
  any chunk is scored), so the sum is the exact minibatch mean. `stats_fn(params, chunk)` scores
  one chunk: (log-probs, entropies, the MoE aux {"aux_loss", "expert_load" or None, optionally
  "replay_mismatch_tokens"}). `axes`, the params' logical axes, keeps the float32 accumulator
  sharded as the params are (each micro-batch's gradient is reduce-scattered into it, never
  held whole)."""
  _check_batch(grpo_cfg, batch)
  k = grpo_cfg.micro_batches
  mask = loss_mask(grpo_cfg, batch.completion_mask, batch.truncated)
  denom = jnp.maximum(denominator(mask, grpo_cfg.aggregation), 1.0)
  tokens = jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)
  micro = _micro_split(batch, mask, k)

  def micro_loss(params, micro):
    mb, mb_mask = micro
    logp, entropy, aux = stats_fn(params, mb)
    is_weights = None if mb.sampler_logprobs is None else importance_weights(
        mb.old_logprobs, mb.sampler_logprobs, grpo_cfg.is_correction, grpo_cfg.is_cap,
        grpo_cfg.log_ratio_clamp)
    terms, _ = grpo_loss(grpo_cfg, logp, mb.old_logprobs, mb.ref_logprobs, mb.advantages,
                         mb_mask, entropy, is_weights)
    load = jnp.zeros(()) if aux["expert_load"] is None else aux["expert_load"]
    mismatch = _replay_mismatch(mb, aux.get("replay_mismatch_tokens"))
    return (terms.loss / denom + aux_coef * aux["aux_loss"] / k,
            (terms, aux["aux_loss"], load, mismatch))

  def body(carry, mb):
    grads, sums = carry
    (_, parts), g = jax.value_and_grad(micro_loss, has_aux=True)(params, mb)
    grads = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), grads, g)
    if axes is not None:
      grads = jax.tree.map(constrain, grads, axes)
    return (grads, jax.tree.map(jnp.add, sums, parts)), None

  zero_grads = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  sums_shape = jax.eval_shape(lambda: micro_loss(params, jax.tree.map(lambda x: x[0], micro))[1])
  zero_sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape)
  (grads, (terms, aux_loss, load, mismatch)), _ = jax.lax.scan(body, (zero_grads, zero_sums), micro)
  return Accumulated(grads, terms, aux_loss, load, denom, tokens, mismatch)


def _update(model_cfg: models.ModelConfig, grpo_cfg: GRPOConfig, tx, lr_schedule,
            temperature: float, state: TrainState, batch: LearnerBatch):
  moe_cfg = model_cfg.moe if model_cfg.num_moe_layers else None
  aux_coef = moe_cfg.aux_loss_coef if moe_cfg else 0.0
  k = grpo_cfg.micro_batches

  def stats(params, mb: LearnerBatch):
    # Mixed precision: the float32 master weights are cast (where they lie, before any gather)
    # to the compute dtype; the gradient flows back to the master weights in float32.
    routes = None if mb.expert_ids is None else jnp.moveaxis(mb.expert_ids, 1, 0)
    return completion_stats(model_cfg, compute_weights(model_cfg, params), mb.prompt_tokens,
                            mb.prompt_mask, mb.completion_tokens, temperature=temperature,
                            expert_ids=routes)

  acc = minibatch_gradients(grpo_cfg, stats, state.params, batch, aux_coef=aux_coef,
                            axes=models.param_axes(model_cfg))
  updates, opt_state = tx.update(acc.grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if moe_cfg is not None and moe_cfg.balance == "aux_free":
    bias = params["moe"]["moe"]["router_bias"]
    new_bias = balance_bias_update(bias.astype(jnp.float32), acc.expert_load,
                                   moe_cfg.bias_update_rate)
    params = _with_router_bias(params, new_bias.astype(bias.dtype))
  new_state = TrainState(params, opt_state, state.step + 1)
  metrics = _metrics(acc.terms, acc.denominator, acc.tokens, batch, optax.global_norm(acc.grads),
                     lr_schedule(state.step))
  metrics["loss"] = acc.terms.loss / acc.denominator + aux_coef * acc.aux_loss / k
  if moe_cfg is not None:
    load = acc.expert_load
    metrics["moe/aux_loss"] = acc.aux_loss / k
    metrics["moe/max_load_over_mean"] = jnp.max(load / jnp.maximum(
        jnp.mean(load, axis=-1, keepdims=True), 1.0))
  if batch.expert_ids is not None:
    metrics["moe/replay_mismatch"] = acc.replay_mismatch[0] / jnp.maximum(acc.replay_mismatch[1],
                                                                          1.0)
  if batch.sampler_logprobs is not None:   # pi_old recomputed: how far the sampler was from it
    metrics.update(mismatch_metrics(
        batch.old_logprobs, batch.sampler_logprobs,
        loss_mask(grpo_cfg, batch.completion_mask, batch.truncated), grpo_cfg.is_correction,
        grpo_cfg.is_cap, grpo_cfg.log_ratio_clamp))
  return new_state, metrics


def _metrics(terms: LossTerms, denom, tokens, batch: LearnerBatch, grad_norm, lr
             ) -> dict[str, jax.Array]:
  adv = batch.advantages.astype(jnp.float32)
  lengths = jnp.sum(batch.completion_mask.astype(jnp.float32), axis=1)
  return {
      "loss/policy": terms.policy / denom,
      "loss/kl": terms.kl / denom,
      "loss/entropy": terms.entropy / denom,
      "clip_frac/low": terms.token_clip_low / tokens,
      "clip_frac/high": terms.token_clip_high / tokens,
      "clip_frac/dual": terms.token_clip_dual / tokens,
      "approx_kl/old": terms.token_kl_old / tokens,
      "approx_kl/ref": terms.token_kl_ref / tokens,
      "entropy": terms.token_entropy / tokens,
      "advantage/mean": jnp.mean(adv), "advantage/std": jnp.std(adv),
      "advantage/min": jnp.min(adv), "advantage/max": jnp.max(adv),
      "response_length/mean": jnp.mean(lengths), "response_length/max": jnp.max(lengths),
      "response_length/truncated_frac": jnp.mean(batch.truncated.astype(jnp.float32)),
      "grad_norm": grad_norm, "lr": jnp.asarray(lr, jnp.float32),
  }


def make_train_step(model_cfg: models.ModelConfig, grpo_cfg: GRPOConfig, optim_cfg: OptimConfig,
                    mesh: Mesh, rules=DEFAULT_RULES, *, temperature: float = 1.0):
  """`train_step(state, batch) -> (state, metrics)`, jitted on `mesh`, donating `state`.

  `batch` is a `LearnerBatch` (or a mapping of its fields, as `r1jax.distributed.global_batch`
  gives) sampled at `temperature`. Its arrays are sharded along their leading (batch) axis by the
  `batch` rule, per array shape (a mesh axis that does not divide a batch dimension is left out);
  one compilation is kept per distinct set of batch shapes.
  """
  for cfg in (model_cfg, grpo_cfg, optim_cfg):
    cfg.validate()
  shardings = state_shardings(model_cfg, optim_cfg, mesh, rules)
  step_fn = functools.partial(_update, model_cfg, grpo_cfg, make_optimizer(optim_cfg),
                              learning_rate_schedule(optim_cfg), temperature)
  compiled: dict[Any, Any] = {}

  def jitted(batch: LearnerBatch):
    """The jitted step for this batch's shapes; arrays or ShapeDtypeStructs (the planner calls
    `.lower(abstract_state, abstract_batch)` on it)."""
    signature = tuple((key, np.shape(x), np.dtype(getattr(x, "dtype", None) or
                                                  np.result_type(x)).str)
                      for key, x in batch.fields().items())
    if signature not in compiled:
      compiled[signature] = jit_step(step_fn, shardings, batch, mesh, rules)
    return compiled[signature]

  def train_step(state: TrainState, batch: LearnerBatch | Mapping[str, Any]
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    if not isinstance(batch, LearnerBatch):
      batch = LearnerBatch.of(batch)
    return jitted(batch)(state, batch)

  train_step.jitted = jitted
  return train_step
