"""Large rollouts in prompt chunks, each handed on as soon as it is finished.

`sample_chunks` cuts the prompts into chunks of ``config.prompts_per_chunk`` (sized so that one
chunk's KV caches fit in memory), dispatches chunk k+1 before waiting for chunk k, and yields
chunk k the moment it is done, so rewards can be scored while the device keeps sampling. The last
chunk is padded to full size so every chunk reuses one compiled program. On a mesh the chunk is
rounded up to a multiple of the decode layout's batch shards (:func:`prompts_per_call`), so
every shard holds whole prompts with all their rows. Rows are keyed by their
global index, so the chunks together equal one :func:`r1jax.rollout.sample` call on all prompts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.mesh import batch_shards, current_mesh, current_rules
from r1jax.models import ModelConfig
from r1jax.rollout.config import SamplingConfig
from r1jax.rollout.sampler import Rollout, layout_rules, run


def _pad_rows(x, rows: int):
  """Fills a short last chunk by repeating its last prompt (valid input; outputs dropped)."""
  missing = rows - x.shape[0]
  xp = jnp if isinstance(x, jax.Array) else np
  return x if missing == 0 else xp.concatenate([x, xp.repeat(x[-1:], missing, axis=0)])


def prompts_per_call(model_cfg: ModelConfig, prompts_per_chunk: int, mesh=None,
                     rules=None) -> int:
  """`prompts_per_chunk` rounded up to a multiple of the batch shards of the sampler's layout on
  `mesh` (`sampler.layout_rules` of `rules`): each shard then holds whole prompts, their prefix
  cache beside all their rows, and no decode step reshards rows against prompts."""
  if mesh is None or mesh.size == 1:
    return prompts_per_chunk
  rules = current_rules() if rules is None else rules
  shards = batch_shards(mesh, layout_rules(model_cfg, mesh, rules))
  return -(-prompts_per_chunk // shards) * shards


def sample_chunks(model_cfg: ModelConfig, params, prompt_tokens, prompt_mask, rng,
                  config: SamplingConfig, num_samples: int) -> Iterator[tuple[slice, Rollout]]:
  """Yields (prompt slice, Rollout of those prompts' `num_samples` samples each), in prompt
  order."""
  if not isinstance(prompt_tokens, jax.Array):   # global arrays (several processes) stay on device
    prompt_tokens, prompt_mask = np.asarray(prompt_tokens), np.asarray(prompt_mask)
  size, g = prompts_per_call(model_cfg, config.prompts_per_chunk, current_mesh()), num_samples
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
  out = jax.block_until_ready(out)
  routes = out.expert_ids   # [layers, rows, T, k]: its rows are the second axis
  out = dataclasses.replace(jax.tree.map(lambda x: x[:rows], out),
                            expert_ids=None if routes is None else routes[:, :rows])
  return part, out
