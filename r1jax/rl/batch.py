"""What the learner takes: Bp prompts x G outputs as typed arrays, a pytree like `rollout.Rollout`.

`Groups` is what sampling, scoring and the reference forward produce; `LearnerBatch` adds the
per-output advantages that `r1jax.rl.minibatch.prepare` computes from the rewards. Rows
``i*G .. i*G+G-1`` of every per-output array belong to prompt ``i``, so G is the ratio of the two
leading sizes, and a split is only ever by whole groups (:meth:`Groups.take_groups`).

  prompt_tokens [Bp, P] int32 left-padded; prompt_mask [Bp, P] bool;
  completion_tokens [Bp*G, T] int32; completion_mask [Bp*G, T] bool (generated tokens incl. EOS);
  old_logprobs [Bp*G, T] f32 (pi_old, from the sampler at the sampling temperature);
  ref_logprobs [Bp*G, T] f32; truncated [Bp*G] bool (no EOS); advantages [Bp*G] f32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

PROMPT_FIELDS = ("prompt_tokens", "prompt_mask")


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

  @classmethod
  def of(cls, arrays: Mapping[str, Any]):
    """From a mapping with exactly this type's fields (e.g. `distributed.global_batch`'s)."""
    names = [f.name for f in dataclasses.fields(cls)]
    if sorted(arrays) != sorted(names):
      raise ValueError(f"batch: got keys {sorted(arrays)}; {cls.__name__} needs {names}")
    return cls(**arrays)

  def fields(self) -> dict[str, Any]:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

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
  def abstract(cls, prompts: int, group_size: int, prompt_len: int, completion_len: int):
    """ShapeDtypeStructs of a batch of `prompts` x `group_size` outputs (for compiling)."""
    n, p, t = prompts * group_size, prompt_len, completion_len
    s = jax.ShapeDtypeStruct
    return cls(prompt_tokens=s((prompts, p), np.int32), prompt_mask=s((prompts, p), np.bool_),
               completion_tokens=s((n, t), np.int32), completion_mask=s((n, t), np.bool_),
               old_logprobs=s((n, t), np.float32), ref_logprobs=s((n, t), np.float32),
               truncated=s((n,), np.bool_), advantages=s((n,), np.float32))
