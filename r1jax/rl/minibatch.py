"""How one rollout feeds the optimizer: dynamic sampling, advantages, minibatches of whole groups.

`prepare` drops zero-variance groups (with dynamic sampling) and adds the advantages, turning the
rollout's `Groups` and rewards into a `LearnerBatch`; `minibatches` splits it into M minibatches of
whole groups, optionally shuffled by group, for each of E inner epochs, all scored against the
same pi_old (the rollout's `old_logprobs`). A split that is not a whole number of groups raises
instead of silently mixing groups.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from r1jax.config import ConfigError
from r1jax.rl.advantages import informative_groups, rollout_advantages
from r1jax.rl.batch import Groups, LearnerBatch
from r1jax.rl.config import GRPOConfig


def prepare(cfg: GRPOConfig, groups: Groups, rewards, keep=None) -> LearnerBatch:
  """The groups `keep` (indices, in order; by default the informative ones if
  cfg.dynamic_sampling, else all) with their `advantages` [N] f32.

  With dynamic sampling fewer groups may come back: the caller samples more prompts and
  concatenates (DAPO, `r1jax.rl.dynamic_sampling`), or trims with `take_groups`.
  """
  g = cfg.num_generations
  if groups.group_size() != g:
    raise ConfigError("num_generations", f"got {g}; the rollout has {groups.group_size()} "
                      "outputs per prompt")
  rewards = np.asarray(rewards, np.float32)
  if keep is None:
    keep = np.flatnonzero(informative_groups(rewards, g) if cfg.dynamic_sampling
                          else np.ones(groups.num_prompts, bool))
  kept = groups.take_groups(keep)
  kept_rewards = rewards.reshape(-1, g)[keep].reshape(-1)
  advantages = np.asarray(rollout_advantages(cfg, kept, kept_rewards), np.float32)
  return LearnerBatch(**kept.fields(), advantages=advantages)


def minibatches(batch: LearnerBatch, cfg: GRPOConfig, *,
                seed: int | None = None) -> Iterator[LearnerBatch]:
  """Yields the E * M minibatches of one rollout: per inner epoch, its groups split into M
  equal parts, reshuffled by group each epoch when `seed` is given (else in order)."""
  m = cfg.num_minibatches
  batch.group_size()
  count = batch.num_prompts
  if count % m:
    raise ConfigError("num_minibatches", f"got {m}; the rollout has {count} groups of "
                      f"G={cfg.num_generations}, which do not split into {m} minibatches of "
                      "whole groups")
  for epoch in range(cfg.inner_epochs):
    order = np.arange(count)
    if seed is not None:
      order = np.random.default_rng([seed, epoch]).permutation(count)
    for part in np.split(order, m):
      yield batch.take_groups(part)
