"""TFDS builders that write the shared example schema as ArrayRecord files (no TensorFlow needed):
``r1_procedural`` (generated offline from :mod:`r1jax.data.tasks`), ``r1_gsm8k``, ``r1_math``,
``r1_mmlu``, ``r1_mbpp``, ``r1_humaneval`` (from JSONL / Parquet files the user puts in the TFDS
manual dir, under ``<manual_dir>/<name>/<split>.jsonl``) and ``r1_jsonl`` (any file, the user maps
its columns). :func:`make_builder` builds one from a :class:`DataConfig`; :func:`prepare` writes it.
Procedural and generic configs are named after their parameters, so a change builds a new copy.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from r1jax.data import formats, preparation_lock, tasks
from r1jax.data.config import DataConfig
from r1jax.data.readers import find_split_files, read_rows
from r1jax.data.schema import DATA_TYPES, SPLITS, DataError

FILE_FORMAT = "array_record"


class _SchemaBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Common features: every builder writes the five schema fields."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "prompt": text, "data_type": text, "gold": text, "difficulty": np.int32,
            "source_id": text}))


@dataclasses.dataclass(eq=False)
class ProceduralConfig(tfds.core.BuilderConfig):
  types: tuple[str, ...] = DATA_TYPES
  kinds: tuple[str, ...] = ()  # generator names; empty means all of each type
  difficulties: tuple[int, ...] = (1, 2, 3)
  sizes: tuple[int, int, int] = (1000, 100, 100)  # per (type, difficulty): train, eval, test
  seed: int = 0


def procedural_config(types, difficulties, sizes, seed, kinds=()) -> ProceduralConfig:
  name = (f"{'-'.join(types)}{'_k' + '-'.join(kinds) if kinds else ''}_"
          f"d{'-'.join(map(str, difficulties))}_n{'-'.join(map(str, sizes))}_s{seed}")
  return ProceduralConfig(name=name, types=tuple(types), kinds=tuple(kinds),
                          difficulties=tuple(difficulties), sizes=tuple(sizes), seed=seed)


class R1Procedural(_SchemaBuilder):
  """Procedural math / code / STEM / logic problems with exact answers; needs no download."""

  BUILDER_CONFIGS = [procedural_config(DATA_TYPES, (1, 2, 3), (1000, 100, 100), 0)]

  def _split_generators(self, dl_manager):
    del dl_manager
    sizes = dict(zip(SPLITS, self.builder_config.sizes))
    return {split: self._generate_examples(split, n) for split, n in sizes.items() if n > 0}

  def _generate_examples(self, split: str, count: int):
    c = self.builder_config
    for data_type in c.types:
      for difficulty in c.difficulties:
        kinds = tuple(k for k in c.kinds if k in tasks.kind_names(data_type))
        for example in tasks.generate(data_type, difficulty, split, count, c.seed, kinds):
          yield example["source_id"], example


class _FileBuilder(_SchemaBuilder, skip_registration=True):
  """Reads ``<manual_dir>/<folder>/{train,eval,test}.{jsonl,parquet}`` through one row converter."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = "Put train/eval/test .jsonl or .parquet files in <manual_dir>/<name>/."
  FIELDS = ""  # the row fields the converter needs, for the error message
  ORIGIN = ""  # where the published files come from

  @abc.abstractmethod
  def _convert(self, row: dict[str, Any], where: str, split: str, index: int) -> dict[str, Any]:
    """One row as a schema example; raises DataError naming ``where`` and the field."""

  def _subfolder(self) -> str:
    return self.name

  def _split_generators(self, dl_manager):
    root = dl_manager._manual_dir  # the configured path; its property raises if the dir is empty
    folder = os.path.join(os.fspath(root), self._subfolder())
    files = find_split_files(folder, SPLITS) if os.path.isdir(folder) else {}
    if not files:
      raise DataError(
          f"{self.name}: no data files found in {folder}. Put one file per split there, named "
          f"train.jsonl, eval.jsonl and/or test.jsonl (or .parquet), each row with {self.FIELDS}. "
          f"{self.ORIGIN} The folder is <manual_dir>/{self._subfolder()}; set data.manual_dir "
          "(default <data_dir>/downloads/manual).")
    return {split: self._generate_examples(split, path) for split, path in files.items()}

  def _generate_examples(self, split: str, path: str):
    for index, (where, row) in enumerate(read_rows(path)):
      yield f"{split}/{index}", self._convert(row, where, split, index)


class R1Gsm8k(_FileBuilder):
  """GSM8K grade-school math word problems; the gold answer is the number after '####'."""

  FIELDS = "fields 'question' and 'answer' (the solution ending in '#### <number>')"
  ORIGIN = "GSM8K ships train.jsonl and test.jsonl in this format (openai/grade-school-math)."
  _convert = staticmethod(formats.gsm8k)


class R1Math(_FileBuilder):
  """MATH competition problems; the gold answer is the last \\boxed{} of the solution."""

  FIELDS = ("fields 'problem' and 'solution' (with a \\boxed{} answer) or 'answer', and optionally "
            "'level' ('Level 3')")
  ORIGIN = "Any MATH / MATH-500 export with these columns works (e.g. a Hugging Face Parquet file)."
  _convert = staticmethod(formats.math)


