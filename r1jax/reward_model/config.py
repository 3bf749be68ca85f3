"""Config sections for reward models: `reward_model` (training one) and `preference` (using one in RL).

In RL the preference score enters the reward only from optimizer step `start_step` on: R1 applied
its helpfulness and safety reward models only in the last 400 of 1,700 stage-2 steps, because
longer use invited reward hacking.
"""

from __future__ import annotations

import dataclasses

from r1jax.config import check_range


@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
  data: str = ""                  # pairwise JSONL (prompt, chosen, rejected); "" = synthetic set
  num_pairs: int = 512            # size of the synthetic set
  heldout_fraction: float = 0.25  # pairs kept out of training to measure pairwise accuracy
  steps: int = 200
  batch_pairs: int = 16
  max_len: int = 384              # tokens of prompt + response; longer pairs are an error
  log_every: int = 20
  seed: int = 0

  def validate(self):
    for key in ("num_pairs", "steps", "batch_pairs", "max_len", "log_every"):
      check_range(key, getattr(self, key), 1)
    check_range("heldout_fraction", self.heldout_fraction, 0.0, 1.0, high_open=True)


@dataclasses.dataclass(frozen=True)
class PreferenceConfig:
  model: str = ""                 # a reward-model directory (the reward_model job's export); "" = off
  weight: float = 1.0             # reward += weight * sigmoid(score)
  start_step: int = 0             # optimizer step from which the score is added

  def validate(self):
    check_range("weight", self.weight, 0.0)
    check_range("start_step", self.start_step, 0)
