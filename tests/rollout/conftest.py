"""Tiny models and reference computations shared by the rollout tests, as the `ref` fixture."""
import types

import jax
import numpy as np
import pytest

from r1jax.models import ModelConfig, MoEConfig, init, logits

DENSE = ModelConfig(vocab_size=40, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                    ffn_dim=48, qkv_bias=True)
MOE = ModelConfig(vocab_size=40, dim=32, num_layers=3, num_heads=4, num_kv_heads=1, head_dim=8,
                  ffn_dim=48, moe=MoEConfig(num_experts=4, top_k=2, expert_ffn_dim=16,
                                            shared_ffn_dim=16, first_dense_layers=1))


def make_params(cfg, seed=0, init_std=0.3):
  """A larger init than training uses, so distributions are peaked and EOS ids come up."""
  return init(cfg, jax.random.key(seed), init_std=init_std)


def left_padded(prompts, pad=0):
  """[Bp, P] tokens and mask from lists of different lengths."""
  width = max(map(len, prompts))
  tokens = np.full((len(prompts), width), pad, np.int32)
  mask = np.zeros((len(prompts), width), bool)
  for i, p in enumerate(prompts):
    tokens[i, width - len(p):] = p
    mask[i, width - len(p):] = True
  return tokens, mask


PROMPTS = [[5, 9, 2, 7, 11], [3], [8, 1, 4]]


def teacher_forced_logits(cfg, params, prompts, rollout, num_samples):
  """Per row: full-forward logits [L, V] predicting each completion token, from `models.logits`.

  Rows are right-padded (causal attention never looks ahead, so the padding changes nothing).
  """
  tokens, lengths = np.asarray(rollout.tokens), np.asarray(rollout.lengths)
  seqs = [list(prompts[r // num_samples]) + tokens[r, :lengths[r]].tolist()
          for r in range(tokens.shape[0])]
  width = max(map(len, seqs))
  batch = np.zeros((len(seqs), width), np.int32)
  for r, s in enumerate(seqs):
    batch[r, :len(s)] = s
  full = np.asarray(logits(cfg, params, batch))
  out = []
  for r in range(tokens.shape[0]):
    start = len(prompts[r // num_samples]) - 1
    out.append(full[r, start:start + lengths[r]])
  return out


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="session")
def ref():
  return types.SimpleNamespace(
      DENSE=DENSE, MOE=MOE, PROMPTS=PROMPTS, make_params=make_params, left_padded=left_padded,
      teacher_forced_logits=teacher_forced_logits, log_softmax=log_softmax)
