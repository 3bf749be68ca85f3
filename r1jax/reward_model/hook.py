"""The reward model inside the RL loop: adds weight * sigmoid(score) to rewards from a set step.

The trainer calls :meth:`PreferenceReward.apply` on each rollout's rewards and learner groups
(left-padded prompts, right-padded completions) before the advantages are computed; from `preference.start_step` on,
each sample's reward gains the bounded preference term, so `weight` sets its share against the
rule rewards (accuracy 1, format, language). Before that step it changes nothing, which is how
stage 2 uses preference rewards for its last N steps only.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from r1jax.data.tokenizers import Tokenizer, load_tokenizer
from r1jax.reward_model import model as rm
from r1jax.reward_model.config import PreferenceConfig
from r1jax.rl.batch import Groups

_PROBE = "A conversation between User and Assistant. <think> 12 + 7 = 19. </think>"


class PreferenceReward:

  def __init__(self, cfg: PreferenceConfig, policy_tokenizer: Tokenizer):
    self.cfg = cfg
    self.model_cfg, params = rm.load(cfg.model)
    own = load_tokenizer(cfg.model)
    if own.vocab_size != policy_tokenizer.vocab_size or \
        own.encode(_PROBE) != policy_tokenizer.encode(_PROBE):
      raise ValueError(f"preference.model {cfg.model}: its tokenizer differs from the policy's; "
                       "train the reward model from the same base model family")
    self.params = jax.device_put(params)
    self._score = jax.jit(functools.partial(rm.scores, self.model_cfg))

  @classmethod
  def from_config(cls, cfg: PreferenceConfig, tokenizer: Tokenizer) -> "PreferenceReward | None":
    return cls(cfg, tokenizer) if cfg.model else None

  def scores(self, groups: Groups) -> np.ndarray:
    """sigmoid(score) [N] of each prompt + completion of the learner's groups."""
    prompts, prompt_mask = np.asarray(groups.prompt_tokens), np.asarray(groups.prompt_mask)
    completions = np.asarray(groups.completion_tokens)
    completion_mask = np.asarray(groups.completion_mask)
    g = completions.shape[0] // prompts.shape[0]
    seqs = [np.concatenate([prompts[i // g][prompt_mask[i // g]], row[mask]])
            for i, (row, mask) in enumerate(zip(completions, completion_mask))]
    tokens, lengths = rm.right_padded(seqs, prompts.shape[1] + completions.shape[1], 0)
    return np.asarray(jax.nn.sigmoid(self._score(self.params, tokens, lengths)))

  def apply(self, groups: Groups, rewards, step: int) -> tuple[np.ndarray, dict[str, float]]:
    """(rewards with the preference term added once `step` >= start_step, its metrics)."""
    if step < self.cfg.start_step:
      return rewards, {}
    value = self.scores(groups)
    rewards = np.asarray(rewards, np.float32) + self.cfg.weight * value
    return rewards, {"reward/preference_mean": float(value.mean())}
