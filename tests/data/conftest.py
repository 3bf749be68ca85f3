"""Shared fixtures: one small procedural TFDS dataset per session, built in a temporary data dir."""

import pytest
import tensorflow_datasets as tfds

from r1jax.data.config import DataConfig

tfds.display_progress_bar(False)


@pytest.fixture(scope="session")
def procedural_config(tmp_path_factory) -> DataConfig:
  root = tmp_path_factory.mktemp("tfds")
  # 4 types x 2 levels x 12 = 96 train examples; prompt length 700 fits nearly all char prompts.
  return DataConfig(data_dir=str(root / "data"), manual_dir=str(root / "manual"),
                    procedural_difficulties=(1, 2), procedural_sizes=(12, 3, 3),
                    questions_per_step=8, max_prompt_len=900, read_threads=2)

