"""DPO: the loss and the summed completion log-probs against NumPy restatements, the pairing of
verified and failed answers, and the train step raising the chosen answer's log-prob."""
import jax
import numpy as np
import pytest

from r1jax.dpo.loss import dpo_loss, sequence_logps
from r1jax.dpo.pairs import preference_pairs
from r1jax.dpo.train import DPOConfig, encode, reference_logps, train_dpo
from r1jax.models import ModelConfig, init, logits
from r1jax.rl.config import OptimConfig

CFG = ModelConfig(vocab_size=64, dim=32, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16,
                  ffn_dim=64, max_seq_len=64)


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_matches_numpy():
  rng = np.random.default_rng(0)
  lc, lr, rc, rr = (rng.normal(size=5) * 4 for _ in range(4))
  for beta in (0.1, 2.0):
    total, count, stats = dpo_loss(lc, lr, rc, rr, beta)
    margin = beta * ((lc - rc) - (lr - rr))
    expected = -np.log(1.0 / (1.0 + np.exp(-margin)))
    np.testing.assert_allclose(float(total), expected.sum(), rtol=1e-5)
    assert float(count) == 5 and float(stats["reward_accuracy"]) == (margin > 0).sum()
    np.testing.assert_allclose(float(stats["reward_margin"]), margin.sum(), rtol=1e-5)


def test_sequence_logps_sum_completion_tokens_only():
  params = init(CFG, jax.random.key(0))
  prompt, chosen, rejected = [1, 5, 9, 3], [7, 8, 2], [11, 4, 4, 2, 2]
  rows = encode([(prompt, chosen, rejected)], row_len=16)
  got, _ = sequence_logps(CFG, params, {k: np.concatenate([rows["chosen"][k], rows["rejected"][k]])
                                        for k in rows["chosen"]})
  for i, completion in enumerate((chosen, rejected)):
    seq = prompt + completion
    logp = _np_log_softmax(np.asarray(logits(CFG, params, np.array([seq])))[0])
    expected = sum(logp[t - 1, seq[t]] for t in range(len(prompt), len(seq)))
    np.testing.assert_allclose(float(got[i]), expected, rtol=1e-5)


def test_pairs_zip_each_prompts_verified_with_its_failed_answers():
  verified = [{"prompt": "a", "completion": "a1"}, {"prompt": "a", "completion": "a2"},
              {"prompt": "b", "completion": "b1"}, {"prompt": "c", "completion": "c1"}]
  failed = [{"prompt": "a", "completion": "x1"}, {"prompt": "b", "completion": "y1"},
            {"prompt": "b", "completion": "y2"}]
  assert preference_pairs(verified, failed) == [
      {"prompt": "a", "chosen": "a1", "rejected": "x1"},
      {"prompt": "b", "chosen": "b1", "rejected": "y1"}]
  assert len(preference_pairs(verified * 2, failed * 2, per_prompt=1)) == 2


def test_step_raises_the_chosen_log_prob_against_the_reference(tmp_path):
  params = init(CFG, jax.random.key(1))
  rng = np.random.default_rng(0)
  triples = [(list(rng.integers(3, 60, 5)), list(rng.integers(3, 60, 6)),
              list(rng.integers(3, 60, 6))) for _ in range(4)]
  cfg = DPOConfig(beta=0.5, steps=3, batch_pairs=4, row_len=16, log_every=1)
  ref = {side: reference_logps(CFG, params, rows) for side, rows in encode(triples, 16).items()}
  trained, logged = train_dpo(CFG, cfg, OptimConfig(lr=3e-3, weight_decay=0.0), triples,
                              str(tmp_path), init_params=params)
  # Policy = reference at the first step: every margin is 0, the loss log 2.
  assert logged[0]["loss"] == pytest.approx(np.log(2), rel=1e-5)
  assert logged[-1]["loss"] < logged[0]["loss"] and logged[-1]["reward_accuracy"] == 1.0
  after = {side: reference_logps(CFG, trained, rows) for side, rows in encode(triples, 16).items()}
  assert np.all(after["chosen"] - ref["chosen"] > after["rejected"] - ref["rejected"])
  assert np.mean(after["chosen"] - ref["chosen"]) > 0
