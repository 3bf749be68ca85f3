"""Bradley-Terry training of the scalar reward model.

Loss per pair: -log sigmoid(s(prompt, chosen) - s(prompt, rejected)), averaged over the batch.
The trunk starts from a policy (as R1's reward models start from the policy family), the head
from zero. :func:`rm_step` is the pure step, jitted with explicit shardings and the state donated
(`r1jax.rl.step.jit_step`); :func:`pairwise_accuracy` measures held-out pairs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax import mesh as mesh_lib
from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.templates import apply_template
from r1jax.metrics import MetricsWriter
from r1jax.models import ModelConfig
from r1jax.reward_model import model as rm
from r1jax.reward_model.config import RewardModelConfig
from r1jax.rl.config import OptimConfig
from r1jax.rl.optim import make_optimizer
from r1jax.rl.step import TrainState, init_train_state, jit_step
from r1jax.sft.train import epoch_batch


def bradley_terry_loss(chosen_scores, rejected_scores):
  """Mean of -log sigmoid(chosen - rejected)."""
  return jnp.mean(jax.nn.softplus(rejected_scores - chosen_scores))


def encode_pairs(pairs, tokenizer, template: str, max_len: int) -> dict[str, np.ndarray]:
  """Right-padded chosen and rejected sequences (templated prompt + response + EOS)."""
  out = {}
  for side in ("chosen", "rejected"):
    seqs = [prompt_token_ids(apply_template(template, p["prompt"]), tokenizer)
            + tokenizer.encode(p[side]) + [tokenizer.eos_id] for p in pairs]
    out[f"{side}_tokens"], out[f"{side}_lengths"] = rm.right_padded(seqs, max_len, tokenizer.pad_id)
  return out


def _pair_scores(model_cfg, params, batch):
  tokens = jnp.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]])
  lengths = jnp.concatenate([batch["chosen_lengths"], batch["rejected_lengths"]])
  s = rm.scores(model_cfg, params, tokens, lengths)
  n = batch["chosen_tokens"].shape[0]
  return s[:n], s[n:]


def pairwise_accuracy(model_cfg, params, data: dict[str, np.ndarray], batch: int = 64) -> float:
  score = jax.jit(lambda p, b: _pair_scores(model_cfg, p, b))
  wins = []
  for start in range(0, len(data["chosen_lengths"]), batch):
    chosen, rejected = score(params, {k: v[start:start + batch] for k, v in data.items()})
    wins.append(np.asarray(chosen > rejected) + 0.5 * np.asarray(chosen == rejected))  # ties: half
  return float(np.concatenate(wins).mean())


def rm_step(model_cfg: ModelConfig, tx: optax.GradientTransformation, state: TrainState, batch):
  """One Bradley-Terry update on a batch of encoded pairs -> (state, {"loss"})."""
  loss, grads = jax.value_and_grad(
      lambda p: bradley_terry_loss(*_pair_scores(model_cfg, p, batch)))(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), {
      "loss": loss}


def train_reward_model(model_cfg: ModelConfig, cfg: RewardModelConfig, optim_cfg: OptimConfig,
                       params, train: dict[str, np.ndarray], writer: MetricsWriter | None = None,
                       *, mesh=None, rules=mesh_lib.DEFAULT_RULES):
  """Trains params on the encoded pairs with the Bradley-Terry loss; returns (params, losses)."""
  mesh = mesh or mesh_lib.make_mesh(mesh_lib.MeshConfig(), jax.devices()[:1])
  state = init_train_state(model_cfg, optim_cfg, params, mesh, rules,
                           axes=rm.param_axes(model_cfg))
  n = len(train["chosen_lengths"])
  first = {k: v[epoch_batch(n, 0, cfg.batch_pairs, cfg.seed)] for k, v in train.items()}
  step = jit_step(functools.partial(rm_step, model_cfg, make_optimizer(optim_cfg)),
                  jax.tree.map(lambda x: x.sharding, state), first, mesh, rules)
  losses = []
  for i in range(cfg.steps):
    idx = epoch_batch(n, i, cfg.batch_pairs, cfg.seed)
    state, metrics = step(state, {k: v[idx] for k, v in train.items()})
    if (i + 1) % cfg.log_every == 0 or i + 1 == cfg.steps:
      losses.append(float(metrics["loss"]))
      if not np.isfinite(losses[-1]):
        raise FloatingPointError(f"reward-model loss is {losses[-1]} at step {i + 1}")
      if writer is not None:
        writer.write(i + 1, {"loss": losses[-1]})
  return state.params, losses
