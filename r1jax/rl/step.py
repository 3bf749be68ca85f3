"""The GRPO update as one pure, jitted function over a sharded train state.

`train_step(state, batch) -> (state, metrics)` scores a minibatch of whole groups under the
current policy, accumulates the gradient over `micro_batches` chunks of whole groups (each
chunk's loss numerator divided by the denominator of the whole minibatch, so the result is the
exact minibatch mean), clips and applies AdamW, moves the MoE router bias by the balance rule,
and returns scalar metrics. The state is born sharded (`init_train_state`), the step is jitted
with explicit in/out shardings and donates the state. The step uses no randomness.

Batch (a dict of arrays; one minibatch of Bp prompts x G outputs):
  prompt_tokens [Bp, P] int32 left-padded; prompt_mask [Bp, P] bool;
  completion_tokens [Bp*G, T] int32; completion_mask [Bp*G, T] bool (generated tokens incl. EOS);
  old_logprobs [Bp*G, T] f32 (pi_old, from the sampler, same temperature convention);
  ref_logprobs [Bp*G, T] f32; advantages [Bp*G] f32; truncated [Bp*G] bool (no EOS).
Other keys (e.g. `rewards`) may ride along; the step ignores them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r1jax import models
from r1jax.config import ConfigError
from r1jax.mesh import DEFAULT_RULES, logical_sharding, tree_shardings, use_mesh
from r1jax.models.moe import balance_bias_update
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rl.logprobs import completion_stats
from r1jax.rl.losses import LossTerms, denominator, grpo_loss, loss_mask
from r1jax.rl.optim import learning_rate_schedule, make_optimizer
from r1jax.rl.schedule import PROMPT_KEYS

LEARNER_KEYS = ("prompt_tokens", "prompt_mask", "completion_tokens", "completion_mask",
                "old_logprobs", "ref_logprobs", "advantages", "truncated")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  """What the optimizer carries: policy params, optimizer state, optimizer steps taken."""
  params: Any
  opt_state: Any
  step: jax.Array


def _init_fn(model_cfg: models.ModelConfig, optim_cfg: OptimConfig):
  def init_state(rng):
    params = models.init(model_cfg, rng)
    opt_state = make_optimizer(optim_cfg, params).init(params)
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32))
  return init_state


def state_shardings(model_cfg: models.ModelConfig, optim_cfg: OptimConfig, mesh: Mesh,
                    rules=DEFAULT_RULES) -> TrainState:
  """NamedShardings of the train state: params (and Adam moments) by their logical axes,
  scalars replicated."""
  abstract = jax.eval_shape(_init_fn(model_cfg, optim_cfg), jax.random.key(0))
  params = tree_shardings(models.param_axes(model_cfg), abstract.params, mesh, rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  # Frozen leaves (router_bias) appear as MaskedNode in the AdamW moments: keep them as they are.
  masked = lambda x: isinstance(x, optax.MaskedNode)
  opt_state = optax.tree_map_params(
      make_optimizer(optim_cfg, abstract.params),
      lambda leaf, sharding: leaf if masked(leaf) else sharding,
      abstract.opt_state, params, transform_non_params=lambda _: replicated, is_leaf=masked)
  return TrainState(params, opt_state, replicated)


@functools.lru_cache(maxsize=8)
def _jitted_init(model_cfg: models.ModelConfig, optim_cfg: OptimConfig, mesh: Mesh, rules):
  shardings = state_shardings(model_cfg, optim_cfg, mesh, rules)
  return jax.jit(_init_fn(model_cfg, optim_cfg), out_shardings=shardings)


def init_train_state(model_cfg: models.ModelConfig, optim_cfg: OptimConfig, rng: jax.Array,
                     mesh: Mesh, rules=DEFAULT_RULES) -> TrainState:
  """A fresh train state, created directly in its shardings (never whole on one device)."""
  with use_mesh(mesh, rules):
    return _jitted_init(model_cfg, optim_cfg, mesh, tuple(rules))(rng)


def _micro_split(batch: dict, k: int) -> dict:
  """[Bp, ...] / [Bp*G, ...] -> [k, Bp/k, ...] / [k, Bp/k*G, ...]; chunk i holds prompts
  i, i+k, ... so that every chunk spreads over the same devices as the whole batch."""
  bp = batch["prompt_tokens"].shape[0]
  def split(key, x):
    if key in PROMPT_KEYS:
      return jnp.swapaxes(x.reshape(bp // k, k, *x.shape[1:]), 0, 1)
    g = x.shape[0] // bp
    x = jnp.swapaxes(x.reshape(bp // k, k, g, *x.shape[1:]), 0, 1)
    return x.reshape(k, bp // k * g, *x.shape[3:])
  return {key: split(key, x) for key, x in batch.items()}


def _check_batch(grpo_cfg: GRPOConfig, batch: dict) -> None:
  missing = [k for k in LEARNER_KEYS if k not in batch]
  if missing:
    raise ValueError(f"batch: missing {missing}; the learner needs {LEARNER_KEYS}")
  bp, n = batch["prompt_tokens"].shape[0], batch["completion_tokens"].shape[0]
  if n != bp * grpo_cfg.num_generations:
    raise ConfigError("num_generations", f"got {grpo_cfg.num_generations}; the batch has {n} "
                      f"outputs for {bp} prompts")
  if bp % grpo_cfg.micro_batches:
    raise ConfigError("micro_batches", f"got {grpo_cfg.micro_batches}; must divide the "
                      f"minibatch's {bp} groups (micro-batches hold whole groups)")


def _with_router_bias(params, bias):
  moe_stack = dict(params["moe"])
  moe_stack["moe"] = dict(moe_stack["moe"], router_bias=bias)
  return dict(params, moe=moe_stack)


def _update(model_cfg: models.ModelConfig, grpo_cfg: GRPOConfig, tx, lr_schedule,
            state: TrainState, batch: dict):
  _check_batch(grpo_cfg, batch)
  k = grpo_cfg.micro_batches
  mask = loss_mask(grpo_cfg, batch["completion_mask"], batch["truncated"])
  # Global normalisers of the whole minibatch, fixed before any micro-batch is scored.
  denom = jnp.maximum(denominator(mask, grpo_cfg.aggregation), 1.0)
  tokens = jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)
  micro = _micro_split({**{key: batch[key] for key in LEARNER_KEYS}, "loss_mask": mask}, k)
  moe_cfg = model_cfg.moe if model_cfg.num_moe_layers else None
  aux_coef = moe_cfg.aux_loss_coef if moe_cfg else 0.0

  def micro_loss(params, mb):
    logp, entropy, aux = completion_stats(model_cfg, params, mb["prompt_tokens"],
                                          mb["prompt_mask"], mb["completion_tokens"],
                                          temperature=grpo_cfg.temperature)
    terms, _ = grpo_loss(grpo_cfg, logp, mb["old_logprobs"], mb["ref_logprobs"],
                         mb["advantages"], mb["loss_mask"], entropy)
    loss = terms.loss / denom + aux_coef * aux["aux_loss"] / k
    load = aux["expert_load"] if moe_cfg else jnp.zeros(())
    return loss, (terms, aux["aux_loss"], load)

  def body(carry, mb):
    grads, sums = carry
    (_, (terms, aux_loss, load)), g = jax.value_and_grad(micro_loss, has_aux=True)(state.params, mb)
    grads = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), grads, g)
    sums = jax.tree.map(jnp.add, sums, (terms, aux_loss, load))
    return (grads, sums), None

  zero_grads = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
  sums_shape = jax.eval_shape(lambda: micro_loss(state.params, jax.tree.map(lambda x: x[0], micro))[1])
  zero_sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape)
  (grads, (terms, aux_loss, load)), _ = jax.lax.scan(body, (zero_grads, zero_sums), micro)

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if moe_cfg is not None and moe_cfg.balance == "aux_free":
    bias = params["moe"]["moe"]["router_bias"]
    new_bias = balance_bias_update(bias.astype(jnp.float32), load, moe_cfg.bias_update_rate)
    params = _with_router_bias(params, new_bias.astype(bias.dtype))
  new_state = TrainState(params, opt_state, state.step + 1)
  metrics = _metrics(terms, denom, tokens, batch, optax.global_norm(grads),
                     lr_schedule(state.step))
  metrics["loss"] = terms.loss / denom + aux_coef * aux_loss / k
  if moe_cfg is not None:
    metrics["moe/aux_loss"] = aux_loss / k
    metrics["moe/max_load_over_mean"] = jnp.max(load / jnp.maximum(
        jnp.mean(load, axis=-1, keepdims=True), 1.0))
  return new_state, metrics


def _metrics(terms: LossTerms, denom, tokens, batch, grad_norm, lr) -> dict[str, jax.Array]:
  adv = batch["advantages"].astype(jnp.float32)
  lengths = jnp.sum(batch["completion_mask"].astype(jnp.float32), axis=1)
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
      "response_length/truncated_frac": jnp.mean(batch["truncated"].astype(jnp.float32)),
      "grad_norm": grad_norm, "lr": jnp.asarray(lr, jnp.float32),
  }


def make_train_step(model_cfg: models.ModelConfig, grpo_cfg: GRPOConfig, optim_cfg: OptimConfig,
                    mesh: Mesh, rules=DEFAULT_RULES):
  """`train_step(state, batch) -> (state, metrics)`, jitted on `mesh`, donating `state`.

  Batch arrays are sharded along their leading (batch) axis by the `batch` rule, per array
  shape (a mesh axis that does not divide a batch dimension is left out); one compilation is
  kept per distinct set of batch shapes.
  """
  for cfg in (model_cfg, grpo_cfg, optim_cfg):
    cfg.validate()
  shardings = state_shardings(model_cfg, optim_cfg, mesh, rules)
  abstract_params = jax.eval_shape(_init_fn(model_cfg, optim_cfg), jax.random.key(0)).params
  tx = make_optimizer(optim_cfg, abstract_params)
  lr_schedule = learning_rate_schedule(optim_cfg)
  replicated = NamedSharding(mesh, PartitionSpec())

  def step_fn(state, batch):
    with use_mesh(mesh, rules):
      return _update(model_cfg, grpo_cfg, tx, lr_schedule, state, batch)

  compiled: dict[Any, Any] = {}

  def jitted(batch: dict):
    """The jitted step for this batch's shapes; arrays or ShapeDtypeStructs (the planner calls
    `.lower(abstract_state, abstract_batch)` on it)."""
    signature = tuple(sorted((key, np.shape(x), np.dtype(getattr(x, "dtype", None) or
                                                        np.result_type(x)).str)
                             for key, x in batch.items()))
    if signature not in compiled:
      batch_shardings = {key: logical_sharding(("batch",) + (None,) * (np.ndim(x) - 1),
                                               np.shape(x), mesh, rules)
                         for key, x in batch.items()}
      compiled[signature] = jax.jit(step_fn, in_shardings=(shardings, batch_shardings),
                                    out_shardings=(shardings, replicated), donate_argnums=0)
    return compiled[signature]

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict[str, jax.Array]]:
    return jitted(batch)(state, batch)

  train_step.jitted = jitted
  return train_step
