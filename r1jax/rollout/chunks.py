"""Large rollouts in prompt chunks, each handed on as soon as it is finished.

`sample_chunks` cuts the prompts into chunks of ``config.prompts_per_chunk`` (sized so that one
chunk's KV caches fit in memory), dispatches chunk k+1 before waiting for chunk k, and yields
chunk k the moment it is done, so rewards can be scored while the device keeps sampling. The last
chunk is padded to full size so every chunk reuses one compiled program. Rows are keyed by their
global index, so the chunks together equal one :func:`r1jax.rollout.sample` call on all prompts.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from r1jax.models import ModelConfig
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.sampler import Rollout, run


def _pad_rows(x, rows: int):
  """Fills a short last chunk by repeating its last prompt (valid input; outputs dropped)."""
  missing = rows - x.shape[0]
  return x if missing == 0 else np.concatenate([x, np.repeat(x[-1:], missing, axis=0)])


def sample_chunks(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask, rng,
                  config: SamplingConfig, num_samples: int) -> Iterator[tuple[slice, Rollout]]:
  """Yields (prompt slice, Rollout of those prompts' `num_samples` samples each), in prompt
  order."""
  prompt_tokens, prompt_mask = np.asarray(prompt_tokens), np.asarray(prompt_mask)
  size, g = config.prompts_per_chunk, num_samples
  pending = None
  for start in range(0, prompt_tokens.shape[0], size):
    part = slice(start, min(start + size, prompt_tokens.shape[0]))
    out = run(model_cfg, config, g, params, _pad_rows(prompt_tokens[part], size),
              _pad_rows(prompt_mask[part], size), rng, row_offset=start * g)   # async dispatch
    if pending is not None:
      yield _finish(*pending, g)
    pending = (part, out)
  if pending is not None:
    yield _finish(*pending, g)


def _finish(part: slice, out: Rollout, g: int) -> tuple[slice, Rollout]:
  rows = (part.stop - part.start) * g
  out = jax.tree.map(lambda x: x[:rows], jax.block_until_ready(out))
  return part, out