class R1Mmlu(_FileBuilder):
  """MMLU-style multiple choice; the options go into the prompt and the gold is the letter."""

  FIELDS = ("fields 'question', 'choices' (a list) or 'A'..'D', and 'answer' (a letter or a "
            "0-based index), optionally 'subject'")
  ORIGIN = "The Hugging Face cais/mmlu Parquet files have these columns."
  _convert = staticmethod(formats.multiple_choice)


class R1Mbpp(_FileBuilder):
  """MBPP Python problems; the gold is the assert lines of 'test_list'."""

  FIELDS = ("fields 'text' (or 'prompt'), 'test_list' (assert lines), optionally "
            "'test_setup_code' and 'task_id'")
  ORIGIN = "Split the published mbpp.jsonl by task_id (601-974 train, 511-600 eval, 11-510 test)."
  _convert = staticmethod(formats.mbpp)


class R1Humaneval(_FileBuilder):
  """HumanEval-style function completion; the gold is the check() tests plus the call on it."""

  FIELDS = "fields 'prompt' (signature and docstring), 'test' (def check(candidate)), 'entry_point'"
  ORIGIN = "HumanEval.jsonl has these fields; it is small, so name it test.jsonl."
  _convert = staticmethod(formats.humaneval)


@dataclasses.dataclass(eq=False)
class JsonlConfig(tfds.core.BuilderConfig):
  folder: str = "default"
  prompt: str = "prompt"
  gold: str = "gold"
  data_type: str = "math"
  type_column: str = ""
  difficulty_column: str = ""
  id_column: str = ""


def jsonl_config(folder: str, **columns: str) -> JsonlConfig:
  mapping = repr(sorted(columns.items())).encode()
  name = f"{folder}-{hashlib.sha256(mapping).hexdigest()[:10]}"  # new mapping, new copy
  return JsonlConfig(name=name, folder=folder, **columns)


class R1Jsonl(_FileBuilder):
  """Any JSONL / Parquet files whose columns the user maps onto prompt, gold, type (and more)."""

  BUILDER_CONFIGS = [jsonl_config("default", prompt="prompt", gold="gold", data_type="math")]

  @property
  def FIELDS(self) -> str:  # noqa: N802  (read like the class constants of the other builders)
    c = self.builder_config
    type_text = f"'{c.type_column}'" if c.type_column else f"(every row is {c.data_type!r})"
    return f"the configured columns: prompt '{c.prompt}', gold '{c.gold}', type {type_text}"

  def _subfolder(self) -> str:
    return os.path.join(self.name, self.builder_config.folder)

  def _convert(self, row, where, split, index):
    c = self.builder_config
    return formats.generic(row, where, split, index, prompt=c.prompt, gold=c.gold,
                           data_type=c.data_type, type_column=c.type_column,
                           difficulty_column=c.difficulty_column, id_column=c.id_column)


BUILDERS = {cls.name: cls for cls in (R1Procedural, R1Gsm8k, R1Math, R1Mmlu, R1Mbpp, R1Humaneval,
                                      R1Jsonl)}


def make_builder(name: str, config: DataConfig) -> tfds.core.DatasetBuilder:
  if name not in BUILDERS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(BUILDERS)}")
  kwargs: dict[str, Any] = {"data_dir": config.data_dir or None, "file_format": FILE_FORMAT}
  if name == R1Procedural.name:
    kwargs["config"] = procedural_config(config.procedural_types, config.procedural_difficulties,
                                         config.procedural_sizes, config.procedural_seed,
                                         config.procedural_kinds)
  elif name == R1Jsonl.name:
    kwargs["config"] = jsonl_config(
        config.jsonl_name, prompt=config.jsonl_prompt, gold=config.jsonl_gold,
        data_type=config.jsonl_type, type_column=config.jsonl_type_column,
        difficulty_column=config.jsonl_difficulty_column, id_column=config.jsonl_id_column)
  cls = BUILDERS[name]
  if "config" in kwargs and kwargs["config"].name in cls.builder_configs:
    kwargs["config"] = kwargs["config"].name  # TFDS refuses a copy of a predefined config
  return cls(**kwargs)


def prepare(builder: tfds.core.DatasetBuilder, config: DataConfig) -> None:
  """Writes the dataset's ArrayRecord files unless they already exist (one process; see
  :func:`prepared` for several)."""
  manual_dir = config.manual_dir or None
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def prepared(name: str, config: DataConfig) -> tfds.core.DatasetBuilder:
  """The builder of dataset `name` with its files on disk, written first where missing (with
  `config.prepare`). Processes that ask at once, whether of one multi-host run or of several runs
  sharing the data dir, take turns on a lock file next to the dataset: the first writes it, the
  others wait (up to `data.prepare_timeout_s`) and then read its copy."""
  builder = make_builder(name, config)
  if builder.is_prepared():
    return builder
  if not config.prepare:
    raise DataError(f"dataset {name} is not built in {builder.data_dir}; set data.prepare=True "
                    "to build it")
  with preparation_lock.exclusive(f"{builder.data_dir}.lock", f"dataset {name}",
                                  config.prepare_timeout_s, "data.prepare_timeout_s"):
    builder = make_builder(name, config)   # read afresh: another process may have written it
    if not builder.is_prepared():
      prepare(builder, config)
  return builder


def prepare_all(config: DataConfig) -> None:
  """Builds every configured dataset that is missing (safe to call from many processes at once)."""
  for name in config.datasets:
    prepared(name, config)
