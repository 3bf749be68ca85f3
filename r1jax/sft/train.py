"""Supervised fine-tuning and distillation: next-token loss on response tokens of packed rows.

Used for the demo's base model (pretraining on generated traces), cold-start SFT, and
distillation on rejection-sampled traces. It shares the RL learner's optimizer, born-sharded train
state and step convention (:func:`sft_step` is pure, jitted with explicit shardings and the state
donated) and Orbax checkpoints; rerunning with the same workdir resumes from the last save.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax import mesh as mesh_lib
from r1jax.checkpoint import Checkpointer, abstract_like
from r1jax.config import ConfigError, check_choice, check_range
from r1jax.metrics import MetricsWriter, progress
from r1jax.models import ModelConfig
from r1jax.rl.config import OptimConfig
from r1jax.rl.optim import make_optimizer
from r1jax.rl.step import TrainState, init_train_state, jit_step
from r1jax.sft.loss import lm_loss
from r1jax.sft.packing import pack


COLD_START = "cold_start"
COLD_START_STYLES = ("steps", "reflective")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
  """`data` lists trace JSONL files (rows with "prompt" and "completion", e.g. written by the
  rejection job) and/or "cold_start": correct, readable traces generated for the data pipeline's
  train prompts in `cold_start_style`. `evaluate` scores the result with the `eval` section."""
  steps: int = 1000
  batch_rows: int = 16
  row_len: int = 256
  loss_on_prompt: bool = False
  log_every: int = 50
  save_every: int = 500
  keep_checkpoints: int = 2
  seed: int = 0
  data: tuple[str, ...] = (COLD_START,)
  cold_start_style: str = "reflective"
  max_examples: int = 0           # 0 = every example the sources give
  evaluate: bool = False
  export_every_save: bool = False  # also refresh <workdir>/export at each checkpoint

  def validate(self):
    for key in ("steps", "batch_rows", "row_len", "log_every", "save_every", "keep_checkpoints"):
      check_range(key, getattr(self, key), 1)
    if not self.data:
      raise ConfigError("data", f"is empty; name trace JSONL files and/or {COLD_START!r}")
    check_choice("cold_start_style", self.cold_start_style, COLD_START_STYLES)
    check_range("max_examples", self.max_examples, 0)


def epoch_batch(n: int, step: int, batch_size: int, seed: int) -> np.ndarray:
  """Item indices of batch `step` when each epoch visits all n items in a seeded order (a batch
  may straddle two epochs). A pure function of the step, so a resumed run sees the same batches."""
  epochs, positions = np.divmod(np.arange(step * batch_size, (step + 1) * batch_size), n)
  orders = {e: np.random.default_rng([seed, e]).permutation(n) for e in np.unique(epochs)}
  return np.array([orders[e][p] for e, p in zip(epochs, positions)])


def sft_step(model_cfg: ModelConfig, tx: optax.GradientTransformation, state: TrainState, batch):
  """One update on packed rows -> (state, {"loss", "grad_norm"}); the loss is the mean over the
  batch's target tokens, plus the MoE auxiliary loss."""
  def loss_fn(p):
    total, count, aux_loss = lm_loss(model_cfg, p, batch)
    return total / jnp.maximum(count, 1.0) + aux_loss * (model_cfg.moe.aux_loss_coef
                                                         if model_cfg.moe else 0.0)
  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), {
      "loss": loss, "grad_norm": optax.global_norm(grads)}


def train_sft(model_cfg: ModelConfig, sft_cfg: SFTConfig, optim_cfg: OptimConfig,
              pairs: Sequence[tuple[Sequence[int], Sequence[int]]], workdir: str, *,
              init_params, mesh=None, rules=mesh_lib.DEFAULT_RULES,
              on_save: Callable[[int, Any], None] | None = None):
  """Trains on (prompt ids, completion ids) pairs; returns the final params. `on_save(step,
  params)` runs after each checkpoint (the job's export at every save)."""
  mesh = mesh or mesh_lib.make_mesh(mesh_lib.MeshConfig(), jax.devices()[:1])
  packed = pack(pairs, sft_cfg.row_len, loss_on_prompt=sft_cfg.loss_on_prompt)
  state = init_train_state(model_cfg, optim_cfg, init_params, mesh, rules)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=sft_cfg.keep_checkpoints)
  start = ckpt.latest_step() or 0
  if start:
    saved, _, _ = ckpt.restore(start, abstract_like(_saved(state)))
    state = TrainState(saved["params"], saved["opt_state"],
                       jax.device_put(np.int32(start), state.step.sharding))
    logging.info("resumed SFT from step %d", start)
  batch_of = lambda step: {name: v[epoch_batch(packed["tokens"].shape[0], step,
                                               sft_cfg.batch_rows, sft_cfg.seed)]
                           for name, v in packed.items()}
  step_fn = jit_step(functools.partial(sft_step, model_cfg, make_optimizer(optim_cfg)),
                     jax.tree.map(lambda x: x.sharding, state), batch_of(start), mesh, rules)
  writer = MetricsWriter(workdir)
  bar = progress(sft_cfg.steps, start, "sft")
  for step in range(start, sft_cfg.steps):
    state, metrics = step_fn(state, batch_of(step))
    bar.update(1)
    if (step + 1) % sft_cfg.log_every == 0 or step + 1 == sft_cfg.steps:
      metrics = jax.device_get(metrics)
      if not math.isfinite(float(metrics["loss"])):
        raise FloatingPointError(f"SFT loss is {metrics['loss']} at step {step + 1}; the last "
                                 f"good checkpoint is kept in {ckpt.directory}")
      writer.write(step + 1, metrics)
      bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
    if (step + 1) % sft_cfg.save_every == 0 or step + 1 == sft_cfg.steps:
      ckpt.save(step + 1, _saved(state), {"step": step + 1})
      if on_save is not None:
        on_save(step + 1, state.params)
  bar.close()
  ckpt.close()
  writer.close()
  return state.params


def _saved(state: TrainState) -> dict:
  """What a checkpoint holds (the step is in its metadata)."""
  return {"params": state.params, "opt_state": state.opt_state}
