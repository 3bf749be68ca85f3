"""What the learner takes: Bp prompts x G outputs as typed arrays, a pytree like `rollout.Rollout`.

`Groups` is what sampling, scoring and the reference forward produce; `LearnerBatch` adds the
per-output advantages that `r1jax.rl.minibatch.prepare` computes from the rewards. Rows
``i*G .. i*G+G-1`` of every per-output array belong to prompt ``i``, so G is the ratio of the two
leading sizes, and a split is only ever by whole groups (:meth:`Groups.take_groups`).

  prompt_tokens [Bp, P] int32 left-padded; prompt_mask [Bp, P] bool;
  completion_tokens [Bp*G, T] int32; completion_mask [Bp*G, T] bool (generated tokens incl. EOS);
  old_logprobs [Bp*G, T] f32 (pi_old, from the sampler at the sampling temperature, or the
  learner's forward with `rl.recompute_old_logprobs`); sampler_logprobs [Bp*G, T] f32 or None:
  the sampler's, kept beside the recomputed pi_old for the mismatch metrics and IS corrections;
  ref_logprobs [Bp*G, T] f32; truncated [Bp*G] bool (no EOS); advantages [Bp*G] f32;
  expert_ids [Bp*G, num_moe_layers, T, top_k] integer or None: routing replay, the experts each
  completion token was routed to by the sampler (`rollout.Rollout.expert_ids`, rows first so that
  it splits like every other per-output array); the reference and learner forwards reuse them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from r1jax.models import ModelConfig
from r1jax.models.moe import replay_ids_dtype

PROMPT_FIELDS = ("prompt_tokens", "prompt_mask")
OPTIONAL_FIELDS = ("expert_ids", "sampler_logprobs")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Groups:
  prompt_tokens: Any
  prompt_mask: Any
  completion_tokens: Any
  completion_mask: Any
  old_logprobs: Any
  ref_logprobs: Any
  truncated: Any
  expert_ids: Any = dataclasses.field(default=None, kw_only=True)   # only with routing replay
  sampler_logprobs: Any = dataclasses.field(default=None, kw_only=True)  # only with the recompute

  @classmethod
  def of(cls, arrays: Mapping[str, Any]):
    """From a mapping with exactly this type's fields (e.g. `distributed.global_batch`'s)."""
    names = [f.name for f in dataclasses.fields(cls)]
    required = [f.name for f in dataclasses.fields(cls) if f.name not in OPTIONAL_FIELDS]
    if not set(required) <= set(arrays) <= set(names):
      raise ValueError(f"batch: got keys {sorted(arrays)}; {cls.__name__} needs {required} "
                       f"(optionally {list(OPTIONAL_FIELDS)})")
    return cls(**arrays)

  def fields(self) -> dict[str, Any]:
    """The arrays by name; an optional field that is absent (None) is left out."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None}

  @property
  def num_prompts(self) -> int:
    return int(np.shape(self.prompt_tokens)[0])

  def group_size(self) -> int:
    """G, after checking that every array holds whole groups of consecutive rows."""
    prompts = self.num_prompts
    rows = {k: np.shape(v)[0] for k, v in self.fields().items()}
    outputs = rows["completion_tokens"]
    if prompts == 0 or outputs % prompts:
      raise ValueError(f"batch: {outputs} outputs for {prompts} prompts; need G outputs per prompt")
    for key, n in rows.items():
      want = prompts if key in PROMPT_FIELDS else outputs
      if n != want:
        raise ValueError(f"batch.{key}: got {n} rows; need {want} ({prompts} prompts x "
                         f"G={outputs // prompts}, whole groups of consecutive rows)")
    return outputs // prompts

  def take_groups(self, groups):
    """The same type holding only the given groups (prompt indices), each with all G outputs."""
    g = self.group_size()
    groups = np.asarray(groups, np.int64)

    def take(key, value):
      value = np.asarray(value)
      if key in PROMPT_FIELDS:
        return value[groups]
      return value.reshape(-1, g, *value.shape[1:])[groups].reshape(-1, *value.shape[1:])
    return type(self)(**{k: take(k, v) for k, v in self.fields().items()})


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LearnerBatch(Groups):
  advantages: Any

  @classmethod
  def abstract(cls, prompts: int, group_size: int, prompt_len: int, completion_len: int,
               model_cfg: ModelConfig | None = None, sampler_logprobs: bool = False):
    """ShapeDtypeStructs of a batch of `prompts` x `group_size` outputs (for compiling); with
    the `model_cfg` of a policy with routing replay, its replayed expert ids too; with
    `sampler_logprobs` (`rl.recompute_old_logprobs`), the sampler's log-probs."""
    n, p, t = prompts * group_size, prompt_len, completion_len
    s = jax.ShapeDtypeStruct
    routes = None
    if model_cfg is not None and model_cfg.replays_routes:
      routes = s((n, model_cfg.num_moe_layers, t, model_cfg.moe.top_k),
                 replay_ids_dtype(model_cfg.moe.num_experts))
    return cls(prompt_tokens=s((prompts, p), np.int32), prompt_mask=s((prompts, p), np.bool_),
               completion_tokens=s((n, t), np.int32), completion_mask=s((n, t), np.bool_),
               old_logprobs=s((n, t), np.float32), ref_logprobs=s((n, t), np.float32),
               truncated=s((n,), np.bool_), advantages=s((n,), np.float32), expert_ids=routes,
               sampler_logprobs=s((n, t), np.float32) if sampler_logprobs else None)
