"""The scalar reward model: the policy's trunk plus a linear head read at the last real token.

Params are {"trunk": a policy parameter tree, "head": {"w": [D], "b": []}}. Sequences are right
padded (prompt then response, no left padding), so positions start at 0 and `segment_ids` mark
the real tokens. On disk a reward model is a Hugging Face directory for the trunk (so it loads
with `load_hf`, tokenizer files included) plus `reward_head.npz`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import models
from r1jax.distributed import is_chief
from r1jax.models import ModelConfig, load_hf, save_hf, trunk

HEAD_FILE = "reward_head.npz"


def init_head(model_cfg: ModelConfig) -> dict:
  # Zero init: every response starts equally good, so early scores carry no spurious preference.
  return {"w": jnp.zeros((model_cfg.dim,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def param_axes(model_cfg: ModelConfig) -> dict:
  """Logical axes of the reward model's params: the policy trunk's, and the head's."""
  return {"trunk": models.param_axes(model_cfg), "head": {"w": ("embed",), "b": ()}}


def scores(model_cfg: ModelConfig, params, tokens, lengths):
  """Scalar scores [B] of right-padded sequences tokens [B, T] with `lengths` real tokens."""
  t = tokens.shape[1]
  segment_ids = (jnp.arange(t)[None, :] < lengths[:, None]).astype(jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), tokens.shape)
  h, _, _ = trunk(model_cfg, params["trunk"], tokens, positions=positions, segment_ids=segment_ids)
  last = jnp.take_along_axis(h, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
  return last.astype(jnp.float32) @ params["head"]["w"] + params["head"]["b"]


def right_padded(sequences: Sequence[Sequence[int]], length: int, pad_id: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(tokens [N, length], lengths [N]); a sequence longer than `length` is an error."""
  tokens = np.full((len(sequences), length), pad_id, np.int32)
  lengths = np.zeros(len(sequences), np.int32)
  for i, seq in enumerate(sequences):
    if len(seq) > length:
      raise ValueError(f"sequence {i} has {len(seq)} tokens; the reward model reads at most {length}")
    tokens[i, :len(seq)] = seq
    lengths[i] = len(seq)
  return tokens, lengths


def save(model_cfg: ModelConfig, params, directory: str, tokenizer_from: str | None) -> str:
  params = jax.device_get(params)
  save_hf(model_cfg, params["trunk"], directory, tokenizer_from=tokenizer_from)
  if is_chief():
    np.savez(os.path.join(directory, HEAD_FILE), w=np.asarray(params["head"]["w"]),
             b=np.asarray(params["head"]["b"]))
  return directory


def load(directory: str) -> tuple[ModelConfig, dict]:
  path = os.path.join(directory, HEAD_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{directory} is not a reward model: no {HEAD_FILE} (train one with "
                            "the reward_model job)")
  model_cfg, trunk_params = load_hf(directory)
  with np.load(path) as head:
    return model_cfg, {"trunk": trunk_params, "head": {"w": jnp.asarray(head["w"]),
                                                       "b": jnp.asarray(head["b"])}}
