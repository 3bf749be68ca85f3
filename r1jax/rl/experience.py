"""One rollout turned into learner experience: sample, score asynchronously, reference log-probs.

Chunks of prompts are sampled one after another (``r1jax.rollout.sample_chunks`` dispatches the
next chunk before handing on the last); each finished chunk's completions are decoded and queued
on the reward service at once, and its reference log-probs are dispatched to the device, so the
CPU verifiers, the sampler and the reference forward overlap. Only then does the caller wait for
the rewards. The result holds the learner arrays of `r1jax.rl.step` plus `rewards`, the decoded
texts and the time spent waiting for rewards.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from r1jax.data.tokenizers import Tokenizer
from r1jax.models import ModelConfig
from r1jax.rewards.compose import RewardBatch
from r1jax.rollout.chunks import sample_chunks
from r1jax.rollout.config import SamplingConfig
from r1jax.rl.logprobs import completion_logprobs

EXAMPLE_FIELDS = ("prompt", "data_type", "gold", "difficulty", "source_id")
# Completion arrays are cut to the longest completion, rounded up to this many tokens: the
# learner and the reference then skip the unused tail of the length budget, while the number of
# distinct shapes (and so compilations) stays small.
LENGTH_BUCKET = 32


@dataclasses.dataclass
class Scored:
  arrays: dict[str, np.ndarray]   # learner arrays (see r1jax.rl.step) plus `rewards`
  texts: list[str]
  rewards: RewardBatch
  reward_wait_s: float


def decode_completions(tokenizer: Tokenizer, tokens, lengths, finished_eos) -> list[str]:
  """Completion texts without the final EOS token and the padding after it."""
  out = []
  for row, n, eos in zip(np.asarray(tokens), np.asarray(lengths), np.asarray(finished_eos)):
    out.append(tokenizer.decode(row[:n - 1] if eos and n > 0 else row[:n]))
  return out


def used_length(lengths, budget: int) -> int:
  """The longest completion rounded up to LENGTH_BUCKET, at most the budget."""
  longest = int(np.max(lengths)) if np.size(lengths) else 1
  return min(budget, -(-max(longest, 1) // LENGTH_BUCKET) * LENGTH_BUCKET)


def _fit(x: np.ndarray, length: int, fill) -> np.ndarray:
  """Cuts or pads axis 1 to `length`."""
  if x.shape[1] >= length:
    return x[:, :length]
  return np.pad(x, ((0, 0), (0, length - x.shape[1])), constant_values=fill)


def examples_of(batch: Mapping[str, np.ndarray], rows: range) -> list[dict[str, Any]]:
  return [{k: (batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i])
           for k in EXAMPLE_FIELDS} for i in rows]


@functools.partial(jax.jit, static_argnames=("model_cfg", "temperature"))
def _reference_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens, temperature):
  return completion_logprobs(model_cfg, params, prompt_tokens, prompt_mask, tokens,
                             temperature=temperature)


def sample_and_score(model_cfg: ModelConfig, params, batch: Mapping[str, np.ndarray], rng,
                     sampling: SamplingConfig, tokenizer: Tokenizer, rewards,
                     on_chunk: Callable[[slice, Any], None] | None = None) -> Scored:
  """Samples G completions per prompt of `batch` and scores them with `rewards` (a service)."""
  g = sampling.num_samples
  ticket, parts, texts = None, [], []
  for part, out in sample_chunks(model_cfg, params, batch["prompt_tokens"], batch["prompt_mask"],
                                 rng, sampling):
    out = jax.device_get(out)
    out = dataclasses.replace(out, tokens=out.tokens[:, :used_length(out.lengths, sampling.max_new_tokens)])
    chunk_texts = decode_completions(tokenizer, out.tokens, out.lengths, out.finished_eos)
    examples = [e for e in examples_of(batch, range(part.start, part.stop)) for _ in range(g)]
    ticket = rewards.submit(chunk_texts, examples, ticket)
    if on_chunk is not None:
      on_chunk(part, out)
    parts.append(out)
    texts.extend(chunk_texts)
  start = time.perf_counter()
  reward_batch = rewards.collect(ticket)
  wait = time.perf_counter() - start
  length = max(p.tokens.shape[1] for p in parts)
  tokens = np.concatenate([_fit(p.tokens, length, sampling.pad_id) for p in parts])
  lengths = np.concatenate([p.lengths for p in parts])
  arrays = {
      "prompt_tokens": np.asarray(batch["prompt_tokens"]),
      "prompt_mask": np.asarray(batch["prompt_mask"]).astype(bool),
      "completion_tokens": tokens,
      "completion_mask": np.arange(tokens.shape[1])[None, :] < lengths[:, None],
      "old_logprobs": np.concatenate([_fit(p.logprobs, length, 0.0) for p in parts]
                                     ).astype(np.float32),
      "truncated": ~np.concatenate([p.finished_eos for p in parts]),
      "rewards": reward_batch.reward,
  }
  return Scored(arrays, texts, reward_batch, wait)


def collect_experience(model_cfg: ModelConfig, params, ref_params, batch, rng,
                       sampling: SamplingConfig, tokenizer: Tokenizer, rewards) -> Scored:
  """`sample_and_score` plus reference log-probs, dispatched per chunk while rewards run."""
  ref_parts = []

  def reference(part: slice, out):
    ref_parts.append(_reference_logprobs(model_cfg, ref_params, batch["prompt_tokens"][part],
                                         batch["prompt_mask"][part], out.tokens,
                                         sampling.temperature or 1.0))

  scored = sample_and_score(model_cfg, params, batch, rng, sampling, tokenizer, rewards, reference)
  length = scored.arrays["completion_tokens"].shape[1]
  scored.arrays["ref_logprobs"] = np.concatenate([_fit(np.asarray(r), length, 0.0)
                                                  for r in ref_parts])
  return scored
