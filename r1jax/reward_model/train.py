"""Bradley-Terry training of the scalar reward model, and the `reward_model` job.

Loss per pair: -log sigmoid(s(prompt, chosen) - s(prompt, rejected)), averaged over the batch.
The trunk starts from the experiment's base model (as R1's reward models start from the policy
family), the head from zero. The job trains on the pairs of `reward_model.data` (or the synthetic
set), reports pairwise accuracy on held-out pairs before and after, and writes `<workdir>/export`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from r1jax.data.pipeline import prompt_token_ids
from r1jax.data.templates import apply_template
from r1jax.metrics import MetricsWriter
from r1jax.policy import load_policy, resolve
from r1jax.reward_model import model as rm
from r1jax.reward_model.preferences import read_pairs, synthetic_pairs
from r1jax.rl.optim import make_optimizer
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


def train_reward_model(model_cfg, cfg, optim_cfg, params, train: dict[str, np.ndarray],
                       writer: MetricsWriter | None = None):
  """Trains params on the encoded pairs with the Bradley-Terry loss; returns (params, losses)."""
  tx = make_optimizer(optim_cfg, params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss_fn(p):
      return bradley_terry_loss(*_pair_scores(model_cfg, p, batch))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  n = len(train["chosen_lengths"])
  losses = []
  for i in range(cfg.steps):
    idx = epoch_batch(n, i, cfg.batch_pairs, cfg.seed)
    params, opt_state, loss = step(params, opt_state, {k: v[idx] for k, v in train.items()})
    if (i + 1) % cfg.log_every == 0 or i + 1 == cfg.steps:
      losses.append(float(loss))
      if not np.isfinite(losses[-1]):
        raise FloatingPointError(f"reward-model loss is {losses[-1]} at step {i + 1}")
      if writer is not None:
        writer.write(i + 1, {"loss": losses[-1]})
  return params, losses


def run(exp, workdir: str) -> dict[str, Any]:
  """The `reward_model` job: returns {"accuracy_before", "accuracy_after", ...}."""
  cfg = exp.reward_model
  model_cfg, policy_params, tokenizer = load_policy(exp.base_model, exp.model, exp.tokenizer,
                                                    cfg.seed)
  pairs = read_pairs(cfg.data) if cfg.data else synthetic_pairs(cfg.num_pairs, cfg.seed)
  order = np.random.default_rng(cfg.seed).permutation(len(pairs))
  heldout = max(1, int(len(pairs) * cfg.heldout_fraction))
  if heldout >= len(pairs):
    raise ValueError(f"{len(pairs)} preference pairs leave none for training after holding out "
                     f"{heldout}")
  encoded = encode_pairs(pairs, tokenizer, exp.data.template, cfg.max_len)
  test = {k: v[order[:heldout]] for k, v in encoded.items()}
  train = {k: v[order[heldout:]] for k, v in encoded.items()}
  params = {"trunk": policy_params, "head": rm.init_head(model_cfg)}
  before = pairwise_accuracy(model_cfg, params, test)
  writer = MetricsWriter(workdir)
  params, losses = train_reward_model(model_cfg, cfg, exp.optim, params, train, writer)
  writer.close()
  summary = {"pairs": len(pairs), "heldout": heldout, "accuracy_before": before,
             "accuracy_after": pairwise_accuracy(model_cfg, params, test),
             "first_loss": losses[0], "last_loss": losses[-1]}
  rm.save(model_cfg, params, os.path.join(workdir, "export"),
          resolve(exp.base_model) if exp.base_model else None)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  logging.info("reward model: held-out pairwise accuracy %.3f -> %.3f", before,
               summary["accuracy_after"])
  return summary
