"""Rollout -> minibatches of whole groups over inner epochs; dynamic sampling; the typed batch."""

import dataclasses

import numpy as np
import pytest

from r1jax.config import ConfigError
from r1jax.rl.batch import Groups, LearnerBatch
from r1jax.rl.config import GRPOConfig
from r1jax.rl.minibatch import minibatches, prepare

G, T, P = 4, 3, 2


def _rollout(prompts=8, seed=0):
  """(groups, rewards); each output's tokens name its prompt, so a mixed-up group is visible."""
  rng = np.random.default_rng(seed)
  n = prompts * G
  ids = np.arange(prompts)
  groups = Groups(prompt_tokens=np.stack([ids, ids], 1).astype(np.int32),
                  prompt_mask=np.ones((prompts, P), bool),
                  completion_tokens=np.repeat(ids, G)[:, None].repeat(T, 1).astype(np.int32),
                  completion_mask=np.ones((n, T), bool),
                  old_logprobs=rng.uniform(-2, 0, (n, T)).astype(np.float32),
                  ref_logprobs=rng.uniform(-2, 0, (n, T)).astype(np.float32),
                  truncated=np.zeros(n, bool))
  return groups, rng.integers(0, 2, n).astype(np.float32)


def _check_whole_groups(batch):
  prompt_ids = batch.prompt_tokens[:, 0]
  np.testing.assert_array_equal(batch.completion_tokens[:, 0], np.repeat(prompt_ids, G))


def test_minibatches_cover_every_group_once_per_epoch_in_whole_groups():
  cfg = GRPOConfig(num_generations=G, num_minibatches=4, inner_epochs=2)
  rollout = prepare(cfg, *_rollout())
  parts = list(minibatches(rollout, cfg, seed=3))
  assert len(parts) == 8
  for batch in parts:
    assert isinstance(batch, LearnerBatch)
    _check_whole_groups(batch)
    assert batch.prompt_tokens.shape == (2, P) and batch.advantages.shape == (2 * G,)
  epochs = [np.concatenate([b.prompt_tokens[:, 0] for b in parts[e * 4:(e + 1) * 4]])
            for e in range(2)]
  for order in epochs:
    np.testing.assert_array_equal(np.sort(order), np.arange(8))
  assert not np.array_equal(epochs[0], epochs[1])             # reshuffled per epoch
  assert not np.array_equal(epochs[0], np.arange(8))          # shuffled by group
  # pi_old is the rollout's for every minibatch of every epoch.
  by_prompt = {int(b.prompt_tokens[i, 0]): b.old_logprobs[i * G:(i + 1) * G]
               for b in parts[4:] for i in range(2)}
  for p, old in by_prompt.items():
    np.testing.assert_array_equal(old, rollout.old_logprobs[p * G:(p + 1) * G])


def test_unshuffled_minibatches_keep_rollout_order():
  cfg = GRPOConfig(num_generations=G, num_minibatches=2)
  parts = list(minibatches(prepare(cfg, *_rollout()), cfg))
  np.testing.assert_array_equal(parts[0].prompt_tokens[:, 0], [0, 1, 2, 3])


def test_split_that_is_not_whole_groups_is_an_error():
  cfg = GRPOConfig(num_generations=G, num_minibatches=3)
  with pytest.raises(ConfigError, match="8 groups of G=4, which do not split into 3"):
    list(minibatches(prepare(cfg, *_rollout()), cfg))
  groups, _ = _rollout()
  bad = dataclasses.replace(groups, old_logprobs=groups.old_logprobs[:-2])
  with pytest.raises(ValueError, match=r"old_logprobs: got 30 rows; need 32 \(8 prompts x G=4"):
    bad.group_size()
  with pytest.raises(ConfigError, match="num_generations.*got 8; the rollout has 4 outputs"):
    prepare(GRPOConfig(num_generations=8), *_rollout())


def test_take_groups_keeps_each_prompt_with_its_outputs():
  groups, _ = _rollout()
  part = groups.take_groups([5, 2])
  assert type(part) is Groups
  np.testing.assert_array_equal(part.prompt_tokens[:, 0], [5, 2])
  _check_whole_groups(part)


def test_dynamic_sampling_drops_zero_variance_groups_with_their_rewards():
  groups, _ = _rollout()
  rewards = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1] * 2, np.float32)
  cfg = GRPOConfig(num_generations=G, dynamic_sampling=True, advantage="no-std")
  kept = prepare(cfg, groups, rewards)
  np.testing.assert_array_equal(kept.prompt_tokens[:, 0], [1, 3, 5, 7])
  _check_whole_groups(kept)
  # The advantages are of the kept groups' own rewards: r - mean of the group.
  np.testing.assert_allclose(kept.advantages,
                             [-0.25, 0.75, -0.25, -0.25, 0.25, -0.75, 0.25, 0.25] * 2)
  everything = prepare(dataclasses.replace(cfg, dynamic_sampling=False), groups, rewards)
  assert everything.prompt_tokens.shape[0] == 8


def test_a_mapping_becomes_a_typed_batch_only_with_exactly_its_fields():
  groups, rewards = _rollout()
  fields = {**groups.fields(), "advantages": rewards}
  assert isinstance(LearnerBatch.of(fields), LearnerBatch)
  with pytest.raises(ValueError, match="LearnerBatch needs"):
    LearnerBatch.of({**fields, "rewards": rewards})
