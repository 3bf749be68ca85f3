"""Rollout -> minibatches of whole groups over inner epochs; dynamic sampling; reference reset."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.config import ConfigError
from r1jax.rl.config import GRPOConfig
from r1jax.rl.schedule import (maybe_reset_reference, minibatches, num_groups, prepare_rollout,
                               should_reset_reference, take_groups)

G, T, P = 4, 3, 2


def _rollout(prompts=8, seed=0):
  rng = np.random.default_rng(seed)
  n = prompts * G
  ids = np.arange(prompts)
  return {"prompt_tokens": np.stack([ids, ids], 1).astype(np.int32),
          "prompt_mask": np.ones((prompts, P), bool),
          # Each output's tokens name its prompt, so a mixed-up group is visible.
          "completion_tokens": np.repeat(ids, G)[:, None].repeat(T, 1).astype(np.int32),
          "completion_mask": np.ones((n, T), bool),
          "old_logprobs": rng.uniform(-2, 0, (n, T)).astype(np.float32),
          "ref_logprobs": rng.uniform(-2, 0, (n, T)).astype(np.float32),
          "truncated": np.zeros(n, bool),
          "rewards": rng.integers(0, 2, n).astype(np.float32)}


def _check_whole_groups(batch):
  prompt_ids = batch["prompt_tokens"][:, 0]
  np.testing.assert_array_equal(batch["completion_tokens"][:, 0], np.repeat(prompt_ids, G))


def test_minibatches_cover_every_group_once_per_epoch_in_whole_groups():
  cfg = GRPOConfig(num_generations=G, num_minibatches=4, inner_epochs=2)
  rollout = prepare_rollout(cfg, _rollout())
  parts = list(minibatches(rollout, cfg, seed=3))
  assert len(parts) == 8
  for batch in parts:
    _check_whole_groups(batch)
    assert batch["prompt_tokens"].shape == (2, P) and batch["advantages"].shape == (2 * G,)
  epochs = [np.concatenate([b["prompt_tokens"][:, 0] for b in parts[e * 4:(e + 1) * 4]])
            for e in range(2)]
  for order in epochs:
    np.testing.assert_array_equal(np.sort(order), np.arange(8))
  assert not np.array_equal(epochs[0], epochs[1])             # reshuffled per epoch
  assert not np.array_equal(epochs[0], np.arange(8))          # shuffled by group
  # pi_old is the rollout's for every minibatch of every epoch.
  by_prompt = {int(b["prompt_tokens"][i, 0]): b["old_logprobs"][i * G:(i + 1) * G]
               for b in parts[4:] for i in range(2)}
  for p, old in by_prompt.items():
    np.testing.assert_array_equal(old, rollout["old_logprobs"][p * G:(p + 1) * G])


def test_unshuffled_minibatches_keep_rollout_order():
  cfg = GRPOConfig(num_generations=G, num_minibatches=2)
  parts = list(minibatches(_rollout(), cfg))
  np.testing.assert_array_equal(parts[0]["prompt_tokens"][:, 0], [0, 1, 2, 3])


def test_split_that_is_not_whole_groups_is_an_error():
  cfg = GRPOConfig(num_generations=G, num_minibatches=3)
  with pytest.raises(ConfigError, match="8 groups of G=4, which do not split into 3"):
    list(minibatches(_rollout(), cfg))
  bad = _rollout()
  bad["old_logprobs"] = bad["old_logprobs"][:-2]
  with pytest.raises(ValueError, match=r"old_logprobs'\]: got 30 rows; need 8 prompts x G=4"):
    num_groups(bad, G)


def test_take_groups_keeps_each_prompt_with_its_outputs():
  part = take_groups(_rollout(), [5, 2], G)
  np.testing.assert_array_equal(part["prompt_tokens"][:, 0], [5, 2])
  _check_whole_groups(part)


def test_dynamic_sampling_drops_zero_variance_groups():
  rollout = _rollout()
  rollout["rewards"] = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1] * 2, np.float32)
  cfg = GRPOConfig(num_generations=G, dynamic_sampling=True)
  kept = prepare_rollout(cfg, rollout)
  np.testing.assert_array_equal(kept["prompt_tokens"][:, 0], [1, 3, 5, 7])
  _check_whole_groups(kept)
  assert kept["advantages"].shape == (16,) and np.all(kept["advantages"] != 0)
  everything = prepare_rollout(dataclasses.replace(cfg, dynamic_sampling=False), rollout)
  assert everything["prompt_tokens"].shape[0] == 8


def test_reference_resets_at_k_and_not_before():
  assert [s for s in range(1000) if should_reset_reference(s, 400)] == [400, 800]
  assert not any(should_reset_reference(s, 0) for s in range(1000))
  params = {"w": jnp.arange(3.0)}
  ref = {"w": jnp.zeros(3)}
  for step in range(1, 5):
    params = {"w": params["w"] + 1}
    ref = maybe_reset_reference(step, 3, params, ref)
    want = jnp.arange(3.0) + 3 if step >= 3 else jnp.zeros(3)   # the policy after step 3
    np.testing.assert_array_equal(ref["w"], want)
  assert ref["w"] is not params["w"]                          # a copy, safe under donation
