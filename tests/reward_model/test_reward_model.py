"""The reward model: Bradley-Terry loss values, learning a separable synthetic preference, and the
RL hook adding its bounded score only from the configured step."""
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from r1jax.data.tokenizers import CharTokenizer
from r1jax.models import ModelConfig, init
from r1jax.reward_model import model as rm
from r1jax.reward_model.config import PreferenceConfig, RewardModelConfig
from r1jax.reward_model.hook import PreferenceReward
from r1jax.reward_model.preferences import DEGRADATIONS, synthetic_pairs
from r1jax.reward_model.train import bradley_terry_loss, pairwise_accuracy, train_reward_model
from r1jax.rl.config import OptimConfig

TOK = CharTokenizer()
CFG = ModelConfig(vocab_size=TOK.vocab_size, dim=32, num_layers=2, num_heads=2, num_kv_heads=1,
                  head_dim=16, ffn_dim=64, max_seq_len=512)


def _encode(pairs):
  """Like train.encode_pairs, without the long R1 template (it only adds a shared prefix)."""
  out = {}
  for side in ("chosen", "rejected"):
    seqs = [TOK.encode(p["prompt"] + p[side]) + [TOK.eos_id] for p in pairs]
    out[f"{side}_tokens"], out[f"{side}_lengths"] = rm.right_padded(seqs, 512, TOK.pad_id)
  return out


def test_bradley_terry_loss_values():
  assert float(bradley_terry_loss(np.zeros(3), np.zeros(3))) == pytest.approx(np.log(2))
  assert float(bradley_terry_loss(np.array([5.0]), np.array([-5.0]))) == pytest.approx(
      np.log1p(np.exp(-10.0)), rel=1e-4)
  assert float(bradley_terry_loss(np.array([-5.0]), np.array([5.0]))) > 9.9


def test_synthetic_pairs_differ_in_readability_not_in_the_answer():
  pairs = synthetic_pairs(30, seed=3)
  assert {p["degradation"] for p in pairs} == set(DEGRADATIONS)
  for p in pairs:
    assert p["chosen"] != p["rejected"]
    assert p["chosen"].split()[-2] == p["rejected"].split()[-2 if "</answer>" in p["rejected"] else -1]


def test_reward_model_learns_a_separable_preference():
  pairs = synthetic_pairs(160, seed=0)
  data = _encode(pairs)
  train = {k: v[:128] for k, v in data.items()}
  test = {k: v[128:] for k, v in data.items()}
  params = {"trunk": init(CFG, jax.random.key(0)), "head": rm.init_head(CFG)}
  assert pairwise_accuracy(CFG, params, test) == 0.5          # zero head: every pair ties
  cfg = RewardModelConfig(steps=40, batch_pairs=16, log_every=10)
  optim = OptimConfig(lr=3e-3, weight_decay=0.0, total_steps=40)
  params, losses = train_reward_model(CFG, cfg, optim, params, train)
  assert losses[-1] < 0.2 < np.log(2)
  assert pairwise_accuracy(CFG, params, test) >= 0.9
  # Swapping chosen and rejected must flip the verdict: the score is not constant.
  swapped = {"chosen_tokens": test["rejected_tokens"], "chosen_lengths": test["rejected_lengths"],
             "rejected_tokens": test["chosen_tokens"], "rejected_lengths": test["chosen_lengths"]}
  assert pairwise_accuracy(CFG, params, swapped) <= 0.1


def test_preference_hook_adds_weighted_sigmoid_from_start_step(tmp_path):
  params = {"trunk": init(CFG, jax.random.key(1)), "head": rm.init_head(CFG)}
  params["head"]["b"] = jax.numpy.float32(2.0)   # every score is 2 -> sigmoid(2)
  rm.save(CFG, params, str(tmp_path), tokenizer_from=None)
  hook = PreferenceReward.__new__(PreferenceReward)  # bypass the tokenizer files check
  hook.cfg = PreferenceConfig(model=str(tmp_path), weight=0.5, start_step=3)
  hook.model_cfg, hook.params = rm.load(str(tmp_path))
  hook._score = jax.jit(lambda p, t, n: rm.scores(hook.model_cfg, p, t, n))
  groups = SimpleNamespace(
      prompt_tokens=np.array([[0, 5, 6], [7, 8, 9]]),
      prompt_mask=np.array([[False, True, True], [True, True, True]]),
      completion_tokens=np.array([[10, 11], [12, 0], [13, 14], [15, 16]]),
      completion_mask=np.array([[True, True], [True, False], [True, True], [True, True]]))
  rewards = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
  before, info = hook.apply(groups, rewards, step=2)
  assert info == {} and before.tolist() == [1, 0, 1, 0]
  after, info = hook.apply(groups, rewards, step=3)
  bonus = 0.5 / (1 + np.exp(-2.0))
  np.testing.assert_allclose(after, [1 + bonus, bonus, 1 + bonus, bonus], rtol=1e-5)
  assert info["reward/preference_mean"] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-5)
