"""Where a run's policy and tokenizer come from, and where a trained policy goes.

``base_model`` is a Hugging Face directory (config.json + safetensors, e.g. a Qwen2.5 checkpoint),
``builtin:demo`` for the tiny base model that ships inside the package, or "" for a random init of
the experiment's `model` section (tests, planning). The tokenizer is the base model's own
tokenizer.json unless the experiment names one ("char" for the built-in character tokenizer).
Every job that trains a policy hands it on with :func:`export_policy`: a Hugging Face directory
that :func:`load_policy` reads back and a transformers user runs with default arguments (the
trainer's bos / eos / pad ids in config.json and generation_config.json; the run's tokenizer,
which adds `<bos>` as the trainer does, with the prompt template as its chat template).
"""

from __future__ import annotations

import dataclasses
import os

import jax

from r1jax.data.tokenizer_export import finish_tokenizer_files
from r1jax.data.tokenizers import Tokenizer, load_tokenizer
from r1jax.distributed import is_chief
from r1jax.models import ModelConfig, init, load_hf, save_hf
from r1jax.models.config import MOE_RUNTIME_KEYS

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


def _check_mtp(model_cfg: ModelConfig, loaded_cfg: ModelConfig, base_model: str) -> None:
  """An MTP loss asked for (model.mtp_layers > 0, model.mtp_loss_weight > 0) needs a checkpoint
  holding that many MTP layers."""
  asked = model_cfg.mtp_layers if model_cfg.mtp_loss_weight else 0
  if loaded_cfg.mtp_layers < asked:
    raise ValueError(
        f"model.mtp_loss_weight={model_cfg.mtp_loss_weight} with model.mtp_layers="
        f"{model_cfg.mtp_layers} trains MTP modules, but base_model {base_model!r} holds "
        f"{loaded_cfg.mtp_layers} (DeepSeek-V3 checkpoints saved by transformers have none): use a "
        "checkpoint with MTP tensors (DeepSeek's release) or set --config.model.mtp_loss_weight=0")


def load_policy(base_model: str, model_cfg: ModelConfig, tokenizer_spec: str, seed: int, *,
                mtp_loss: bool = False) -> tuple[ModelConfig, dict, Tokenizer]:
  """(model config, params on the host, tokenizer). Compute/remat settings, the MTP loss weight
  and the MoE runtime settings (MOE_RUNTIME_KEYS) of `model_cfg` are kept when the shape comes
  from a checkpoint. `mtp_loss`: the caller trains with the MTP loss (SFT), so an experiment
  whose model asks for MTP needs a checkpoint with it."""
  if base_model:
    directory = resolve(base_model)
    loaded_cfg, params = load_hf(directory)
    if mtp_loss:
      _check_mtp(model_cfg, loaded_cfg, base_model)
    moe = loaded_cfg.moe
    if moe is not None and model_cfg.moe is not None:
      moe = dataclasses.replace(moe, **{k: getattr(model_cfg.moe, k) for k in MOE_RUNTIME_KEYS})
    model_cfg = dataclasses.replace(loaded_cfg, compute_dtype=model_cfg.compute_dtype,
                                    remat=model_cfg.remat, moe=moe,
                                    mtp_loss_weight=model_cfg.mtp_loss_weight)
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


def export_policy(model_cfg: ModelConfig, params, base_model: str, out_dir: str, *,
                  tokenizer: str = "", template: str = "r1_zero") -> str:
  """Saves params to `out_dir` with the run's tokenizer: `tokenizer` (the experiment's spec) or
  else that of `base_model` (a directory or builtin name), as :func:`load_policy` chose it, and
  the run's prompt `template` (data.template) as its chat template."""
  spec = tokenizer or (resolve(base_model) if base_model else "")
  tok = load_tokenizer(spec) if spec else None
  files = None if spec in ("", "char") else (spec if os.path.isdir(spec) else os.path.dirname(spec))
  ids = {}
  if tok is not None:
    ids = {"bos_token_id": tok.bos_id, "pad_token_id": tok.pad_id,
           "eos_token_id": tok.eos_ids[0] if len(tok.eos_ids) == 1 else list(tok.eos_ids)}
  save_hf(model_cfg, jax.device_get(params), out_dir, tokenizer_from=files, **ids)
  if tok is not None and files is not None and is_chief():
    finish_tokenizer_files(out_dir, tok, template)
  return out_dir
