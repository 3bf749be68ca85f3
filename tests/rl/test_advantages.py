"""Group advantages and reward statistics against NumPy restatements."""

from types import SimpleNamespace

import numpy as np
import pytest

from r1jax.rl.advantages import (group_advantages, informative_groups, overlong_penalty,
                                 rollout_advantages, rollout_metrics, sequence_kl)
from r1jax.rl.config import ADVANTAGE_MODES, GRPOConfig

G = 4


def numpy_advantages(rewards, mode, eps=1e-6, ddof=0):
  out = []
  for group in np.asarray(rewards, np.float64).reshape(-1, G):
    if group.max() == group.min():
      out += [0.0] * G
      continue
    for i, r in enumerate(group):
      if mode == "grpo":
        out.append((r - group.mean()) / (group.std(ddof=ddof) + eps))
      elif mode == "no-std":
        out.append(r - group.mean())
      elif mode == "rloo":
        out.append(r - np.delete(group, i).mean())
      else:
        out.append((r - group.mean()) / (np.std(rewards, ddof=ddof) + eps))
  return np.array(out)


@pytest.mark.parametrize("mode, ddof", [(m, 0) for m in ADVANTAGE_MODES] +
                         [("grpo", 1), ("batch-std", 1)])
def test_advantages_match_numpy(mode, ddof):
  rng = np.random.default_rng(0)
  rewards = rng.normal(size=6 * G).astype(np.float32)
  rewards[8:12] = 1.0                                         # one zero-variance group
  got = group_advantages(rewards, G, mode, ddof=ddof)
  np.testing.assert_allclose(got, numpy_advantages(rewards, mode, ddof=ddof), rtol=1e-5, atol=1e-6)
  cfg = GRPOConfig(num_generations=G, advantage=mode, std_ddof=ddof)
  np.testing.assert_allclose(rollout_advantages(cfg, None, rewards), got, rtol=1e-6)


@pytest.mark.parametrize("mode", ADVANTAGE_MODES)
def test_equal_rewards_give_exactly_zero_advantage(mode):
  # 0.7 is not exact in binary: r - mean(r) can round to ~1e-8, which the std division would
  # blow up to O(0.01) without the explicit zero.
  rewards = np.repeat(np.array([0.7, 0.1, 1.0, 0.3], np.float32), G)
  assert np.all(np.asarray(group_advantages(rewards, G, mode)) == 0.0)


def test_binary_rewards_have_unit_scale_and_sum_to_zero():
  rewards = np.array([1, 0, 0, 0, 1, 1, 0, 0], np.float32)
  adv = np.asarray(group_advantages(rewards, G, "grpo")).reshape(-1, G)
  np.testing.assert_allclose(adv.sum(1), 0.0, atol=1e-6)
  np.testing.assert_allclose(adv.std(1), 1.0, rtol=1e-5)


def test_group_size_must_divide_rewards():
  with pytest.raises(ValueError, match="multiple of the group size G=4"):
    group_advantages(np.zeros(10), G)


def test_kl_in_reward_subtracts_sequence_kl_before_grouping():
  rng = np.random.default_rng(1)
  n, t = 2 * G, 5
  rewards = rng.random(n).astype(np.float32)
  rollout = SimpleNamespace(old_logprobs=rng.uniform(-3, 0, (n, t)).astype(np.float32),
                            ref_logprobs=rng.uniform(-3, 0, (n, t)).astype(np.float32),
                            completion_mask=np.arange(t)[None] < rng.integers(1, t + 1, n)[:, None])
  cfg = GRPOConfig(num_generations=G, kl_placement="reward", kl_coef=0.1, advantage="no-std")
  r = rollout.ref_logprobs - rollout.old_logprobs
  seq_kl = np.where(rollout.completion_mask, np.exp(r) - r - 1, 0).sum(1)
  np.testing.assert_allclose(sequence_kl(rollout.old_logprobs, rollout.ref_logprobs,
                                         rollout.completion_mask), seq_kl, rtol=1e-5, atol=1e-6)
  want = numpy_advantages(rewards - 0.1 * seq_kl, "no-std")
  np.testing.assert_allclose(rollout_advantages(cfg, rollout, rewards), want, rtol=1e-5, atol=1e-6)
  # With the KL in the loss, the reward is left alone.
  in_loss = GRPOConfig(num_generations=G, kl_coef=0.1, advantage="no-std")
  np.testing.assert_allclose(rollout_advantages(in_loss, rollout, rewards),
                             numpy_advantages(rewards, "no-std"), rtol=1e-5, atol=1e-6)


