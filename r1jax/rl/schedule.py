"""How one rollout feeds the optimizer, and when the reference policy is replaced.

A rollout is a dict of host arrays: the per-prompt `prompt_tokens` / `prompt_mask` [Bp, ...] and
per-output arrays [Bp*G, ...] whose G consecutive rows belong to one prompt. `prepare_rollout`
applies dynamic sampling (drop zero-variance groups) and adds the advantages; `minibatches`
splits the rollout into M minibatches of whole groups, optionally shuffled by group, for each of
E inner epochs, all scored against the same pi_old (the rollout's `old_logprobs`). Splits that
are not a whole number of groups raise instead of silently mixing groups. The reference is
replaced by a copy of the policy every K optimizer steps (R1: K = 400).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.config import ConfigError
from r1jax.rl.advantages import informative_groups, rollout_advantages
from r1jax.rl.config import GRPOConfig

PROMPT_KEYS = ("prompt_tokens", "prompt_mask")


def num_groups(rollout: Mapping[str, np.ndarray], group_size: int,
               prompt_keys: Sequence[str] = PROMPT_KEYS) -> int:
  """The number of prompts (groups) in a rollout, after checking every array agrees."""
  prompts = {k: np.shape(v)[0] for k, v in rollout.items() if k in prompt_keys}
  outputs = {k: np.shape(v)[0] for k, v in rollout.items() if k not in prompt_keys}
  if not prompts:
    raise ValueError(f"rollout: needs per-prompt arrays {tuple(prompt_keys)}")
  count = next(iter(prompts.values()))
  for key, rows in prompts.items():
    if rows != count:
      raise ValueError(f"rollout['{key}']: got {rows} rows; other per-prompt arrays have {count}")
  for key, rows in outputs.items():
    if rows != count * group_size:
      raise ValueError(f"rollout['{key}']: got {rows} rows; need {count} prompts x "
                       f"G={group_size} = {count * group_size} (whole groups of consecutive rows)")
  return count


def take_groups(rollout: Mapping[str, np.ndarray], groups, group_size: int,
                prompt_keys: Sequence[str] = PROMPT_KEYS) -> dict[str, np.ndarray]:
  """The sub-rollout of the given group (prompt) indices, each with all G of its outputs."""
  num_groups(rollout, group_size, prompt_keys)
  groups = np.asarray(groups, np.int64)
  def take(key, value):
    value = np.asarray(value)
    if key in prompt_keys:
      return value[groups]
    return value.reshape(-1, group_size, *value.shape[1:])[groups].reshape(-1, *value.shape[1:])
  return {k: take(k, v) for k, v in rollout.items()}


def prepare_rollout(cfg: GRPOConfig, rollout: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Drops zero-variance groups if cfg.dynamic_sampling, then adds `advantages` [N] f32.

  `rollout` holds the learner batch's arrays (see `r1jax.rl.step`) with `rewards` [N] in place
  of `advantages`. With dynamic sampling fewer groups may come back: the caller samples more
  prompts and concatenates (DAPO), or trims with :func:`take_groups`.
  """
  g = cfg.num_generations
  count = num_groups(rollout, g)
  keep = (informative_groups(rollout["rewards"], g) if cfg.dynamic_sampling
          else np.ones(count, bool))
  out = take_groups(rollout, np.flatnonzero(keep), g)
  out["advantages"] = np.asarray(rollout_advantages(cfg, out), np.float32)
  return out


def minibatches(rollout: Mapping[str, np.ndarray], cfg: GRPOConfig, *,
                seed: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields the E * M minibatches of one rollout: per inner epoch, its groups split into M
  equal parts, reshuffled by group each epoch when `seed` is given (else in order)."""
  g, m = cfg.num_generations, cfg.num_minibatches
  count = num_groups(rollout, g)
  if count % m:
    raise ConfigError("num_minibatches", f"got {m}; the rollout has {count} groups of "
                      f"G={g}, which do not split into {m} minibatches of whole groups")
  for epoch in range(cfg.inner_epochs):
    order = np.arange(count)
    if seed is not None:
      order = np.random.default_rng([seed, epoch]).permutation(count)
    for part in np.split(order, m):
      yield take_groups(rollout, part, g)


def should_reset_reference(step: int, every: int) -> bool:
  """True when `step` optimizer steps are done and the reference is due (K, 2K, ...)."""
  return every > 0 and step > 0 and step % every == 0


def copy_params(params):
  """A fresh copy of a parameter pytree, safe to keep while the train state is donated."""
  return jax.tree.map(jnp.copy, params)


def maybe_reset_reference(step: int, every: int, params, ref_params):
  """The reference params after `step` steps: a copy of the policy when due, else unchanged."""
  return copy_params(params) if should_reset_reference(step, every) else ref_params
