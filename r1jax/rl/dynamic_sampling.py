"""DAPO's dynamic sampling with refill: a batch of exactly `target` groups from several rollouts.

Groups whose G rewards are all equal carry no policy gradient. Instead of training on fewer
groups (a new step shape, so a new compilation, each time), the loop samples more prompts until
the rollouts hold `target` informative groups (:func:`needs_more`), then
:func:`refilled_batch` keeps the first `target` of them; when the rounds run out first,
zero-variance groups fill the rest (zero advantage: no policy gradient), so the step always sees
`target` groups. Completion arrays of rollouts cut to different lengths are padded to the longest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from r1jax.rl.advantages import informative_groups
from r1jax.rl.batch import PROMPT_FIELDS, Groups, LearnerBatch
from r1jax.rl.config import GRPOConfig
from r1jax.rl.minibatch import prepare

# Fill values of the completion arrays' padding (a completion's tokens past its end).
_PAD = {"completion_mask": False, "old_logprobs": 0.0, "ref_logprobs": 0.0,
        "sampler_logprobs": 0.0, "expert_ids": 0}


def concat_groups(parts: Sequence[Groups], pad_id: int) -> Groups:
  """The groups of several rollouts in order, as one; axis 1 of the per-token arrays (axis 2 of
  `expert_ids`) padded to the longest completion."""
  fields = [p.fields() for p in parts]
  if any(sorted(f) != sorted(fields[0]) for f in fields):
    raise ValueError(f"rollouts: got fields {[sorted(f) for f in fields]}; all must have the same")
  time_axis = {"expert_ids": 2}
  length = max(np.shape(f["completion_tokens"])[1] for f in fields)

  def joined(key):
    arrays = [np.asarray(f[key]) for f in fields]
    if key in PROMPT_FIELDS or key == "truncated":
      return np.concatenate(arrays)
    axis = time_axis.get(key, 1)
    fill = _PAD.get(key, pad_id)

    def pad(x):
      width = [(0, 0)] * x.ndim
      width[axis] = (0, length - x.shape[axis])
      return np.pad(x, width, constant_values=fill)
    return np.concatenate([pad(x) for x in arrays])
  return type(parts[0])(**{key: joined(key) for key in fields[0]})


def informative_count(rounds: Sequence[tuple[Groups, np.ndarray]], group_size: int) -> int:
  return int(sum(informative_groups(r, group_size).sum() for _, r in rounds))


def needs_more(cfg: GRPOConfig, rounds: Sequence[tuple[Groups, np.ndarray]], target: int) -> bool:
  """Whether the loop should sample another rollout: too few informative groups, rounds left."""
  return (informative_count(rounds, cfg.num_generations) < target
          and len(rounds) < cfg.dynamic_sampling_max_rounds)


def refilled_batch(cfg: GRPOConfig, rounds: Sequence[tuple[Groups, np.ndarray]], target: int,
                   pad_id: int) -> tuple[LearnerBatch, dict[str, float]]:
  """(a `LearnerBatch` of exactly `target` groups, its metrics) from the rollouts' (groups,
  rewards): informative groups first, in sampling order, then zero-variance ones; no groups at
  all when none is informative (nothing to learn from)."""
  g = cfg.num_generations
  groups = concat_groups([grp for grp, _ in rounds], pad_id)
  rewards = np.concatenate([np.asarray(r, np.float32) for _, r in rounds])
  keep = informative_groups(rewards, g)
  if groups.num_prompts < target:
    raise ValueError(f"rollouts: got {groups.num_prompts} groups; need at least target={target}")
  order = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])[:target]
  informative = int(keep.sum())
  if informative == 0:
    order = order[:0]
  metrics = {"dynamic_sampling/rounds": float(len(rounds)),
             "dynamic_sampling/informative_groups": float(min(informative, target)),
             "dynamic_sampling/filled_groups": float(max(target - informative, 0))}
  return prepare(cfg, groups, rewards, keep=order), metrics