def test_rollout_metrics_per_type_and_zero_variance_fraction():
  rewards = np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0.5, 1, 0, 0], np.float32)
  types = ["math", "code", "math", "code"]                  # one per prompt
  m = rollout_metrics(rewards, types, G)
  assert m["reward/zero_variance_groups"] == 0.5
  np.testing.assert_allclose(m["reward/mean"], rewards.mean())
  math = rewards[np.r_[0:4, 8:12]]
  np.testing.assert_allclose([m["reward/math/mean"], m["reward/math/std"]], [math.mean(), math.std()])
  assert set(m) == {"reward/mean", "reward/std", "reward/zero_variance_groups", "reward/math/mean",
                    "reward/math/std", "reward/code/mean", "reward/code/std"}
  np.testing.assert_array_equal(informative_groups(rewards, G), [False, True, False, True])
  with pytest.raises(ValueError, match="one per output"):
    rollout_metrics(rewards, types[:3], G)


def test_sequence_kl_clamps_the_log_ratio_so_k3_stays_finite():
  old = np.array([[-1.0, -200.0, -2.0]], np.float32)    # a token pi_old found near impossible
  ref = np.array([[-1.5, -0.5, -2.0]], np.float32)
  mask = np.ones_like(old, bool)
  r = np.clip((ref - old).astype(np.float64), -5.0, 5.0)
  want = (np.exp(r) - r - 1).sum(1)
  got = sequence_kl(old, ref, mask, "k3", clamp=5.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.all(np.isfinite(sequence_kl(old, ref, mask, "k3")))    # the default clamp too
  # The KL in the reward takes the config's clamp: one group of two outputs, one cut short.
  cfg = GRPOConfig(num_generations=2, kl_placement="reward", kl_coef=0.1, log_ratio_clamp=5.0,
                   advantage="no-std")
  groups = SimpleNamespace(old_logprobs=np.repeat(old, 2, 0), ref_logprobs=np.repeat(ref, 2, 0),
                           completion_mask=np.array([[1, 1, 1], [1, 0, 0]], bool))
  shaped = -0.1 * np.array([want[0], np.exp(r[0, 0]) - r[0, 0] - 1])
  np.testing.assert_allclose(rollout_advantages(cfg, groups, np.zeros(2, np.float32)),
                             shaped - shaped.mean(), rtol=1e-5)


def numpy_overlong(length, buffer, max_length, penalty):
  """DAPO's soft overlong punishment, restated by cases."""
  if length <= max_length - buffer:
    return 0.0
  if length <= max_length:
    return penalty * ((max_length - buffer) - length) / buffer
  return -penalty


def test_overlong_shaping_matches_dapo_and_enters_the_advantages():
  lengths = np.array([1, 4, 5, 6, 7, 8, 9, 12])
  mask = np.arange(12)[None] < lengths[:, None]
  want = np.array([numpy_overlong(n, 4, 8, 0.5) for n in lengths])
  np.testing.assert_allclose(overlong_penalty(lengths, 4, 8, 0.5), want, rtol=1e-6, atol=1e-7)
  assert want[1] == 0 and -0.5 < want[4] < want[3] < 0 and want[5] == want[-1] == -0.5
  cfg = GRPOConfig(num_generations=G, overlong_buffer=4, overlong_max_length=8,
                   overlong_penalty=0.5, advantage="no-std")
  rewards = np.ones(8, np.float32)
  groups = SimpleNamespace(completion_mask=mask)
  np.testing.assert_allclose(rollout_advantages(cfg, groups, rewards),
                             numpy_advantages(rewards + want, "no-std"), rtol=1e-5, atol=1e-6)
