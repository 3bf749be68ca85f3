"""The data section of an experiment config: which TFDS datasets to read (and how to build the
procedural and generic-JSONL ones), the data-type mix, the prompt template and fixed prompt length,
questions per step, epochs, and the Grain prefetch settings. Validated once, at start-up."""

from __future__ import annotations

import dataclasses

from r1jax.config import ConfigError, check_choice, check_range
from r1jax.data import tasks
from r1jax.data.schema import DATA_TYPES

DATASETS = ("r1_procedural", "r1_gsm8k", "r1_math", "r1_mmlu", "r1_mbpp", "r1_humaneval", "r1_jsonl")
TEMPLATE_NAMES = ("r1_zero", "chat")  # r1jax.data.templates.TEMPLATES


@dataclasses.dataclass(frozen=True)
class DataConfig:
  # TFDS builders to read (their train/eval/test splits are concatenated, then mixed by type).
  datasets: tuple[str, ...] = ("r1_procedural",)
  data_dir: str = ""  # TFDS data dir; "" means TFDS's default (~/tensorflow_datasets)
  manual_dir: str = ""  # user files for real datasets; "" means <data_dir>/downloads/manual
  prepare: bool = True  # build a missing dataset on first use (procedural ones take seconds)
  # How long a process waits for another one (of this run or another) that is building a dataset.
  prepare_timeout_s: int = 3600
  # Weights per data type, e.g. (("math", 3), ("code", 1)); empty keeps the natural proportions.
  type_weights: tuple[tuple[str, float], ...] = ()

  # r1_procedural: types, difficulty levels, examples per (type, level) for train/eval/test, seed.
  procedural_types: tuple[str, ...] = DATA_TYPES
  procedural_kinds: tuple[str, ...] = ()  # generator names (e.g. "chain_sum"); empty: all kinds
  procedural_difficulties: tuple[int, ...] = (1, 2, 3)
  procedural_sizes: tuple[int, int, int] = (1000, 100, 100)
  procedural_seed: int = 0

  # r1_jsonl: files in <manual_dir>/r1_jsonl/<jsonl_name>/; columns mapped onto the schema.
  jsonl_name: str = "default"
  jsonl_prompt: str = "prompt"
  jsonl_gold: str = "gold"
  jsonl_type: str = "math"  # the data type of every row, unless jsonl_type_column is set
  jsonl_type_column: str = ""
  jsonl_difficulty_column: str = ""
  jsonl_id_column: str = ""

  template: str = "r1_zero"
  max_prompt_len: int = 512  # P: every batch is left-padded to this length; longer prompts dropped
  questions_per_step: int = 8  # Q, over all processes
  num_epochs: float = 1.0  # fractional allowed (the paper: 1.6)
  shuffle: bool = True

  read_threads: int = 4  # Grain threads that read, template and tokenize examples
  prefetch_batches: int = 4  # batches Grain keeps ready ahead of the consumer
  worker_count: int = 0  # Grain worker processes (0: everything in this process)
  worker_buffer_size: int = 2  # batches buffered per worker process

  def validate(self) -> None:
    if not self.datasets:
      raise ConfigError("datasets", "is empty; name at least one of " + ", ".join(DATASETS))
    for i, name in enumerate(self.datasets):
      check_choice(f"datasets[{i}]", name, DATASETS)
    if len(set(self.datasets)) != len(self.datasets):
      raise ConfigError("datasets", f"lists a dataset twice: {self.datasets}")
    for i, pair in enumerate(self.type_weights):
      if len(pair) != 2:
        raise ConfigError(f"type_weights[{i}]", f"got {pair!r}; expected a (data_type, weight) pair")
      check_choice(f"type_weights[{i}][0]", pair[0], DATA_TYPES)
      check_range(f"type_weights[{i}][1]", pair[1], 0.0, None, low_open=True)
    if len({t for t, _ in self.type_weights}) != len(self.type_weights):
      raise ConfigError("type_weights", "names a data type twice")
    if not self.procedural_types:
      raise ConfigError("procedural_types", "is empty")
    for i, kind in enumerate(self.procedural_types):
      check_choice(f"procedural_types[{i}]", kind, DATA_TYPES)
    for kind_type in self.procedural_types:
      names = tasks.kind_names(kind_type)
      if self.procedural_kinds and not set(self.procedural_kinds) & set(names):
        raise ConfigError("procedural_kinds", f"selects no {kind_type} generator; {kind_type} has "
                          f"{', '.join(names)} (or drop {kind_type} from procedural_types)")
    known = sorted({n for t in self.procedural_types for n in tasks.kind_names(t)})
    for i, kind in enumerate(self.procedural_kinds):
      check_choice(f"procedural_kinds[{i}]", kind, known)
    if not self.procedural_difficulties:
      raise ConfigError("procedural_difficulties", "is empty")
    for i, level in enumerate(self.procedural_difficulties):
      check_range(f"procedural_difficulties[{i}]", level, 1, 5)
    if len(self.procedural_sizes) != 3:
      raise ConfigError("procedural_sizes", f"got {self.procedural_sizes!r}; expected (train, eval, test)")
    for i, size in enumerate(self.procedural_sizes):
      check_range(f"procedural_sizes[{i}]", size, 0)
    check_choice("jsonl_type", self.jsonl_type, DATA_TYPES)
    for key in ("jsonl_name", "jsonl_prompt", "jsonl_gold"):
      if not getattr(self, key):
        raise ConfigError(key, "is empty")
    check_range("prepare_timeout_s", self.prepare_timeout_s, 1)
    check_choice("template", self.template, TEMPLATE_NAMES)
    check_range("max_prompt_len", self.max_prompt_len, 1)
    check_range("questions_per_step", self.questions_per_step, 1)
    check_range("num_epochs", self.num_epochs, 0.0, None, low_open=True)
    check_range("read_threads", self.read_threads, 0)
    check_range("prefetch_batches", self.prefetch_batches, 0)
    check_range("worker_count", self.worker_count, 0)
    check_range("worker_buffer_size", self.worker_buffer_size, 1)
