"""The optimizer: global-norm clipping, then AdamW on a warmup + constant/cosine schedule.

Which parameters the optimizer touches is decided by name: the MoE `router_bias` is not trained
by gradients (the auxiliary-loss-free balance rule moves it after each step), so AdamW neither
updates nor decays it; norm gains and biases are updated but not weight-decayed.
"""

from __future__ import annotations

import functools

import jax
import optax

from r1jax.rl.config import OptimConfig

FROZEN = ("router_bias",)


def _leaf_name(path) -> str:
  key = path[-1]
  return str(getattr(key, "key", getattr(key, "name", key)))


def trainable_mask(params):
  """A pytree of bools: True for parameters that the optimizer updates."""
  return jax.tree_util.tree_map_with_path(lambda path, _: _leaf_name(path) not in FROZEN, params)


def _decayed(params):
  """Weight decay on weight matrices only: not on norm gains (`*_norm`) or biases (`*_bias`)."""
  def decays(path, _):
    name = _leaf_name(path)
    return not (name.endswith("norm") or name.endswith("bias"))
  return jax.tree_util.tree_map_with_path(decays, params)


def learning_rate_schedule(cfg: OptimConfig) -> optax.Schedule:
  """Linear warmup from 0 to cfg.lr, then constant, or cosine to lr * final_lr_fraction."""
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.total_steps, end_value=cfg.lr * cfg.final_lr_fraction)
  constant = optax.constant_schedule(cfg.lr)
  if not cfg.warmup_steps:
    return constant
  warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
  return optax.join_schedules([warmup, constant], [cfg.warmup_steps])


@functools.lru_cache(maxsize=None)
def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """Clip by global norm (if cfg.grad_clip > 0), AdamW on trainable leaves, zero on frozen ones.

  Which leaves are which is read from the params' names when the state is initialised, so one
  optimizer per config serves every params tree: the state builder, its shardings and the step
  all share this object (the cache makes it one per run).
  """
  adamw = optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay, mask=_decayed)
  labels = lambda params: jax.tree.map(lambda t: "train" if t else "frozen", trainable_mask(params))
  chain = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
  return optax.chain(*chain, optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()},
                                                   labels))
