"""Where a run's policy and tokenizer come from, and where a trained policy goes.

``base_model`` is a Hugging Face directory (config.json + safetensors, e.g. a Qwen2.5 checkpoint),
``builtin:demo`` for the tiny base model that ships inside the package, or "" for a random init of
the experiment's `model` section (tests, planning). The tokenizer is the base model's own
tokenizer.json unless the experiment names one ("char" for the built-in character tokenizer).
Every job that trains a policy hands it on with :func:`export_policy`: a Hugging Face directory
with the tokenizer files of the model it started from, which :func:`load_policy` reads back.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from r1jax.data.tokenizers import Tokenizer, load_tokenizer
from r1jax.models import ModelConfig, init, load_hf, save_hf

EXPORT = "export"   # where a job writes the policy it hands on, under its workdir
BUILTIN = {"builtin:demo": os.path.join(os.path.dirname(__file__), "assets", "demo_base_model")}


def resolve(path: str) -> str:
  """The directory behind a base-model spec; a clear error if it is missing."""
  directory = BUILTIN.get(path, path)
  if not os.path.isdir(directory):
    hint = ("run `make base-model` to regenerate the demo's base model" if path in BUILTIN
            else "pass a Hugging Face model directory (config.json + *.safetensors)")
    raise FileNotFoundError(f"base_model {path!r}: no directory at {directory}; {hint}")
  return directory


def load_policy(base_model: str, model_cfg: ModelConfig, tokenizer_spec: str, seed: int
                ) -> tuple[ModelConfig, dict, Tokenizer]:
  """(model config, params on the host, tokenizer). Compute/remat settings of `model_cfg` are
  kept when the shape comes from a checkpoint."""
  if base_model:
    directory = resolve(base_model)
    loaded_cfg, params = load_hf(directory)
    model_cfg = dataclasses.replace(loaded_cfg, compute_dtype=model_cfg.compute_dtype,
                                    remat=model_cfg.remat)
    tokenizer = load_tokenizer(tokenizer_spec or directory)
  else:
    if not tokenizer_spec:
      raise ValueError("tokenizer: a randomly initialised model needs an explicit tokenizer "
                       "('char' or a tokenizer.json path)")
    params = init(model_cfg, jax.random.key(seed))
    tokenizer = load_tokenizer(tokenizer_spec)
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but model.vocab_size is "
                     f"{model_cfg.vocab_size}")
  return model_cfg, params, tokenizer


def export_policy(model_cfg: ModelConfig, params, base_model: str, out_dir: str) -> str:
  """Saves params to `out_dir` with the tokenizer of `base_model` (a directory or builtin name)."""
  save_hf(model_cfg, jax.device_get(params), out_dir,
          tokenizer_from=resolve(base_model) if base_model else None)
  return out_dir
