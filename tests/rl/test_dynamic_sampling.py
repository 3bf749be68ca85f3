"""DAPO refill: rollouts joined into a batch of exactly `target` groups, informative ones first,
against a NumPy restatement of the choice; one batch shape however many rounds it took."""

import numpy as np
import pytest

from r1jax.rl.advantages import group_advantages
from r1jax.rl.batch import Groups
from r1jax.rl.config import GRPOConfig
from r1jax.rl.dynamic_sampling import concat_groups, needs_more, refilled_batch

G, P, PAD = 2, 3, 7


def _round(prompt_ids, t, rewards, sampler=True):
  """(groups, rewards) of one rollout; every token of an output names its prompt."""
  ids = np.asarray(prompt_ids)
  n = len(ids) * G
  rng = np.random.default_rng(int(ids[0]))
  mask = np.arange(t)[None] < rng.integers(1, t + 1, n)[:, None]
  logp = rng.uniform(-2, -0.1, (n, t)).astype(np.float32)
  groups = Groups(prompt_tokens=np.repeat(ids[:, None], P, 1).astype(np.int32),
                  prompt_mask=np.ones((len(ids), P), bool),
                  completion_tokens=np.repeat(np.repeat(ids, G)[:, None], t, 1).astype(np.int32),
                  completion_mask=mask, old_logprobs=logp, ref_logprobs=logp - 0.1,
                  truncated=~mask[:, -1], sampler_logprobs=logp + 0.2 if sampler else None)
  return groups, np.asarray(rewards, np.float32)


def test_concat_pads_each_rollout_to_the_longest_completion():
  a, _ = _round([1, 2], 3, [0] * 4)
  b, _ = _round([3], 5, [0] * 2)
  joined = concat_groups([a, b], PAD)
  assert joined.completion_tokens.shape == (6, 5) and joined.prompt_tokens.shape == (3, P)
  np.testing.assert_array_equal(joined.completion_tokens[:4, 3:], PAD)
  assert not joined.completion_mask[:4, 3:].any()
  for key in ("old_logprobs", "ref_logprobs", "sampler_logprobs"):
    np.testing.assert_array_equal(getattr(joined, key)[:4, :3], getattr(a, key))
    np.testing.assert_array_equal(getattr(joined, key)[:4, 3:], 0.0)
    np.testing.assert_array_equal(getattr(joined, key)[4:], getattr(b, key))
  np.testing.assert_array_equal(joined.truncated, np.concatenate([a.truncated, b.truncated]))
  with pytest.raises(ValueError, match="same"):
    concat_groups([a, _round([4], 3, [0] * 2, sampler=False)[0]], PAD)


def numpy_choice(rewards, target):
  """Group indices: the informative groups in order, then zero-variance ones, `target` in all."""
  groups = np.asarray(rewards).reshape(-1, G)
  informative = [i for i, g in enumerate(groups) if g.max() != g.min()]
  rest = [i for i, g in enumerate(groups) if g.max() == g.min()]
  return (informative + rest)[:target] if informative else []


@pytest.mark.parametrize("rounds_rewards, target", [
    ([[1, 0, 1, 1, 0, 0, 1, 0]], 2),                     # enough in one round: surplus dropped
    ([[1, 1, 0, 1], [0, 0, 1, 0], [1, 1, 0, 0]], 4),     # three rounds, one group to fill
    ([[1, 1, 0, 0], [0, 0, 1, 1]], 2),                   # none informative: no update
])
def test_refilled_batch_holds_target_groups_informative_first(rounds_rewards, target):
  cfg = GRPOConfig(num_generations=G, dynamic_sampling=True)
  rounds, start = [], 0
  for i, r in enumerate(rounds_rewards):
    count = len(r) // G
    rounds.append(_round(np.arange(start, start + count) + 1, 3 + i, r))
    start += count
  batch, metrics = refilled_batch(cfg, rounds, target, PAD)
  all_rewards = np.concatenate(rounds_rewards)
  order = numpy_choice(all_rewards, target)
  np.testing.assert_array_equal(batch.prompt_tokens[:, 0], np.asarray(order, int) + 1)
  np.testing.assert_array_equal(batch.completion_tokens[:, 0], np.repeat(np.asarray(order) + 1, G))
  chosen = all_rewards.reshape(-1, G)[order].reshape(-1)
  np.testing.assert_allclose(batch.advantages, group_advantages(chosen, G), atol=1e-6)
  informative = sum(r.max() != r.min() for r in all_rewards.reshape(-1, G))
  assert metrics == {"dynamic_sampling/rounds": len(rounds),
                     "dynamic_sampling/informative_groups": min(informative, target),
                     "dynamic_sampling/filled_groups": max(target - informative, 0)}
  assert batch.sampler_logprobs.shape == batch.old_logprobs.shape


def test_one_batch_shape_however_many_rounds():
  cfg = GRPOConfig(num_generations=G, dynamic_sampling=True, dynamic_sampling_max_rounds=3)
  one = [_round([1, 2, 3], 4, [1, 0, 0, 1, 1, 0])]
  three = [_round([1, 2], 4, [1, 1, 0, 1]), _round([3, 4], 4, [0, 0, 0, 0]),
           _round([5, 6], 4, [1, 0, 1, 1])]
  shapes = [{k: np.shape(v) for k, v in refilled_batch(cfg, r, 2, PAD)[0].fields().items()}
            for r in (one, three)]
  assert shapes[0] == shapes[1]
  assert needs_more(cfg, three[:1], 2) and needs_more(cfg, three[:2], 2)
  assert not needs_more(cfg, three, 3)          # rounds exhausted, even though short
  assert not needs_more(cfg, one, 2)            # enough informative groups
