"""DPO training: the policy against a frozen reference (the starting policy) on preference pairs.

The reference's summed completion log-probs are computed once, before the first update (the
reference never changes), so the state holds the policy only. :func:`dpo_step` is pure and
jitted with explicit shardings and the state donated (`r1jax.rl.step.jit_step`), as the SFT and
reward-model steps are.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax import mesh as mesh_lib
from r1jax.config import check_range
from r1jax.dpo.loss import dpo_loss, sequence_logps
from r1jax.metrics import MetricsWriter, progress
from r1jax.models import ModelConfig
from r1jax.rl.config import OptimConfig
from r1jax.rl.optim import make_optimizer
from r1jax.rl.step import TrainState, init_train_state, jit_step
from r1jax.sft.packing import pack
from r1jax.sft.train import epoch_batch

SIDES = ("chosen", "rejected")


@dataclasses.dataclass(frozen=True)
class DPOConfig:
  """`data` is a rejection run's traces.jsonl (e.g. "stage:rejection") written with
  `rejection.write_failed=true`: its verified answers are chosen, the failed ones beside it
  rejected."""
  data: str = ""
  beta: float = 0.1
  steps: int = 100
  batch_pairs: int = 8
  row_len: int = 256
  max_pairs_per_prompt: int = 0   # 0 = every (verified, failed) pair the zip gives
  log_every: int = 10
  seed: int = 0

  def validate(self):
    check_range("beta", self.beta, 0.0, low_open=True)
    for key in ("steps", "batch_pairs", "row_len", "log_every"):
      check_range(key, getattr(self, key), 1)
    check_range("max_pairs_per_prompt", self.max_pairs_per_prompt, 0)


def encode(pairs: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], row_len: int
           ) -> dict[str, dict[str, np.ndarray]]:
  """(prompt ids, chosen ids, rejected ids) -> {"chosen": rows, "rejected": rows}, one sequence
  per row (row i of both sides is pair i), the loss mask on completion tokens only."""
  return {side: {k: np.concatenate([pack([(p[0], p[1 + s])], row_len)[k] for p in pairs])
                 for k in ("tokens", "targets", "segment_ids", "positions", "loss_mask")}
          for s, side in enumerate(SIDES)}


def reference_logps(model_cfg: ModelConfig, params, rows, batch: int = 32) -> np.ndarray:
  """Summed completion log-probs [R] of frozen `params` (the reference), a batch at a time."""
  fn = jax.jit(lambda p, r: sequence_logps(model_cfg, p, r)[0])
  n = rows["tokens"].shape[0]
  return np.concatenate([np.asarray(fn(params, {k: v[i:i + batch] for k, v in rows.items()}))
                         for i in range(0, n, batch)])


def dpo_step(model_cfg: ModelConfig, beta: float, tx: optax.GradientTransformation,
             state: TrainState, batch):
  """One update -> (state, {"loss", "reward_accuracy", "reward_margin", "grad_norm"}), the loss
  the mean over the batch's pairs plus the MoE auxiliary loss."""
  rows = jax.tree.map(lambda c, r: jnp.concatenate([c, r]), batch["chosen"], batch["rejected"])
  n = batch["ref_chosen"].shape[0]

  def loss_fn(p):
    logp, aux_loss = sequence_logps(model_cfg, p, rows)
    total, count, stats = dpo_loss(logp[:n], logp[n:], batch["ref_chosen"],
                                   batch["ref_rejected"], beta)
    coef = model_cfg.moe.aux_loss_coef if model_cfg.moe else 0.0
    return total / count + aux_loss * coef, {k: v / count for k, v in stats.items()}
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), {
      "loss": loss, "grad_norm": optax.global_norm(grads), **stats}


def train_dpo(model_cfg: ModelConfig, cfg: DPOConfig, optim_cfg: OptimConfig,
              pairs: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]],
              workdir: str, *, init_params, mesh=None, rules=mesh_lib.DEFAULT_RULES):
  """Trains on (prompt, chosen, rejected) token-id triples from `init_params`, which are also
  the reference; returns (params, the logged metrics of each logging step)."""
  mesh = mesh or mesh_lib.make_mesh(mesh_lib.MeshConfig(), jax.devices()[:1])
  data = encode(pairs, cfg.row_len)
  # Before the train state exists: its first step donates buffers it may share with init_params.
  for side in SIDES:
    data[f"ref_{side}"] = reference_logps(model_cfg, init_params, data[side])
  state = init_train_state(model_cfg, optim_cfg, init_params, mesh, rules)
  n = len(pairs)
  batch_of = lambda step: jax.tree.map(lambda v: v[epoch_batch(n, step, cfg.batch_pairs,
                                                               cfg.seed)], data)
  step_fn = jit_step(functools.partial(dpo_step, model_cfg, cfg.beta, make_optimizer(optim_cfg)),
                     jax.tree.map(lambda x: x.sharding, state), batch_of(0), mesh, rules)
  writer = MetricsWriter(workdir)
  bar = progress(cfg.steps, 0, "dpo")
  logged = []
  for step in range(cfg.steps):
    state, metrics = step_fn(state, batch_of(step))
    bar.update(1)
    if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not math.isfinite(metrics["loss"]):
        raise FloatingPointError(f"DPO loss is {metrics['loss']} at step {step + 1}")
      writer.write(step + 1, metrics)
      logged.append(metrics)
  bar.close()
  writer.close()
  return state.params, logged
