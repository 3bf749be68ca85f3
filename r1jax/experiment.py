"""The whole experiment as one frozen, validated dataclass, built once from the config file.

Each section is owned by its subsystem (model, mesh, data, rollout, rl, optim, rewards) and this
module adds the loop and evaluation settings plus the checks that span sections (G agrees between
sampler and learner, a rollout splits into whole groups per minibatch...). `load(config_dict)` is
the only place a ConfigDict becomes typed config; every error names its dotted key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from r1jax.config import ConfigError, check_choice, check_range, from_dict
from r1jax.data.config import DataConfig
from r1jax.mesh import MeshConfig
from r1jax.models.config import ModelConfig
from r1jax.rewards.config import RewardConfig
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rollout.config import SamplingConfig
from r1jax.pipeline_config import PipelineConfig
from r1jax.rejection import RejectionConfig
from r1jax.reward_model.config import PreferenceConfig, RewardModelConfig
from r1jax.sft.base_model import CorpusConfig
from r1jax.sft.train import SFTConfig

JOBS = ("rl", "base_model", "sft", "rejection", "reward_model", "evaluate", "pipeline")
Schedule = tuple[tuple[int, float], ...]


def scheduled(schedule: Schedule, step: int, default: float) -> float:
  """The value of a piecewise-constant schedule ((from_step, value), ...) at `step`."""
  value = default
  for start, v in sorted(schedule):
    if step >= start:
      value = v
  return value


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """The RL loop. A step is one optimizer step; one rollout feeds rl.num_minibatches x epochs."""
  steps: int = 100
  eval_every: int = 10            # steps between evaluations; the last step always evaluates
  save_every: int = 10            # steps between checkpoints (rounded to whole rollouts)
  keep_checkpoints: int = 3
  log_samples: int = 3            # completions per evaluation written as text
  # (from_step, value) pairs: the paper raised the length from 32,768 to 65,536 at step 8.2k.
  max_new_tokens_schedule: tuple[tuple[int, int], ...] = ()
  temperature_schedule: tuple[tuple[int, float], ...] = ()
  seed: int = 0

  def validate(self):
    check_range("steps", self.steps, 1)
    check_range("eval_every", self.eval_every, 0)
    check_range("save_every", self.save_every, 1)
    check_range("keep_checkpoints", self.keep_checkpoints, 1)
    check_range("log_samples", self.log_samples, 0)
    for start, value in self.max_new_tokens_schedule:
      check_range("max_new_tokens_schedule", value, 1)
    for start, value in self.temperature_schedule:
      check_range("temperature_schedule", value, 0.0)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  split: str = "eval"
  num_problems: int = 64
  num_samples: int = 8            # k: pass@1 is averaged over k samples; cons@k votes over them
  temperature: float = 1.0
  max_new_tokens: int = 0         # 0 = the rollout's
  pass_at: tuple[int, ...] = (1, 8)

  def validate(self):
    check_choice("split", self.split, ("train", "eval", "test"))
    check_range("num_problems", self.num_problems, 1)
    check_range("num_samples", self.num_samples, 1)
    check_range("temperature", self.temperature, 0.0)
    check_range("max_new_tokens", self.max_new_tokens, 0)
    for k in self.pass_at:
      check_range("pass_at", k, 1, self.num_samples)


@dataclasses.dataclass(frozen=True)
class Experiment:
  job: str = "rl"
  base_model: str = ""            # a Hugging Face directory; "" = random init from `model`
  tokenizer: str = ""             # "" = the base model's tokenizer; or "char", or a path
  model: ModelConfig = ModelConfig()
  mesh: MeshConfig = MeshConfig()
  data: DataConfig = DataConfig()
  rollout: SamplingConfig = SamplingConfig()
  rl: GRPOConfig = GRPOConfig()
  optim: OptimConfig = OptimConfig()
  rewards: RewardConfig = RewardConfig()
  loop: LoopConfig = LoopConfig()
  eval: EvalConfig = EvalConfig()
  sft: SFTConfig = SFTConfig()
  corpus: CorpusConfig = CorpusConfig()
  rejection: RejectionConfig = RejectionConfig()
  reward_model: RewardModelConfig = RewardModelConfig()
  preference: PreferenceConfig = PreferenceConfig()
  pipeline: PipelineConfig = PipelineConfig()

  def validate(self):
    check_choice("job", self.job, JOBS)
    if self.rl.num_generations != self.rollout.num_samples:
      raise ConfigError("rollout.num_samples", f"got {self.rollout.num_samples}; must equal "
                        f"rl.num_generations={self.rl.num_generations} (G)")
    if self.rl.temperature != self.rollout.temperature:
      raise ConfigError("rl.temperature", f"got {self.rl.temperature}; must equal "
                        f"rollout.temperature={self.rollout.temperature}: the learner's log-probs "
                        "must be of the distribution the sampler drew from")
    questions = self.data.questions_per_step
    if questions % self.rl.num_minibatches:
      raise ConfigError("rl.num_minibatches", f"got {self.rl.num_minibatches}; must divide "
                        f"data.questions_per_step={questions} so each minibatch is whole groups")


def load(config: Any) -> Experiment:
  """Builds and validates the Experiment from a ConfigDict (or a plain mapping)."""
  values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return from_dict(Experiment, values)
