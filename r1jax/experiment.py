"""The whole experiment as one frozen, validated dataclass, built once from the config file.

Each section is owned by the part that reads it (model, mesh, data, rollout, rl, optim, rewards,
the loop, evaluation, and each job's own section); this module adds the checks that span sections
(a rollout splits into whole groups per minibatch, a stage runs a job that can be a stage...).
`load(config_dict)` is the only place a ConfigDict becomes typed config; every error names its
dotted key. Experiment files are Python files in one folder; one that builds on another loads it
with :func:`sibling`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from types import ModuleType
from typing import Any, ClassVar

from r1jax.config import ConfigError, check_choice, from_dict
from r1jax.data.config import DataConfig
from r1jax.dpo.train import DPOConfig
from r1jax.experience import EvalConfig
from r1jax.jobs.evaluate import BenchmarkConfig
from r1jax.jobs.registry import JOB_NAMES, STAGE_JOB_NAMES
from r1jax.jobs.rejection import RejectionConfig
from r1jax.jobs.stages import PipelineConfig
from r1jax.mesh import MeshConfig
from r1jax.models.config import ModelConfig
from r1jax.reward_model.config import PreferenceConfig, RewardModelConfig
from r1jax.rewards.config import RewardConfig
from r1jax.rl.config import GRPOConfig, OptimConfig
from r1jax.rollout.config import SamplingConfig
from r1jax.sft.base_model import CorpusConfig
from r1jax.sft.train import SFTConfig
from r1jax.train import LoopConfig


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
  dpo: DPOConfig = DPOConfig()
  corpus: CorpusConfig = CorpusConfig()
  rejection: RejectionConfig = RejectionConfig()
  reward_model: RewardModelConfig = RewardModelConfig()
  preference: PreferenceConfig = PreferenceConfig()
  pipeline: PipelineConfig = PipelineConfig()
  benchmarks: BenchmarkConfig = BenchmarkConfig()   # the evaluate job's public benchmarks

  # Keys that once held a second copy of a value: G is the learner's group size, the temperature
  # the sampler's. Older files may still set them (equal to the new key).
  MOVED_KEYS: ClassVar[dict[str, str]] = {"rollout.num_samples": "rl.num_generations",
                                          "rl.temperature": "rollout.temperature"}

  def validate(self):
    check_choice("job", self.job, JOB_NAMES)
    for name in self.pipeline.order:
      check_choice(f"pipeline.stages.{name}.job", self.pipeline.stages[name]["job"],
                   STAGE_JOB_NAMES)
    questions = self.data.questions_per_step
    if questions % self.rl.num_minibatches:
      raise ConfigError("rl.num_minibatches", f"got {self.rl.num_minibatches}; must divide "
                        f"data.questions_per_step={questions} so each minibatch is whole groups")


def load(config: Any) -> Experiment:
  """Builds and validates the Experiment from a ConfigDict (or a plain mapping)."""
  values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return from_dict(Experiment, values)


def sibling(config_file: str, name: str) -> ModuleType:
  """The experiment file `name`.py from the folder of `config_file` (pass ``__file__``):
  `experiments/` is a folder of config files, not a package."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no experiment file {path}")
  spec = importlib.util.spec_from_file_location(f"r1jax_experiments_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
